package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ftpgate/ftpgate/deploy/kubernetes/replicagen"
	corev1 "k8s.io/api/core/v1"
)

// replicasConfig is ftpgate's configuration in replicas.yaml.
const replicasConfig = "ftpgate-config/replicas.yaml"

func generateReplicas(t *testing.T, n int) []byte {
	t.Helper()
	cfg, err := os.ReadFile(replicasConfig)
	if err != nil {
		t.Fatal(err)
	}
	b, err := replicagen.Generate(replicagen.Options{Replicas: n, Config: cfg, ConfigFile: replicasConfig})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReplicasManifestGenerated: replicas.yaml is what the generator makes
// of ftpgate-config/replicas.yaml for three replicas (go generate).
func TestReplicasManifestGenerated(t *testing.T) {
	got, err := os.ReadFile("replicas.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := generateReplicas(t, 3); !bytes.Equal(got, want) {
		t.Errorf("replicas.yaml is not the generator's output (run go generate in deploy/kubernetes): %s",
			firstDifference(string(got), string(want)))
	}
}

// TestReplicasManifests: the manifest for 1 to 6 replicas decodes strictly
// and agrees with itself (checkAgreement: one data Service per replica
// publishing exactly its slice, the control Service only port 21, the PDB,
// the drain), and the data Services together publish every sliced port
// once.
func TestReplicasManifests(t *testing.T) {
	dec, err := newDecoder()
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 6; n++ {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "replicas.yaml")
			if err := os.WriteFile(f, generateReplicas(t, n), 0o644); err != nil {
				t.Fatal(err)
			}
			docs, err := decodeFile(dec, f)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkAgreement(docs, configDir); err != nil {
				t.Fatal(err)
			}
			o, err := sortObjects(docs)
			if err != nil {
				t.Fatal(err)
			}
			if len(o.statefulSets) != 1 || *o.statefulSets[0].Spec.Replicas != int32(n) {
				t.Fatalf("want one StatefulSet with %d replicas", n)
			}
			published := map[int32]string{}
			data := 0
			for _, svc := range o.services {
				if _, ok := svc.Spec.Selector[replicagen.PodNameLabel]; !ok {
					continue
				}
				data++
				if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
					t.Errorf("data Service %s: type %s, want LoadBalancer", svc.Name, svc.Spec.Type)
				}
				for _, p := range svc.Spec.Ports {
					if other, dup := published[p.Port]; dup {
						t.Errorf("port %d published by %s and %s", p.Port, other, svc.Name)
					}
					published[p.Port] = svc.Name
				}
			}
			if data != n {
				t.Errorf("%d data Services, want %d", data, n)
			}
			// 48 ports: each replica gets 48/n, the rest are nobody's.
			if want := 48 / n * n; len(published) != want {
				t.Errorf("the data Services publish %d ports, want %d", len(published), want)
			}
		})
	}
}
