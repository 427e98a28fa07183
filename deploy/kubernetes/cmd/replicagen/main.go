// Command replicagen writes replicas.yaml, the manifest of N ftpgate
// replicas behind one address (package replicagen):
//
//	go run ./cmd/replicagen -replicas 3 -config ftpgate-config/replicas.yaml -o replicas.yaml
//
// go generate in deploy/kubernetes runs exactly that.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ftpgate/ftpgate/deploy/kubernetes/replicagen"
)

func main() {
	n := flag.Int("replicas", 3, "how many ftpgate replicas share the address")
	config := flag.String("config", "ftpgate-config/replicas.yaml", "ftpgate's configuration `file`, the same for every replica")
	out := flag.String("o", "", "write the manifest to `file` (default: standard output)")
	flag.Parse()
	if err := run(*n, *config, *out); err != nil {
		fmt.Fprintf(os.Stderr, "replicagen: %v\n", err)
		os.Exit(1)
	}
}

func run(n int, config, out string) error {
	cfg, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	b, err := replicagen.Generate(replicagen.Options{Replicas: n, Config: cfg, ConfigFile: config})
	if err != nil {
		return err
	}
	if out == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(out, b, 0o644)
}
