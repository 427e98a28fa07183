package kubernetes

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
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
}

// objects are a manifest file's decoded objects by kind.
type objects struct {
	configMaps      []*corev1.ConfigMap
	services        []*corev1.Service
	deployments     []*appsv1.Deployment
	networkPolicies []*networkingv1.NetworkPolicy
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

	for _, dep := range o.deployments {
		sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
		if err != nil {
			fail("Deployment %s: selector: %w", dep.Name, err)
			continue
		}
		if sel.Empty() || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
			fail("Deployment %s: selector %s does not select its own pod template's labels %v", dep.Name, sel, dep.Spec.Template.Labels)
		}
		errs = append(errs, checkPod(dep.Name, &dep.Spec.Template.Spec, cms, configs)...)
	}

	for _, svc := range o.services {
		errs = append(errs, checkService(svc, o.deployments, configs)...)
	}
	for _, np := range o.networkPolicies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			fail("NetworkPolicy %s: %w", np.Name, err)
			continue
		}
		if !slices.ContainsFunc(o.deployments, func(d *appsv1.Deployment) bool {
			return sel.Matches(labels.Set(d.Spec.Template.Labels))
		}) {
			fail("NetworkPolicy %s: selects no pod of this file", np.Name)
		}
	}
	return errors.Join(errs...)
}

// checkPod checks one pod template: unique, valid port names; mounts of
// volumes that exist; ConfigMaps that exist; probes on declared ports; and
// for ftpgate containers the image, the capabilities and the ports of its
// configuration.
func checkPod(owner string, spec *corev1.PodSpec, cms map[string]*corev1.ConfigMap, configs map[string]gateConfig) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("Deployment %s: "+format, append([]any{owner}, args...)...))
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
			errs = append(errs, checkGate(owner, spec, c, volumes, configs)...)
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
func checkGate(owner string, spec *corev1.PodSpec, c corev1.Container, volumes map[string]corev1.Volume, configs map[string]gateConfig) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("Deployment %s: container %s: "+format, append([]any{owner, c.Name}, args...)...))
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
		for _, probe := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if probe == nil {
				continue
			}
			if probe.HTTPGet == nil || probe.HTTPGet.Path != "/healthz" {
				fail("probes must GET /healthz")
				continue
			}
			if cp, _ := containerPort(c, probe.HTTPGet.Port); cp.ContainerPort != int32(n) {
				fail("probe on port %d, but admin_listen is %s", cp.ContainerPort, gc.AdminListen)
			}
		}
	}
	return errs
}

// checkService checks that a Service selects a pod of the file, that every
// target port exists there, and, in front of ftpgate, that it publishes
// ftpgate's control port and exactly its data ports with client addresses
// kept and client affinity.
func checkService(svc *corev1.Service, deps []*appsv1.Deployment, configs map[string]gateConfig) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("Service %s: "+format, append([]any{svc.Name}, args...)...))
	}
	var pod *corev1.PodSpec
	for _, d := range deps {
		if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			pod = &d.Spec.Template.Spec
		}
	}
	if pod == nil {
		fail("selector %v selects no pod of this file", svc.Spec.Selector)
		return errs
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
		return errs
	}
	if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		fail("externalTrafficPolicy %q: want Local, so that ftpgate sees the clients' addresses", svc.Spec.ExternalTrafficPolicy)
	}
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		fail("sessionAffinity %q: want ClientIP", svc.Spec.SessionAffinity)
	}
	var gc gateConfig
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil {
			if x, ok := configs[v.ConfigMap.Name]; ok {
				gc = x
			}
		}
	}
	want := listenPorts(gc)
	lo, hi, err := portRange(gc.PassivePorts)
	if err != nil {
		fail("passive_ports of the ftpgate it selects: %v", err)
		return errs
	}
	for p := lo; p <= hi; p++ {
		want = append(want, p)
	}
	slices.Sort(want)
	slices.Sort(servicePorts)
	if !slices.Equal(servicePorts, want) {
		fail("publishes ftpgate's ports %v; want its control and data ports %v", servicePorts, want)
	}
	return errs
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
