// Package replicagen writes replicas.yaml: N ftpgate replicas behind one
// load-balanced address. A StatefulSet runs the replicas, each with
// --replicas N --replica-index auto, so that pod ftpgate-i advertises and
// listens only in slice i of passive_ports; one control Service spreads
// port 21 over the ready replicas, and one data Service per replica
// (selecting its pod by statefulset.kubernetes.io/pod-name) carries its
// slice to it. A Service has no port ranges, so the data Services list their
// ports one by one: that is why the manifest is generated.
//
// The slices are ftpgate's (cmd/ftpgate/replicas.go): N equal, consecutive
// slices from the bottom of the range; ports left over at the top are
// nobody's. This module does not import ftpgate, so Slice repeats the
// arithmetic and the tests of both modules pin it to the same examples.
package replicagen

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"

	"sigs.k8s.io/yaml"
)

// Names shared by the manifest and its tests.
const (
	// StatefulSetName names the StatefulSet; its pods are StatefulSetName-0 to -N-1.
	StatefulSetName = "ftpgate"
	// AppLabel is the app.kubernetes.io/name of every object.
	AppLabel = "ftpgate-replicas"
	// ConfigMapName holds ftpgate-config/replicas.yaml.
	ConfigMapName = "ftpgate-replicas"
	// PodNameLabel is the label the StatefulSet controller puts on each pod.
	PodNameLabel = "statefulset.kubernetes.io/pod-name"
	// PreStopSeconds is how long the kubelet waits before SIGTERM, so that
	// every node's kube-proxy has dropped a terminating pod from the
	// control Service before ftpgate stops accepting.
	PreStopSeconds = 5
	// graceMargin is the time beyond preStop and shutdown_grace that
	// ftpgate needs to remove its firewall table and exit.
	graceMargin = 10
)

// defaultShutdownGrace is ftpgate's timeouts.shutdown_grace when unset.
const defaultShutdownGrace = 30 * time.Second

// Options are what the manifest is made from.
type Options struct {
	// Replicas is N, 1 or more.
	Replicas int
	// Config is ftpgate's configuration file, the same for every replica;
	// its passive_ports is the range the replicas split.
	Config []byte
	// ConfigFile is where Config comes from, for the header comment.
	ConfigFile string
}

// gateConfig is the part of ftpgate's configuration the manifest needs.
type gateConfig struct {
	Listen       []string `json:"listen"`
	PassivePorts string   `json:"passive_ports"`
	AdminListen  string   `json:"admin_listen"`
	Timeouts     struct {
		ShutdownGrace string `json:"shutdown_grace"`
	} `json:"timeouts"`
}

// Slice returns replica i's ports when n replicas split lo-hi.
func Slice(lo, hi, n, i int) (sliceLo, sliceHi int, err error) {
	if n < 1 {
		return 0, 0, fmt.Errorf("replicas %d: want 1 or more", n)
	}
	if i < 0 || i >= n {
		return 0, 0, fmt.Errorf("replica index %d: with %d replicas it must be 0 to %d", i, n, n-1)
	}
	size := (hi - lo + 1) / n
	if lo < 1 || hi > 65535 || size < 1 {
		return 0, 0, fmt.Errorf("passive ports %d-%d cannot give each of %d replicas a slice", lo, hi, n)
	}
	return lo + i*size, lo + (i+1)*size - 1, nil
}

// ParseRange parses passive_ports, "LO-HI".
func ParseRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("passive_ports %q: want LO-HI", s)
	}
	return lo, hi, nil
}

// ShutdownGrace is timeouts.shutdown_grace of a configuration, or ftpgate's
// default.
func ShutdownGrace(s string) (time.Duration, error) {
	if s == "" {
		return defaultShutdownGrace, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("timeouts.shutdown_grace %q: want a duration like 30s", s)
	}
	return d, nil
}

// GracePeriod is the pod's terminationGracePeriodSeconds for a drain of
// shutdownGrace: the preStop wait, the drain, and the time to exit.
func GracePeriod(shutdownGrace time.Duration) int64 {
	return int64(PreStopSeconds + (shutdownGrace+time.Second-1)/time.Second + graceMargin)
}

type replica struct {
	Index  int
	Pod    string
	Lo, Hi int
	Ports  []int
}

type data struct {
	N           int
	ConfigFile  string
	Config      string // indented for the ConfigMap
	ListenPort  int
	AdminPort   int
	Lo, Hi      int
	AllPorts    []int
	Replicas    []replica
	Unused      string
	Grace       int64
	PreStop     int
	ShutdownSec int64
	Margin      int
	Names       map[string]string
}

