package kubernetes

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// configDir holds ftpgate's configuration files, one per ConfigMap.
const configDir = "ftpgate-config"

// manifestFiles returns every manifest of this directory.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found manifests %v; want at least the inbound sidecar, the outbound sidecar and the DMZ relay", files)
	}
	return files
}

// TestManifestsDecodeStrictly decodes every document of every manifest into
// its Kubernetes API type, strictly, and checks that the objects of each
// file fit together (checkAgreement).
func TestManifestsDecodeStrictly(t *testing.T) {
	dec, err := newDecoder()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range manifestFiles(t) {
		t.Run(f, func(t *testing.T) {
			docs, err := decodeFile(dec, f)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, d := range docs {
				kinds = append(kinds, d.obj.GetObjectKind().GroupVersionKind().Kind)
			}
			t.Logf("%d objects: %s", len(docs), strings.Join(kinds, ", "))
			if err := checkAgreement(docs, configDir); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestManifestsShape checks what each deployment of the README needs: a
// Service of type LoadBalancer for the inbound sidecar and the DMZ relay,
// an app container beside ftpgate for the sidecars, and ftpgate's
// configuration in a ConfigMap for every one.
func TestManifestsShape(t *testing.T) {
	dec, err := newDecoder()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		file          string
		loadBalancer  bool // a Service of type LoadBalancer in front
		otherWorkload bool // a container beside ftpgate in the pod
	}{
		{"inbound-sidecar.yaml", true, true},
		{"outbound-sidecar.yaml", false, true},
		{"dmz-relay.yaml", true, false},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			docs, err := decodeFile(dec, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			o, err := sortObjects(docs)
			if err != nil {
				t.Fatal(err)
			}
			if len(o.deployments) != 1 {
				t.Fatalf("%d Deployments, want 1", len(o.deployments))
			}
			lb := slices.ContainsFunc(o.services, func(s *corev1.Service) bool { return s.Spec.Type == corev1.ServiceTypeLoadBalancer })
			if lb != tc.loadBalancer {
				t.Errorf("a Service of type LoadBalancer: %v, want %v", lb, tc.loadBalancer)
			}
			if !slices.ContainsFunc(o.configMaps, func(c *corev1.ConfigMap) bool { return strings.HasPrefix(c.Name, configMapPrefix) }) {
				t.Errorf("no ConfigMap %s* with ftpgate's configuration", configMapPrefix)
			}
			if got := others(o.deployments[0]); (len(got) > 0) != tc.otherWorkload {
				t.Errorf("containers beside ftpgate: %v; want some: %v", got, tc.otherWorkload)
			}
		})
	}
}

// others names the pod's containers that do not run ftpgate.
func others(d *appsv1.Deployment) []string {
	var out []string
	for _, c := range append(slices.Clone(d.Spec.Template.Spec.InitContainers), d.Spec.Template.Spec.Containers...) {
		if c.Image != ftpgateImage {
			out = append(out, c.Name)
		}
	}
	return out
}

// TestEveryConfigFileUsed: each file under ftpgate-config/ is the
// configuration of exactly one ConfigMap, so none can rot unseen.
func TestEveryConfigFileUsed(t *testing.T) {
	dec, err := newDecoder()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(configDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no configuration files in %s: %v", configDir, err)
	}
	used := map[string][]string{}
	for _, f := range manifestFiles(t) {
		docs, err := decodeFile(dec, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			if cm, ok := d.obj.(*corev1.ConfigMap); ok && strings.HasPrefix(cm.Name, configMapPrefix) {
				name := filepath.Join(configDir, strings.TrimPrefix(cm.Name, configMapPrefix)+".yaml")
				used[name] = append(used[name], d.String())
			}
		}
	}
	for _, f := range files {
		if n := len(used[f]); n != 1 {
			t.Errorf("%s is the configuration of %d ConfigMaps (%v), want 1", f, n, used[f])
		}
	}
}

// TestTypoFailsDecode: a copy of a manifest with one deliberate mistake
// fails, and the error names the mistake.
func TestTypoFailsDecode(t *testing.T) {
	dec, err := newDecoder()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		file     string
		old, new string
		wantErr  string // in the error
		agree    bool   // the mistake only shows in checkAgreement
	}{
		{"unknown field", "inbound-sidecar.yaml", "containerPort: 21\n", "containerPrt: 21\n", `unknown field "spec.template.spec.containers[1].ports[0].containerPrt"`, false},
		{"field name in the wrong case", "inbound-sidecar.yaml", "  externalTrafficPolicy: Local\n", "  externaltrafficpolicy: Local\n", `unknown field "spec.externaltrafficpolicy"`, false},
		{"misspelt kind", "inbound-sidecar.yaml", "kind: Deployment", "kind: Deploymnet", `no kind "Deploymnet" is registered`, false},
		{"unknown API version", "dmz-relay.yaml", "apiVersion: networking.k8s.io/v1", "apiVersion: networking.k8s.io/v2", `networking.k8s.io/v2`, false},
		{"duplicate field", "outbound-sidecar.yaml", "restartPolicy: Always\n", "restartPolicy: Always\n          restartPolicy: Never\n", `"restartPolicy" already set`, false},
		{"wrong type", "dmz-relay.yaml", "replicas: 1\n", "replicas: one\n", "spec.replicas", false},
		{"field at the wrong level", "outbound-sidecar.yaml", "      automountServiceAccountToken: false\n", "      automountServiceAcountToken: false\n", `unknown field "spec.template.spec.automountServiceAcountToken"`, false},
		{"unknown NetworkPolicy field", "dmz-relay.yaml", "endPort: 40007", "endport: 40007", `unknown field "spec.ingress[0].ports[1].endport"`, false},
		{"ConfigMap differs from its file", "inbound-sidecar.yaml", "    passive_ports: 40000-40007\n", "    passive_ports: 40000-40008\n", "differs from ftpgate-config/inbound.yaml", true},
		{"Service misses a data port", "inbound-sidecar.yaml", "    - name: data-40007\n      port: 40007\n      targetPort: data-40007\n      protocol: TCP\n", "", "want its control and data ports", true},
		{"target port nobody declares", "dmz-relay.yaml", "targetPort: data-40003", "targetPort: data-4003", "targets data-4003", true},
		{"selector misses the pod", "outbound-sidecar.yaml", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: ftp-client-app\n", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: ftp-client\n", "does not select its own pod", true},
		{"admin port in an open range", "outbound-sidecar.yaml", "          port: 9122\n", "          port: 9121\n", "admits the admin port 9121 from anywhere", true},
		{"admin port without a policy", "outbound-sidecar.yaml", "  policyTypes: [\"Ingress\"]\n", "  policyTypes: [\"Egress\"]\n", "no NetworkPolicy of this file limits who reaches it", true},
		{"readiness on /healthz", "dmz-relay.yaml", "path: /readyz", "path: /healthz", "the readiness probe must GET /readyz", true},
		{"data Service of a pod that does not exist", "replicas.yaml", "pod-name: ftpgate-2\n", "pod-name: ftpgate-3\n", "selects pod ftpgate-3, which StatefulSet ftpgate does not have", true},
		{"replica count differs from the StatefulSet", "replicas.yaml", `"--replicas", "3"`, `"--replicas", "4"`, "--replicas 4, but 3 replicas", true},
		{"grace period shorter than the drain", "replicas.yaml", "terminationGracePeriodSeconds: 45\n", "terminationGracePeriodSeconds: 30\n", "terminationGracePeriodSeconds 30: want at least 40", true},
		{"no preStop wait", "replicas.yaml", "              sleep:\n                seconds: 5\n", "              sleep:\n                seconds: 0\n", "want a preStop sleep", true},
		{"PDB lets two go", "replicas.yaml", "maxUnavailable: 1\n", "maxUnavailable: 2\n", "want a PodDisruptionBudget with maxUnavailable 1", true},
		{"control Service with client affinity", "replicas.yaml", "  sessionAffinity: None\n  selector:\n    app.kubernetes.io/name: ftpgate-replicas\n  ports:\n    - name: ftp\n",
			"  sessionAffinity: ClientIP\n  selector:\n    app.kubernetes.io/name: ftpgate-replicas\n  ports:\n    - name: ftp\n", "sessionAffinity ClientIP in front of replicas", true},
		{"data Service with another replica's port", "replicas.yaml", "    - name: data-40016\n      port: 40016\n      targetPort: data-40016\n",
			"    - name: data-40015\n      port: 40015\n      targetPort: data-40015\n", "want replica 1's slice of the data ports", true},
		{"replica index without the pod name", "replicas.yaml", "fieldPath: metadata.name\n", "fieldPath: metadata.namespace\n", "want env POD_NAME from the field metadata.name", true},
		{"unknown preStop field", "replicas.yaml", "                seconds: 5\n", "                secs: 5\n", `unknown field "spec.template.spec.containers[0].lifecycle.preStop.sleep.secs"`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(b), tc.old); n != 1 {
				t.Fatalf("%s contains %q %d times, want once; update the case", tc.file, tc.old, n)
			}
			bad := filepath.Join(t.TempDir(), tc.file)
			if err := os.WriteFile(bad, []byte(strings.Replace(string(b), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			docs, err := decodeFile(dec, bad)
			if tc.agree {
				if err != nil {
					t.Fatalf("the copy should still decode: %v", err)
				}
				err = checkAgreement(docs, configDir)
			}
			if err == nil {
				t.Fatalf("the copy with %q in place of %q passed", tc.new, tc.old)
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q\ndoes not contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestSplitDocuments: documents keep the line they start on.
func TestSplitDocuments(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		lines []int
	}{
		{"one", "a: 1\n", []int{1}},
		{"leading comment", "# c\n---\na: 1\n---\nb: 2\n", []int{1, 3, 5}},
		{"marker with comment", "a: 1\n--- # next\nb: 2\n", []int{1, 3}},
		{"no final newline", "a: 1\n---\nb: 2", []int{1, 3}},
		{"indented dashes are content", "a: |\n  ---\n", []int{1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for _, p := range splitDocuments([]byte(tc.in)) {
				got = append(got, p.line)
			}
			if !slices.Equal(got, tc.lines) {
				t.Errorf("documents start on lines %v, want %v", got, tc.lines)
			}
		})
	}
}
