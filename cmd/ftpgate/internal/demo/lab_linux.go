package demo

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The lab, addresses only in 198.18.0.0/15 (RFC 2544 benchmarking):
//
//	client ns ─eth0──c0─ gateway ns ─s0──eth0─ server ns
//	198.18.0.2     198.18.0.1  198.18.1.1    198.18.1.2
const (
	clientIP    = "198.18.0.2"
	gatewayLAN  = "198.18.0.1"
	gatewayWAN  = "198.18.1.1"
	serverIP    = "198.18.1.2"
	lanIf       = "c0"
	wanIf       = "s0"
	peerIf      = "eth0"
	netnsDir    = "/run/netns"
	namePrefix  = "ftpgate-demo-"
	demoTable   = "ftpgate_demo" // the demo's own table in the gateway namespace
	demoChain   = "forward"
	ftpgateLogs = "ftpgate.log"
	serverLogs  = "server.log"
)

// Roles of the lab's namespaces.
const (
	roleClient  = "client"
	roleGateway = "gateway"
	roleServer  = "server"
)

var roles = []string{roleClient, roleGateway, roleServer}

func nsName(prefix, role string) string { return prefix + "-" + role }
func nsPath(prefix, role string) string { return filepath.Join(netnsDir, nsName(prefix, role)) }

// createNamespace creates the named namespace path (as `ip netns add` does)
// and returns a handle to it.
func createNamespace(name string) (netns.NsHandle, error) {
	var h netns.NsHandle
	err := nsrun.OnThread(func() error {
		var err error
		h, err = netns.NewNamed(name) // switches this thread into it
		if err != nil {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
		return nil
	})
	return h, err
}

// deleteNamespace removes a named namespace; a missing one is no error.
func deleteNamespace(name string) error {
	err := netns.DeleteNamed(name)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	_ = os.Remove(filepath.Join(netnsDir, name))
	return nil
}

// buildNetwork creates the three namespaces, the two veth pairs (created in
// the gateway namespace with their peer moved straight on, so nothing ever
// appears in the root namespace), addresses, routes and forwarding.
func buildNetwork(prefix string) error {
	hs := map[string]netns.NsHandle{}
	defer func() {
		for _, h := range hs {
			h.Close()
		}
	}()
	for _, r := range roles {
		h, err := createNamespace(nsName(prefix, r))
		if err != nil {
			return err
		}
		hs[r] = h
	}
	nl := map[string]*netlink.Handle{}
	defer func() {
		for _, h := range nl {
			h.Close()
		}
	}()
	for _, r := range roles {
		h, err := netlink.NewHandleAt(hs[r])
		if err != nil {
			return fmt.Errorf("netlink in %s: %w", nsName(prefix, r), err)
		}
		nl[r] = h
		lo, err := h.LinkByName("lo")
		if err == nil {
			err = h.LinkSetUp(lo)
		}
		if err != nil {
			return fmt.Errorf("loopback up in %s: %w", nsName(prefix, r), err)
		}
	}
	links := []struct {
		peer           string
		gwIf           string
		gwAddr, peerIP string
	}{
		{roleClient, lanIf, gatewayLAN, clientIP},
		{roleServer, wanIf, gatewayWAN, serverIP},
	}
	for _, l := range links {
		gw, peer := nl[roleGateway], nl[l.peer]
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.gwIf}, PeerName: peerIf, PeerNamespace: netlink.NsFd(int(hs[l.peer]))}
		if err := gw.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth %s: %w", l.gwIf, err)
		}
		if err := addrUp(gw, l.gwIf, l.gwAddr+"/24"); err != nil {
			return err
		}
		if err := addrUp(peer, peerIf, l.peerIP+"/24"); err != nil {
			return err
		}
		if err := peer.RouteAdd(&netlink.Route{Gw: net.ParseIP(l.gwAddr)}); err != nil {
			return fmt.Errorf("default route of %s via %s: %w", l.peer, l.gwAddr, err)
		}
	}
	return nsrun.Do(nsPath(prefix, roleGateway), func() error {
		// /proc/sys/net shows the namespace of the thread that opens it.
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0); err != nil {
			return fmt.Errorf("enable forwarding in the gateway: %w", err)
		}
		return nil
	})
}

func addrUp(h *netlink.Handle, ifname, cidr string) error {
	link, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("link %s: %w", ifname, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return fmt.Errorf("address %s: %w", cidr, err)
	}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("address %s on %s: %w", cidr, ifname, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("link %s up: %w", ifname, err)
	}
	return nil
}

// installForwardPolicy loads the demo's own table into the gateway
// namespace, as nft would print it:
//
//	table inet ftpgate_demo {
//		chain forward {
//			type filter hook forward priority filter; policy drop;
//			ct state established,related accept
//			tcp dport 21 accept      # edge shape only: FTP control may leave the LAN
//			counter                  # what falls through to the drop policy
//		}
//	}
//
// There is no ct helper: "related" never matches an FTP data connection.
func installForwardPolicy(prefix string, allowControl bool) error {
	c, err := nftConn(prefix)
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: demoTable})
	drop := nftables.ChainPolicyDrop
	ch := c.AddChain(&nftables.Chain{Name: demoChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	if allowControl {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(21)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{&expr.Counter{}}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("load table inet %s in the gateway: %w", demoTable, err)
	}
	return nil
}

func nftConn(prefix string) (*nftables.Conn, error) {
	h, err := netns.GetFromPath(nsPath(prefix, roleGateway))
	if err != nil {
		return nil, fmt.Errorf("gateway namespace: %w", err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)), nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables in the gateway: %w", err)
	}
	return c, nil
}

// droppedPackets reads the counter in front of the forward drop policy.
func droppedPackets(prefix string) (uint64, error) {
	c, err := nftConn(prefix)
	if err != nil {
		return 0, err
	}
	defer c.CloseLasting()
	rules, err := c.GetRules(&nftables.Table{Family: nftables.TableFamilyINet, Name: demoTable}, &nftables.Chain{Name: demoChain})
	if err != nil {
		return 0, fmt.Errorf("list chain %s: %w", demoChain, err)
	}
	for _, r := range rules {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				return ctr.Packets, nil
			}
		}
	}
	return 0, errors.New("no counter in the forward chain")
}

// gatewayTables lists the table names of the gateway namespace.
func gatewayTables(prefix string) ([]string, error) {
	c, err := nftConn(prefix)
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	ts, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out, nil
}

// proc is a process the demo started in one of its namespaces.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done
}

// startIn starts cmd from an OS thread switched into the namespace at path;
// the child inherits that namespace. The thread stays locked until the
// child exits, so that with deathSig the kernel kills the child when this
// program dies (the parent-death signal follows the thread that forked).
func startIn(name, path string, cmd *exec.Cmd, deathSig bool) (*proc, error) {
	// A process group of its own: Ctrl-C reaches the demo alone, which then
	// stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if deathSig {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			started <- fmt.Errorf("own network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			started <- fmt.Errorf("open %s: %w", path, err)
			return
		}
		err = netns.Set(target)
		target.Close()
		if err == nil {
			err = cmd.Start()
		}
		restored := netns.Set(orig) == nil
		if err != nil {
			started <- fmt.Errorf("start %s in %s: %w", name, path, err)
			if restored {
				runtime.UnlockOSThread()
			}
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
		if restored {
			runtime.UnlockOSThread()
		}
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// stop ends p: SIGTERM, and SIGKILL if it is still there after grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
