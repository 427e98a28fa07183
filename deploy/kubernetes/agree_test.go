package kubernetes

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ftpgate/ftpgate/deploy/kubernetes/replicagen"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// ftpgateImage is the image every ftpgate container runs (a placeholder
// until the project publishes one).
const ftpgateImage = "ghcr.io/ftpgate/ftpgate:latest"

// configKey is the ConfigMap key holding ftpgate's configuration file.
const configKey = "ftpgate.yaml"

// configMapPrefix starts the name of a ConfigMap with ftpgate's
// configuration; the rest of the name is its file under ftpgate-config/.
const configMapPrefix = "ftpgate-"

// gateConfig is the part of ftpgate's configuration file the manifests must
// agree with. The file's strict check belongs to the main module, which owns
// the configuration types (see README.md).
type gateConfig struct {
	Mode         string   `json:"mode"`
	Listen       []string `json:"listen"`
	PassivePorts string   `json:"passive_ports"`
	AdminListen  string   `json:"admin_listen"`
	Timeouts     struct {
		ShutdownGrace string `json:"shutdown_grace"`
	} `json:"timeouts"`
}

// exitMargin is the time a pod's grace period must leave beyond the preStop
// wait and ftpgate's shutdown_grace, for removing its table and exiting.
const exitMargin = 5

// objects are a manifest file's decoded objects by kind.
type objects struct {
	configMaps      []*corev1.ConfigMap
	services        []*corev1.Service
	deployments     []*appsv1.Deployment
	statefulSets    []*appsv1.StatefulSet
	pdbs            []*policyv1.PodDisruptionBudget
	networkPolicies []*networkingv1.NetworkPolicy
}

// workload is a Deployment or a StatefulSet: what the checks need of either.
type workload struct {
	kind, name string
	selector   *metav1.LabelSelector
	template   *corev1.PodTemplateSpec
	replicas   int32
}

func (w workload) String() string { return w.kind + " " + w.name }

func (o objects) workloads() []workload {
	var out []workload
	count := func(r *int32) int32 {
		if r == nil {
			return 1
		}
		return *r
	}
	for _, d := range o.deployments {
		out = append(out, workload{"Deployment", d.Name, d.Spec.Selector, &d.Spec.Template, count(d.Spec.Replicas)})
	}
	for _, s := range o.statefulSets {
		out = append(out, workload{"StatefulSet", s.Name, s.Spec.Selector, &s.Spec.Template, count(s.Spec.Replicas)})
	}
	return out
}

func sortObjects(docs []document) (objects, error) {
	var o objects
	for _, d := range docs {
		switch x := d.obj.(type) {
		case *corev1.ConfigMap:
			o.configMaps = append(o.configMaps, x)
		case *corev1.Service:
			o.services = append(o.services, x)
		case *appsv1.Deployment:
			o.deployments = append(o.deployments, x)
		case *appsv1.StatefulSet:
			o.statefulSets = append(o.statefulSets, x)
		case *policyv1.PodDisruptionBudget:
			o.pdbs = append(o.pdbs, x)
		case *networkingv1.NetworkPolicy:
			o.networkPolicies = append(o.networkPolicies, x)
		default:
			return o, fmt.Errorf("%s: %T is not a kind these checks know", d, d.obj)
		}
	}
	return o, nil
}

