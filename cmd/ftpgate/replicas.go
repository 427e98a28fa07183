package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
)

// Replicas: several ftpgates behind one address share nothing. Each owns a
// disjoint slice of the passive port range, so that a load balancer can send
// every data connection to the replica that holds its control session by
// port alone (deploy/kubernetes/replicas.yaml: one Service per slice).

// replicaConfig is the file's replicas and replica_index keys (top level,
// inlined into fileConfig) and the --replicas and --replica-index flags.
type replicaConfig struct {
	// Replicas is how many replicas split the passive port range; zero
	// means one ftpgate with the whole range.
	Replicas int `yaml:"replicas"`
	// ReplicaIndex is this replica's slice, 0 to Replicas-1, or "auto":
	// the number at the end of the pod name (a StatefulSet's ftpgate-2 is
	// 2), from $POD_NAME, else $HOSTNAME, else the host name.
	ReplicaIndex string `yaml:"replica_index"`
}

// replicaIndexAuto is the --replica-index that reads the pod name.
const replicaIndexAuto = "auto"

func addReplicaFlags(fs *flag.FlagSet, rc *replicaConfig) {
	fs.IntVar(&rc.Replicas, "replicas", 0, "split --passive-ports into `N` disjoint slices, one per replica behind the same address (default: no split)")
	fs.StringVar(&rc.ReplicaIndex, "replica-index", "", "with --replicas: this replica's `slice`, 0 to N-1, or auto (the StatefulSet pod name's suffix, ftpgate-2 -> 2, from $POD_NAME or $HOSTNAME)")
}

func replicaOverrides(over func(string, func()), fc fileConfig, base *fileConfig) {
	over("replicas", func() { base.Replicas = fc.Replicas })
	over("replica-index", func() { base.ReplicaIndex = fc.ReplicaIndex })
}

// replicaSettings narrows the passive port range of pc and the firewall's
// data ports of nc to this replica's slice. It runs once the range is known
// (the default range included).
func (fc fileConfig) replicaSettings(pc *proxy.Config, nc *nat.Config) error {
	rc := fc.replicaConfig
	if rc.Replicas == 0 && rc.ReplicaIndex == "" {
		return nil
	}
	if rc.Replicas == 0 {
		return fmt.Errorf("replica index %q: give --replicas N (replicas), the number of replicas that split the passive ports", rc.ReplicaIndex)
	}
	if rc.Replicas < 1 {
		return fmt.Errorf("replicas %d: want the number of replicas, 1 or more", rc.Replicas)
	}
	if rc.ReplicaIndex == "" {
		return fmt.Errorf("replicas %d: give --replica-index (replica_index) 0 to %d, or auto in a StatefulSet", rc.Replicas, rc.Replicas-1)
	}
	i, err := replicaIndex(rc.ReplicaIndex, os.Getenv, os.Hostname)
	if err != nil {
		return err
	}
	if pc.PassivePorts == (nat.PortRange{}) {
		return errors.New("replicas: each replica needs its slice of a fixed passive port range; give --passive-ports LO-HI")
	}
	slice, err := replicaSlice(pc.PassivePorts, rc.Replicas, i)
	if err != nil {
		return err
	}
	pc.PassivePorts = slice
	nc.DataPorts = []nat.PortRange{slice}
	return nil
}

// replicaSlice returns replica i's slice of r when n replicas split it: n
// equal, disjoint, consecutive slices from the bottom of r; the ports left
// over at the top (when n does not divide r's size) are nobody's.
// 50000-50299 split 3 ways gives replica 1 the ports 50100-50199.
func replicaSlice(r nat.PortRange, n, i int) (nat.PortRange, error) {
	if n < 1 {
		return nat.PortRange{}, fmt.Errorf("replicas %d: want 1 or more", n)
	}
	if i < 0 || i >= n {
		return nat.PortRange{}, fmt.Errorf("replica index %d: with %d replicas it must be 0 to %d", i, n, n-1)
	}
	if r.Lo == 0 || r.Lo > r.Hi {
		return nat.PortRange{}, fmt.Errorf("passive ports %d-%d: not a port range", r.Lo, r.Hi)
	}
	size := (int(r.Hi) - int(r.Lo) + 1) / n
	if size == 0 {
		return nat.PortRange{}, fmt.Errorf("passive ports %d-%d: %d ports cannot give each of %d replicas a slice; give at least %d ports",
			r.Lo, r.Hi, int(r.Hi)-int(r.Lo)+1, n, n)
	}
	lo := int(r.Lo) + i*size
	return nat.PortRange{Lo: uint16(lo), Hi: uint16(lo + size - 1)}, nil
}

// replicaIndex parses --replica-index: a number, or auto, which takes the
// number at the end of the pod name from $POD_NAME (the downward API), else
// $HOSTNAME (a pod's host name is its name), else the host name.
func replicaIndex(spec string, getenv func(string) string, hostname func() (string, error)) (int, error) {
	if spec != replicaIndexAuto {
		i, err := strconv.Atoi(spec)
		if err != nil || i < 0 {
			return 0, fmt.Errorf("replica index %q: want a number from 0, or auto", spec)
		}
		return i, nil
	}
	name, from := getenv("POD_NAME"), "$POD_NAME"
	if name == "" {
		name, from = getenv("HOSTNAME"), "$HOSTNAME"
	}
	if name == "" {
		h, err := hostname()
		if err != nil {
			return 0, fmt.Errorf("replica index auto: no $POD_NAME or $HOSTNAME, and the host name: %w; give --replica-index N", err)
		}
		name, from = h, "the host name"
	}
	i, err := podOrdinal(name)
	if err != nil {
		return 0, fmt.Errorf("replica index auto: %s %q: %w; run ftpgate in a StatefulSet or give --replica-index N", from, name, err)
	}
	return i, nil
}

// podOrdinal returns a StatefulSet pod's ordinal, the number after the last
// "-" of its name: ftpgate-2 is 2.
func podOrdinal(name string) (int, error) {
	k := strings.LastIndexByte(name, '-')
	suffix := name[k+1:]
	if k < 1 || suffix == "" || strings.Trim(suffix, "0123456789") != "" || (len(suffix) > 1 && suffix[0] == '0') {
		return 0, errors.New("no StatefulSet ordinal at its end (NAME-N, e.g. ftpgate-2)")
	}
	i, err := strconv.Atoi(suffix)
	if err != nil {
		return 0, fmt.Errorf("ordinal %q: %w", suffix, err)
	}
	return i, nil
}