// Generate returns the manifest for o.
func Generate(o Options) ([]byte, error) {
	if o.Replicas < 1 {
		return nil, fmt.Errorf("replicas %d: want 1 or more", o.Replicas)
	}
	var gc gateConfig
	if err := yaml.Unmarshal(o.Config, &gc); err != nil {
		return nil, fmt.Errorf("%s: %w", o.ConfigFile, err)
	}
	lo, hi, err := ParseRange(gc.PassivePorts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.ConfigFile, err)
	}
	if len(gc.Listen) != 1 {
		return nil, fmt.Errorf("%s: listen %v: want one address, the control port of every replica", o.ConfigFile, gc.Listen)
	}
	listen, err := port(gc.Listen[0])
	if err != nil {
		return nil, fmt.Errorf("%s: listen: %w", o.ConfigFile, err)
	}
	admin, err := port(gc.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("%s: admin_listen (the probes need it): %w", o.ConfigFile, err)
	}
	grace, err := ShutdownGrace(gc.Timeouts.ShutdownGrace)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.ConfigFile, err)
	}
	d := data{N: o.Replicas, ConfigFile: o.ConfigFile, ListenPort: listen, AdminPort: admin, Lo: lo, Hi: hi,
		Grace: GracePeriod(grace), PreStop: PreStopSeconds, ShutdownSec: int64(grace / time.Second), Margin: graceMargin,
		Names: map[string]string{"sts": StatefulSetName, "app": AppLabel, "cm": ConfigMapName, "podName": PodNameLabel}}
	for p := lo; p <= hi; p++ {
		d.AllPorts = append(d.AllPorts, p)
	}
	for i := range o.Replicas {
		a, b, err := Slice(lo, hi, o.Replicas, i)
		if err != nil {
			return nil, err
		}
		r := replica{Index: i, Pod: fmt.Sprintf("%s-%d", StatefulSetName, i), Lo: a, Hi: b}
		for p := a; p <= b; p++ {
			r.Ports = append(r.Ports, p)
		}
		d.Replicas = append(d.Replicas, r)
	}
	if last := d.Replicas[len(d.Replicas)-1].Hi; last < hi {
		d.Unused = fmt.Sprintf("%d-%d", last+1, hi)
	}
	var cfg strings.Builder
	for _, l := range strings.SplitAfter(string(o.Config), "\n") {
		if strings.TrimSpace(l) != "" {
			cfg.WriteString("    ")
		}
		cfg.WriteString(l)
	}
	d.Config = cfg.String()
	var b bytes.Buffer
	if err := manifest.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("replicas manifest: %w", err)
	}
	return b.Bytes(), nil
}

// port returns the port of "host:port".
func port(addr string) (int, error) {
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.Atoi(addr[i+1:])
	if i < 0 || err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%q: want HOST:PORT", addr)
	}
	return p, nil
}

var manifest = template.Must(template.New("replicas.yaml").Parse(manifestText))

