// Package kubernetes holds ftpgate's example Kubernetes manifests (the YAML
// files beside this one) and the tests that check them: every document
// decodes strictly into its Kubernetes API type, the ftpgate configuration
// in each ConfigMap is the file under ftpgate-config/, and the ports, names
// and labels the objects share agree.
//
// It is a Go module of its own so that ftpgate never depends on the
// Kubernetes libraries. It holds no code that runs in a cluster and nothing
// imports it.
package kubernetes

// replicas.yaml is generated: N replicas need N data Services, each listing
// its slice of the passive ports one by one.
//
//go:generate go run ./cmd/replicagen -replicas 3 -config ftpgate-config/replicas.yaml -o replicas.yaml
