package deploy

import (
	"archive/tar"
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestContainerImage builds the image with deploy/container/build (no
// engine, no base image), reads the OCI layout back, checks its config, and
// runs `ftpgate version` from the image: the layer is unpacked into a
// temporary root and the entrypoint runs chrooted there as the image's
// user.
func TestContainerImage(t *testing.T) {
	requireRoot(t, "chroot into the unpacked image")
	const version = "9.8.7-imagetest"
	dir := filepath.Join(t.TempDir(), "oci")
	build := exec.Command("go", "run", "./deploy/container/build", "-o", dir, "-version", version)
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("deploy/container/build: %v\n%s", err, out)
	}

	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "ftpgate:"+version {
		t.Fatalf("index: %+v, want one image named ftpgate:%s", im.Manifests, version)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want %s", mt, types.OCIManifestSchema1)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d (%v), want exactly one on scratch", len(layers), err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/ftpgate"}) || !slices.Equal(c.Cmd, []string{"run", "--config", "/etc/ftpgate/ftpgate.yaml"}) {
		t.Errorf("entrypoint %q, cmd %q", c.Entrypoint, c.Cmd)
	}
	uid, gid := imageUser(t, c.User)
	if uid == 0 || gid == 0 {
		t.Errorf("image user %q: want an unprivileged one", c.User)
	}

	root := filepath.Join(t.TempDir(), "rootfs")
	unpack(t, mutate.Extract(img), root)
	if m := elfMachine(t, filepath.Join(root, c.Entrypoint[0])); m != "EM_X86_64" && runtime.GOARCH == "amd64" {
		t.Errorf("the image's binary is for %s", m)
	}

	cmd := exec.Command(c.Entrypoint[0], "version")
	cmd.Dir, cmd.Env = "/", c.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ftpgate version in the image as %s: %v\n%s", c.User, err, out)
	}
	want := "ftpgate " + version + " " + runtime.Version() + " linux/" + runtime.GOARCH
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("ftpgate version printed %q, want %q", got, want)
	}
	t.Logf("image %s: user %s, entrypoint %q: %s", im.Manifests[0].Digest, c.User, c.Entrypoint, out)
}

// imageUser parses the config's numeric "uid:gid".
func imageUser(t *testing.T, user string) (uint32, uint32) {
	t.Helper()
	u, g, ok := strings.Cut(user, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("image user %q: want numeric uid:gid", user)
	}
	return uint32(uid), uint32(gid)
}

// unpack writes the image's flattened file system under root; names that
// would leave root are an error.
func unpack(t *testing.T, rc io.ReadCloser, root string) {
	t.Helper()
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !filepath.IsLocal(name) {
			t.Fatalf("layer entry %q leaves the root", h.Name)
		}
		p := filepath.Join(root, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode)&0o7777); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, os.FileMode(h.Mode)&0o777)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("layer entry %q of type %c: the image holds only directories and files", h.Name, h.Typeflag)
		}
	}
}

// TestContainerImageReverseProxy runs the image's ftpgate as the image's
// user (chrooted into the unpacked layer, no capabilities, firewall none)
// as a reverse proxy in a test network namespace, in front of a scripted
// FTP server, and has a client log in through it.
func TestContainerImageReverseProxy(t *testing.T) {
	requireRoot(t, "chroot and a network namespace")
	lookPath(t, "ip", "iproute2")
	dir := filepath.Join(t.TempDir(), "oci")
	build := exec.Command("go", "run", "./deploy/container/build", "-o", dir, "-binary", hostBinary(t), "-version", "smoke")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("deploy/container/build: %v\n%s", err, out)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	unpack(t, mutate.Extract(img), root)
	uid, gid := imageUser(t, cf.Config.User)

	ns := testNetns(t)
	var upstream net.Listener
	inNetns(t, ns, func() { upstream, err = net.Listen("tcp", "198.18.77.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Close()
	go scriptedFTPServer(upstream)

	var log syncBuffer
	cmd := exec.Command(cf.Config.Entrypoint[0], "run", "--log-format", "console", "--firewall", "none",
		"--listen", "198.18.77.1:2121", "--upstream", upstream.Addr().String())
	cmd.Dir, cmd.Env = "/", cf.Config.Env
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	var stop func() error
	inNetns(t, ns, func() { stop = startAndWait(t, cmd, &log, "ftpgate started", false) })

	var c net.Conn
	inNetns(t, ns, func() { c, err = net.DialTimeout("tcp", "198.18.77.1:2121", 10*time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	var transcript []string
	say := func(line string) {
		if line != "" {
			transcript = append(transcript, "> "+line)
			if _, err := io.WriteString(c, line+"\r\n"); err != nil {
				t.Fatal(err)
			}
		}
		reply, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v\n%s", line, err, strings.Join(transcript, "\n"))
		}
		transcript = append(transcript, "< "+strings.TrimSpace(reply))
	}
	say("")
	say("USER anonymous")
	say("PASS guest@")
	say("QUIT")
	want := []string{"< 220 scripted server ready", "> USER anonymous", "< 331 password please",
		"> PASS guest@", "< 230 logged in", "> QUIT", "< 221 bye"}
	if !slices.Equal(transcript, want) {
		t.Errorf("through the image's ftpgate:\n%s\nwant\n%s", strings.Join(transcript, "\n"), strings.Join(want, "\n"))
	}
	if err := stop(); err != nil {
		t.Errorf("ftpgate after SIGTERM: %v\n%s", err, log.String())
	}
	// The image's default: the runtime's sysmon polls (ftpgate executed
	// itself again with GODEBUG set), even in a root without /proc.
	if !strings.Contains(log.String(), `{"sysmon": "poll"}`) {
		t.Errorf("no sysmon poll line in the image's ftpgate log:\n%s", log.String())
	}
}

// scriptedFTPServer answers one control connection at a time: a greeting,
// USER, PASS and QUIT, 502 to anything else.
func scriptedFTPServer(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(c, "220 scripted server ready\r\n")
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
				switch strings.ToUpper(verb) {
				case "USER":
					io.WriteString(c, "331 password please\r\n")
				case "PASS":
					io.WriteString(c, "230 logged in\r\n")
				case "QUIT":
					io.WriteString(c, "221 bye\r\n")
					return
				default:
					io.WriteString(c, "502 not scripted\r\n")
				}
			}
		}()
	}
}