const manifestText = `# GENERATED by replicagen (go generate in deploy/kubernetes): do not edit. Change
# {{.ConfigFile}} or replicagen, then run go generate.
#
# {{.N}} ftpgate replicas behind one load-balanced address ("Scaling: replicas" in the
# repository's README). Every replica is a reverse proxy to the same FTP server; the replicas
# share nothing. Pod ftpgate-i runs with --replicas {{.N}} --replica-index auto and so
# advertises and listens only in slice i of passive_ports {{.Lo}}-{{.Hi}}:
#
#   client ──▶ LB address :{{.ListenPort}} ───────▶ Service ftpgate-control ──▶ any ready replica
#   client ──▶ LB address :slice i ──▶ Service ftpgate-data-i  ──▶ pod ftpgate-i only
#
{{- range .Replicas}}
#   ftpgate-{{.Index}}: data ports {{.Lo}}-{{.Hi}}
{{- end}}
{{- if .Unused}}
#   (ports {{.Unused}} are left over: nobody's)
{{- end}}
#
# All Services must get the same external address: see the README on MetalLB and cloud
# annotations. A replica that stops takes only its own sessions with it. Rolling updates:
# the kubelet waits {{.PreStop}}s (preStop) while the endpoints controller drops the pod from
# the control Service, then SIGTERM: /readyz answers 503, ftpgate stops accepting, lets
# running transfers finish for up to timeouts.shutdown_grace ({{.ShutdownSec}}s) and exits,
# within terminationGracePeriodSeconds ({{.Grace}}s).
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{.Names.cm}}
  labels:
    app.kubernetes.io/name: {{.Names.app}}
    app.kubernetes.io/component: ftpgate
data:
  ftpgate.yaml: |
{{.Config -}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{.Names.sts}}
  labels:
    app.kubernetes.io/name: {{.Names.app}}
spec:
  replicas: {{.N}}
  # Changing it changes every replica's slice: regenerate this file and apply it whole.
  serviceName: {{.Names.sts}}
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
  selector:
    matchLabels:
      app.kubernetes.io/name: {{.Names.app}}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{.Names.app}}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      # preStop ({{.PreStop}}s) + shutdown_grace ({{.ShutdownSec}}s) + {{.Margin}}s to remove the firewall table and exit
      terminationGracePeriodSeconds: {{.Grace}}
      securityContext:
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: ftpgate
          image: ghcr.io/ftpgate/ftpgate:latest
          args: ["run", "--config", "/etc/ftpgate/ftpgate.yaml", "--replicas", "{{.N}}", "--replica-index", "auto"]
          env:
            # --replica-index auto reads the ordinal from the pod's name, ftpgate-2 -> 2.
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
          ports:
            - name: ftp
              containerPort: {{.ListenPort}}
              protocol: TCP
{{- range .AllPorts}}
            - name: data-{{.}}
              containerPort: {{.}}
              protocol: TCP
{{- end}}
            - name: admin
              containerPort: {{.AdminPort}}
              protocol: TCP
          securityContext:
            runAsUser: 0
            runAsNonRoot: false
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
              add: ["NET_ADMIN", "NET_BIND_SERVICE"]
          readinessProbe:
            httpGet:
              path: /readyz
              port: admin
            periodSeconds: 2
            failureThreshold: 1
          livenessProbe:
            httpGet:
              path: /healthz
              port: admin
            periodSeconds: 10
            failureThreshold: 3
          lifecycle:
            preStop:
              sleep:
                seconds: {{.PreStop}}
          volumeMounts:
            - name: ftpgate-config
              mountPath: /etc/ftpgate
              readOnly: true
          resources:
            requests:
              cpu: 100m
              memory: 32Mi
            limits:
              memory: 256Mi
      volumes:
        - name: ftpgate-config
          configMap:
            name: {{.Names.cm}}
---
# At most one replica down by choice at a time (node drains): the others keep their sessions.
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{.Names.sts}}
  labels:
    app.kubernetes.io/name: {{.Names.app}}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: {{.Names.app}}
---
# Who may reach the replicas: FTP clients the control and data ports, from anywhere; the
# admin endpoint (/metrics, /status name clients and users) only the scraper's namespace
# ("monitoring": change it to yours). The kubelet's probes come from the node, which
# NetworkPolicy implementations admit.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{.Names.sts}}
  labels:
    app.kubernetes.io/name: {{.Names.app}}
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/name: {{.Names.app}}
  policyTypes: ["Ingress"]
  ingress:
    - ports:
        - protocol: TCP
          port: {{.ListenPort}}
        - protocol: TCP
          port: {{.Lo}}
          endPort: {{.Hi}}
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: monitoring
      ports:
        - protocol: TCP
          port: {{.AdminPort}}
---
# The StatefulSet's governing Service: pod names in DNS (ftpgate-0.ftpgate), no balancing.
apiVersion: v1
kind: Service
metadata:
  name: {{.Names.sts}}
  labels:
    app.kubernetes.io/name: {{.Names.app}}
spec:
  clusterIP: None
  selector:
    app.kubernetes.io/name: {{.Names.app}}
  ports:
    - name: ftp
      port: {{.ListenPort}}
      targetPort: ftp
      protocol: TCP
---
# The control Service: port {{.ListenPort}} spread over the ready replicas. No client affinity is
# needed: each data connection finds its replica by port.
apiVersion: v1
kind: Service
metadata:
  name: {{.Names.sts}}-control
  labels:
    app.kubernetes.io/name: {{.Names.app}}
  annotations:
    # One address for the control Service and every data Service, e.g. MetalLB:
    #   metallb.io/allow-shared-ip: ftpgate
    #   metallb.io/loadBalancerIPs: 203.0.113.30
    # (see the README: MetalLB shares an address between Services of different
    # pods only with externalTrafficPolicy Cluster).
    {}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  sessionAffinity: None
  selector:
    app.kubernetes.io/name: {{.Names.app}}
  ports:
    - name: ftp
      port: {{.ListenPort}}
      targetPort: ftp
      protocol: TCP
{{- range .Replicas}}
---
# Replica {{.Index}}'s data ports {{.Lo}}-{{.Hi}}, to pod {{.Pod}} only.
apiVersion: v1
kind: Service
metadata:
  name: {{$.Names.sts}}-data-{{.Index}}
  labels:
    app.kubernetes.io/name: {{$.Names.app}}
  annotations: {}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  sessionAffinity: None
  selector:
    app.kubernetes.io/name: {{$.Names.app}}
    {{$.Names.podName}}: {{.Pod}}
  ports:
{{- range .Ports}}
    - name: data-{{.}}
      port: {{.}}
      targetPort: data-{{.}}
      protocol: TCP
{{- end}}
{{- end}}
`