// checkAgreement checks what strict decoding cannot: that the objects of one
// manifest file fit together, and that each ConfigMap with ftpgate's
// configuration holds exactly the file of the same name in configDir and
// agrees with the ports of its pod and Service.
func checkAgreement(docs []document, configDir string) error {
	o, err := sortObjects(docs)
	if err != nil {
		return err
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	configs := map[string]gateConfig{} // by ConfigMap name
	cms := map[string]*corev1.ConfigMap{}
	for _, cm := range o.configMaps {
		cms[cm.Name] = cm
		suffix, ok := strings.CutPrefix(cm.Name, configMapPrefix)
		if !ok {
			continue
		}
		text, ok := cm.Data[configKey]
		if !ok || len(cm.Data) != 1 {
			fail("ConfigMap %s: want exactly one key, %s", cm.Name, configKey)
			continue
		}
		file := filepath.Join(configDir, suffix+".yaml")
		want, err := os.ReadFile(file)
		if err != nil {
			fail("ConfigMap %s: %w", cm.Name, err)
			continue
		}
		if text != string(want) {
			fail("ConfigMap %s: %s differs from %s (the file is what the main module's tests load): %s",
				cm.Name, configKey, file, firstDifference(text, string(want)))
			continue
		}
		var gc gateConfig
		if err := yaml.Unmarshal(want, &gc); err != nil {
			fail("%s: %w", file, err)
			continue
		}
		configs[cm.Name] = gc
	}

	workloads := o.workloads()
	for _, w := range workloads {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil {
			fail("%s: selector: %w", w, err)
			continue
		}
		if sel.Empty() || !sel.Matches(labels.Set(w.template.Labels)) {
			fail("%s: selector %s does not select its own pod template's labels %v", w, sel, w.template.Labels)
		}
		errs = append(errs, checkPod(w, cms, configs)...)
	}

	dataServices := map[string][]int{} // replicas' workload -> the replica of each data Service
	for _, svc := range o.services {
		replica, w, svcErrs := checkService(svc, workloads, configs)
		errs = append(errs, svcErrs...)
		if replica >= 0 {
			dataServices[w.name] = append(dataServices[w.name], replica)
		}
	}
	for _, w := range workloads {
		if n := gateReplicas(w); n > 0 {
			errs = append(errs, checkReplicaSet(w, n, dataServices[w.name], o.pdbs)...)
		}
	}
	for _, pdb := range o.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !slices.ContainsFunc(workloads, func(w workload) bool { return sel.Matches(labels.Set(w.template.Labels)) }) {
			fail("PodDisruptionBudget %s: selects no pod of this file (%v)", pdb.Name, err)
		}
	}
	for _, np := range o.networkPolicies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			fail("NetworkPolicy %s: %w", np.Name, err)
			continue
		}
		if !slices.ContainsFunc(workloads, func(w workload) bool {
			return sel.Matches(labels.Set(w.template.Labels))
		}) {
			fail("NetworkPolicy %s: selects no pod of this file", np.Name)
		}
		// The admin endpoint names clients and users (/status, /metrics):
		// a policy that admits it must say from where.
		for i, rule := range np.Spec.Ingress {
			if len(rule.From) > 0 {
				continue
			}
			if len(rule.Ports) == 0 {
				fail("NetworkPolicy %s: ingress rule %d admits every port, the admin port %d too, from anywhere", np.Name, i, adminPort)
			}
			for _, p := range rule.Ports {
				if admitsPort(p, adminPort) {
					fail("NetworkPolicy %s: ingress rule %d admits the admin port %d from anywhere", np.Name, i, adminPort)
				}
			}
		}
	}
	// A pod whose ftpgate serves its admin endpoint beyond loopback needs a
	// policy that says who may reach it.
	for _, w := range workloads {
		gc, ok := podConfig(w.template.Spec, configs)
		if !ok || gc.AdminListen == "" || strings.HasPrefix(gc.AdminListen, "127.0.0.1:") || strings.HasPrefix(gc.AdminListen, "[::1]:") {
			continue
		}
		if !slices.ContainsFunc(o.networkPolicies, func(np *networkingv1.NetworkPolicy) bool {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			return err == nil && sel.Matches(labels.Set(w.template.Labels)) &&
				slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}) {
			fail("%s: ftpgate's admin endpoint listens on %s, and no NetworkPolicy of this file limits who reaches it", w, gc.AdminListen)
		}
	}
	return errors.Join(errs...)
}

// admitsPort reports whether a policy port (TCP, one port or a range, or
// every port) includes port.
func admitsPort(p networkingv1.NetworkPolicyPort, port int) bool {
	if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
		return false
	}
	if p.Port == nil {
		return true
	}
	lo, hi := p.Port.IntValue(), p.Port.IntValue()
	if p.EndPort != nil {
		hi = int(*p.EndPort)
	}
	return lo <= port && port <= hi
}

// podConfig is the ftpgate configuration a pod mounts from a ConfigMap of
// this file, if any.
func podConfig(pod corev1.PodSpec, configs map[string]gateConfig) (gateConfig, bool) {
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil {
			if gc, ok := configs[v.ConfigMap.Name]; ok {
				return gc, true
			}
		}
	}
	return gateConfig{}, false
}

// adminPort is the admin endpoint's port in the manifests.
const adminPort = 9121

// checkPod checks one pod template: unique, valid port names; mounts of
// volumes that exist; ConfigMaps that exist; probes on declared ports; and
// for ftpgate containers the image, the capabilities and the ports of its
// configuration.
func checkPod(w workload, cms map[string]*corev1.ConfigMap, configs map[string]gateConfig) []error {
	var errs []error
	spec := &w.template.Spec
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{w}, args...)...))
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		if v.ConfigMap != nil && cms[v.ConfigMap.Name] == nil {
			fail("volume %s: ConfigMap %s is not in this file", v.Name, v.ConfigMap.Name)
		}
	}
	portNames := map[string]bool{}
	all := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for _, c := range all {
		for _, p := range c.Ports {
			if p.Name == "" {
				continue
			}
			for _, msg := range validation.IsValidPortName(p.Name) {
				fail("container %s: port name %q: %s", c.Name, p.Name, msg)
			}
			if portNames[p.Name] {
				fail("container %s: port name %q used twice in the pod", c.Name, p.Name)
			}
			portNames[p.Name] = true
		}
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				fail("container %s: mounts volume %s, which the pod does not have", c.Name, m.Name)
			}
		}
		for _, probe := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if probe == nil || probe.HTTPGet == nil {
				continue
			}
			if _, ok := containerPort(c, probe.HTTPGet.Port); !ok {
				fail("container %s: probe on port %s, which the container does not declare", c.Name, probe.HTTPGet.Port.String())
			}
		}
		if c.Image == ftpgateImage {
			errs = append(errs, checkGate(w, c, volumes, configs)...)
		}
	}
	if !slices.ContainsFunc(all, func(c corev1.Container) bool { return c.Image == ftpgateImage }) {
		fail("no container runs %s", ftpgateImage)
	}
	return errs
}

// checkGate checks an ftpgate container against the rules of the README:
// root for its capabilities and nothing more, NET_ADMIN always and
// NET_BIND_SERVICE only for a port below 1024, its configuration mounted
// where its arguments say, and the container ports and probes of that
// configuration.
func checkGate(w workload, c corev1.Container, volumes map[string]corev1.Volume, configs map[string]gateConfig) []error {
	var errs []error
	spec := &w.template.Spec
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: container %s: "+format, append([]any{w, c.Name}, args...)...))
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		fail("no securityContext with capabilities")
		return errs
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		fail("capabilities drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		fail("allowPrivilegeEscalation must be false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		fail("must not be privileged")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		fail("readOnlyRootFilesystem must be true")
	}

	// Its configuration: --config FILE, mounted from a ConfigMap of this file.
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		fail("args %q: want run --config FILE", c.Args)
		return errs
	}
	file := c.Args[i+1]
	var gc gateConfig
	found := false
	for _, m := range c.VolumeMounts {
		if filepath.Join(m.MountPath, configKey) != file {
			continue
		}
		v := volumes[m.Name]
		if v.ConfigMap == nil {
			fail("%s is not mounted from a ConfigMap", file)
			break
		}
		gc, found = configs[v.ConfigMap.Name]
		if !found {
			fail("%s comes from ConfigMap %s, which holds no ftpgate configuration", file, v.ConfigMap.Name)
		}
	}
	if !found {
		if len(errs) == 0 {
			fail("nothing mounts %s", file)
		}
		return errs
	}

	wantCaps := []corev1.Capability{"NET_ADMIN"}
	listenPorts := listenPorts(gc)
	if slices.ContainsFunc(listenPorts, func(p int32) bool { return p < 1024 }) {
		wantCaps = append(wantCaps, "NET_BIND_SERVICE")
	}
	if got := slices.Sorted(slices.Values(sc.Capabilities.Add)); !slices.Equal(got, wantCaps) {
		fail("capabilities add %v, want %v for listen ports %v", got, wantCaps, listenPorts)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		fail("runAsUser must be 0: capabilities added to a container are effective only for root")
	}
	if gc.Mode == "" {
		// A reverse proxy: its control and data ports are the pod's.
		for _, p := range listenPorts {
			if _, ok := containerPort(c, intstr.FromInt32(p)); !ok {
				fail("listens on port %d (%s), which the container does not declare", p, strings.Join(gc.Listen, ", "))
			}
		}
		lo, hi, err := portRange(gc.PassivePorts)
		if err != nil {
			fail("passive_ports: %v", err)
		}
		for p := lo; err == nil && p <= hi; p++ {
			if _, ok := containerPort(c, intstr.FromInt32(p)); !ok {
				fail("data port %d (passive_ports %s) is not a container port", p, gc.PassivePorts)
			}
		}
	} else if spec.InitContainers == nil || !slices.ContainsFunc(spec.InitContainers, func(ic corev1.Container) bool {
		return ic.Name == c.Name && ic.RestartPolicy != nil && *ic.RestartPolicy == corev1.ContainerRestartPolicyAlways && ic.StartupProbe != nil
	}) {
		// Interception must be in place before the app's first connection.
		fail("mode %s: want a native sidecar (an init container with restartPolicy Always) with a startup probe", gc.Mode)
	}
	if gc.AdminListen == "" {
		fail("no admin_listen: the probes need /healthz")
	} else if _, port, err := net.SplitHostPort(gc.AdminListen); err != nil {
		fail("admin_listen %q: %v", gc.AdminListen, err)
	} else {
		n, _ := strconv.Atoi(port)
		// Readiness is /readyz (503 from SIGTERM on, while the drain runs);
		// liveness and startup are /healthz (the process and its firewall).
		for _, probe := range []struct {
			what, path string
			p          *corev1.Probe
		}{{"startup", "/healthz", c.StartupProbe}, {"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}} {
			if probe.p == nil {
				continue
			}
			if probe.p.HTTPGet == nil || probe.p.HTTPGet.Path != probe.path {
				fail("the %s probe must GET %s", probe.what, probe.path)
				continue
			}
			if cp, _ := containerPort(c, probe.p.HTTPGet.Port); cp.ContainerPort != int32(n) {
				fail("probe on port %d, but admin_listen is %s", cp.ContainerPort, gc.AdminListen)
			}
		}
	}
	errs = append(errs, checkDrain(w, c, gc)...)
	return errs
}

// checkDrain checks that the pod's grace period covers the preStop wait,
// ftpgate's drain (timeouts.shutdown_grace) and its exit, and for replicas
// (--replicas N) what --replica-index auto and a rolling update need.
func checkDrain(w workload, c corev1.Container, gc gateConfig) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: container %s: "+format, append([]any{w, c.Name}, args...)...))
	}
	grace, err := replicagen.ShutdownGrace(gc.Timeouts.ShutdownGrace)
	if err != nil {
		fail("%v", err)
		return errs
	}
	var preStop int64
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = c.Lifecycle.PreStop.Sleep.Seconds
	}
	period := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if p := w.template.Spec.TerminationGracePeriodSeconds; p != nil {
		period = *p
	}
	if need := preStop + int64(grace.Seconds()) + exitMargin; period < need {
		fail("terminationGracePeriodSeconds %d: want at least %d (preStop %ds, shutdown_grace %s, %ds to exit)", period, need, preStop, grace, exitMargin)
	}
	n := gateReplicas(w)
	if n == 0 {
		return errs
	}
	if w.kind != "StatefulSet" {
		fail("--replicas %d: want a StatefulSet, whose pods' ordinals are the replica indexes", n)
	}
	if int32(n) != w.replicas {
		fail("--replicas %d, but %d replicas", n, w.replicas)
	}
	if preStop < 1 {
		fail("--replicas: want a preStop sleep, so that the control Service drops the pod before SIGTERM")
	}
	if i := slices.Index(c.Args, "--replica-index"); i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != "auto" {
		fail("args %q: want --replica-index auto", c.Args)
	} else if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		fail("--replica-index auto: want env POD_NAME from the field metadata.name")
	}
	if lo, hi, err := replicagen.ParseRange(gc.PassivePorts); err != nil {
		fail("%v", err)
	} else if _, _, err := replicagen.Slice(lo, hi, n, 0); err != nil {
		fail("%v", err)
	}
	return errs
}

// gateReplicas is N of the --replicas N of the workload's ftpgate, or 0.
func gateReplicas(w workload) int {
	for _, c := range append(slices.Clone(w.template.Spec.InitContainers), w.template.Spec.Containers...) {
		if c.Image != ftpgateImage {
			continue
		}
		if i := slices.Index(c.Args, "--replicas"); i >= 0 && i+1 < len(c.Args) {
			n, _ := strconv.Atoi(c.Args[i+1])
			return n
		}
	}
	return 0
}

// checkReplicaSet checks that replicas have one data Service for each
// replica and a PodDisruptionBudget that lets one go at a time.
func checkReplicaSet(w workload, n int, data []int, pdbs []*policyv1.PodDisruptionBudget) []error {
	var errs []error
	slices.Sort(data)
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(data, want) {
		errs = append(errs, fmt.Errorf("%s: data Services for replicas %v; want one for each of %v", w, data, want))
	}
	ok := slices.ContainsFunc(pdbs, func(p *policyv1.PodDisruptionBudget) bool {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		return err == nil && sel.Matches(labels.Set(w.template.Labels)) &&
			p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.IntValue() == 1 && p.Spec.MinAvailable == nil
	})
	if !ok {
		errs = append(errs, fmt.Errorf("%s: want a PodDisruptionBudget with maxUnavailable 1 for its pods", w))
	}
	return errs
}

// checkService checks that a Service selects a pod of the file, that every
// target port exists there, and, in front of ftpgate, that it publishes
// ftpgate's control port and exactly its data ports with client addresses
// kept and client affinity. In front of replicas (--replicas N) a Service
// selecting one pod by its name is that replica's data Service and
// publishes exactly its slice (it returns the replica); any other publishes
// the control port only and spreads it, without affinity.
func checkService(svc *corev1.Service, workloads []workload, configs map[string]gateConfig) (replica int, owner workload, errs []error) {
	replica = -1
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("Service %s: "+format, append([]any{svc.Name}, args...)...))
	}
	sel := maps.Clone(svc.Spec.Selector)
	podName, onePod := sel[replicagen.PodNameLabel]
	delete(sel, replicagen.PodNameLabel)
	var pod *corev1.PodSpec
	for _, w := range workloads {
		if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.template.Labels)) {
			pod, owner = &w.template.Spec, w
		}
	}
	if pod == nil {
		fail("selector %v selects no pod of this file", svc.Spec.Selector)
		return replica, owner, errs
	}
	n := gateReplicas(owner)
	if onePod {
		ord, err := strconv.Atoi(strings.TrimPrefix(podName, owner.name+"-"))
		if owner.kind != "StatefulSet" || !strings.HasPrefix(podName, owner.name+"-") || err != nil || ord < 0 || ord >= int(owner.replicas) {
			fail("selects pod %s, which %s does not have", podName, owner)
			return replica, owner, errs
		}
		replica = ord
	}
	names := map[string]bool{}
	var gate *corev1.Container
	var servicePorts []int32
	for _, p := range svc.Spec.Ports {
		for _, msg := range validation.IsValidPortName(p.Name) {
			fail("port name %q: %s", p.Name, msg)
		}
		if names[p.Name] {
			fail("port name %q used twice", p.Name)
		}
		names[p.Name] = true
		target := p.TargetPort
		if target.IntVal == 0 && target.StrVal == "" {
			target = intstr.FromInt32(p.Port)
		}
		var cp corev1.ContainerPort
		var c *corev1.Container
		for i := range pod.Containers {
			if x, ok := containerPort(pod.Containers[i], target); ok {
				cp, c = x, &pod.Containers[i]
			}
		}
		if c == nil {
			fail("port %s targets %s, which no container of the pod declares", p.Name, target.String())
			continue
		}
		if p.Port != cp.ContainerPort {
			// FTP replies name ports: the published port must be the one ftpgate listens on.
			fail("port %s publishes %d for container port %d", p.Name, p.Port, cp.ContainerPort)
		}
		if c.Image == ftpgateImage {
			gate = c
			servicePorts = append(servicePorts, cp.ContainerPort)
		}
	}
	if gate == nil {
		return replica, owner, errs
	}
	external := svc.Spec.Type == corev1.ServiceTypeLoadBalancer || svc.Spec.Type == corev1.ServiceTypeNodePort
	if external && svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		fail("externalTrafficPolicy %q: want Local, so that ftpgate sees the clients' addresses", svc.Spec.ExternalTrafficPolicy)
	}
	switch {
	case !external:
	case n > 0 && svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP:
		fail("sessionAffinity ClientIP in front of replicas: want None, the data ports find their replica by slice")
	case n == 0 && svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP:
		fail("sessionAffinity %q: want ClientIP", svc.Spec.SessionAffinity)
	}
	gc, _ := podConfig(*pod, configs)
	lo, hi, err := portRange(gc.PassivePorts)
	if err != nil {
		fail("passive_ports of the ftpgate it selects: %v", err)
		return replica, owner, errs
	}
	var want []int32
	what := "its control and data ports"
	switch {
	case n > 0 && replica >= 0:
		a, b, err := replicagen.Slice(int(lo), int(hi), n, replica)
		if err != nil {
			fail("%v", err)
			return replica, owner, errs
		}
		for p := a; p <= b; p++ {
			want = append(want, int32(p))
		}
		what = fmt.Sprintf("replica %d's slice of the data ports", replica)
	case n > 0:
		want, what = listenPorts(gc), "its control port only"
	default:
		want = listenPorts(gc)
		for p := lo; p <= hi; p++ {
			want = append(want, p)
		}
	}
	slices.Sort(want)
	slices.Sort(servicePorts)
	if !slices.Equal(servicePorts, want) {
		fail("publishes ftpgate's ports %v; want %s %v", servicePorts, what, want)
	}
	return replica, owner, errs
}

// containerPort finds a declared port of c by name or number.
func containerPort(c corev1.Container, port intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, p := range c.Ports {
		if port.Type == intstr.String && p.Name == port.StrVal || port.Type == intstr.Int && p.ContainerPort == port.IntVal {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

// listenPorts are the distinct ports of ftpgate's listen addresses.
func listenPorts(gc gateConfig) []int32 {
	var out []int32
	for _, l := range gc.Listen {
		_, p, err := net.SplitHostPort(l)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseUint(p, 10, 16); err == nil && !slices.Contains(out, int32(n)) {
			out = append(out, int32(n))
		}
	}
	return out
}

// portRange parses passive_ports, "LO-HI".
func portRange(s string) (lo, hi int32, err error) {
	a, b, ok := strings.Cut(s, "-")
	x, err1 := strconv.ParseUint(a, 10, 16)
	y, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil || x == 0 || x > y {
		return 0, 0, fmt.Errorf("%q: want LO-HI", s)
	}
	return int32(x), int32(y), nil
}

// firstDifference describes where two texts first differ, by line.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d is %q, want %q", i+1, gl, wl)
		}
	}
	return "same lines"
}
