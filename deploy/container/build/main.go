// Command build writes ftpgate's container image as an OCI image layout,
// without a container engine and without pulling any base image: a static
// ftpgate binary (CGO_ENABLED=0) on an empty ("scratch") file system,
// running as the unprivileged user 65532.
//
//	go run ./deploy/container/build -o DIR [-version V] [-arch amd64] [-tag ftpgate:V]
//
// Load the result with e.g. `skopeo copy oci:DIR:TAG docker-daemon:ftpgate:TAG`
// or `podman load -i` after `tar -C DIR -cf image.tar .`. See
// deploy/container/README.md.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed facts.
const (
	binPath    = "/usr/local/bin/ftpgate"
	configPath = "/etc/ftpgate/ftpgate.yaml"
	caBundle   = "/etc/ssl/certs/ca-certificates.crt"
	// imageUser is the image's default user (distroless's "nonroot"). The
	// Kubernetes manifests run the container as root with only NET_ADMIN
	// and NET_BIND_SERVICE, because Kubernetes grants no ambient
	// capabilities to other users.
	imageUser = 65532
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	out := fs.String("o", "", "output `directory` of the OCI image layout (created)")
	version := fs.String("version", "dev", "ftpgate `version` written into the binary and the image labels")
	arch := fs.String("arch", runtime.GOARCH, "target `GOARCH`")
	tag := fs.String("tag", "", "image reference name in the layout's index (default ftpgate:VERSION)")
	binary := fs.String("binary", "", "use this static ftpgate `file` instead of building one")
	ca := fs.String("ca-bundle", caBundle, "PEM CA `bundle` copied into the image for verifying FTPS servers (empty: none)")
	epoch := fs.Int64("source-date-epoch", 0, "file and image time, `seconds` since 1970 (default $SOURCE_DATE_EPOCH or 0), for reproducible images")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return errors.New("usage: build -o DIR [-version V] [-arch GOARCH] [-tag NAME] [-binary FILE]")
	}
	if *tag == "" {
		*tag = "ftpgate:" + *version
	}
	mtime := time.Unix(*epoch, 0).UTC()
	if *epoch == 0 {
		if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
			var n int64
			if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
				return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
			}
			mtime = time.Unix(n, 0).UTC()
		}
	}

	bin := *binary
	if bin == "" {
		tmp, err := os.MkdirTemp("", "ftpgate-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		bin = filepath.Join(tmp, "ftpgate")
		if err := buildBinary(bin, *arch, *version); err != nil {
			return err
		}
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("read binary: %w", err)
	}
	var caPEM []byte
	if *ca != "" {
		if caPEM, err = os.ReadFile(*ca); err != nil {
			return fmt.Errorf("CA bundle: %w", err)
		}
	}
	layerTar, err := rootfs(exe, caPEM, mtime)
	if err != nil {
		return err
	}
	img, err := image(layerTar, *arch, *version, mtime)
	if err != nil {
		return err
	}
	p, err := layout.Write(*out, empty.Index)
	if err != nil {
		return fmt.Errorf("write layout %s: %w", *out, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": *tag,
	})); err != nil {
		return fmt.Errorf("write image to %s: %w", *out, err)
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s to %s (%s, %d-byte binary)\n", *tag, *out, d, len(exe))
	return nil
}

// buildBinary builds a static, stripped ftpgate for arch.
func buildBinary(out, arch, version string) error {
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+version,
		"-o", out, "github.com/ftpgate/ftpgate/cmd/ftpgate")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ftpgate for linux/%s: %w", arch, err)
	}
	return nil
}

// rootfs is the image's only layer: the binary, the CA bundle, the user's
// passwd and group entries and the config directory, all owned by root.
func rootfs(exe, caPEM []byte, mtime time.Time) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", imageUser, imageUser)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", imageUser)
	steps := []func() error{
		func() error { return dir("etc") },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("etc/ftpgate") },
		func() error { return dir("tmp") },
		func() error { return dir("usr") },
		func() error { return dir("usr/local") },
		func() error { return dir("usr/local/bin") },
		func() error { return file(binPath[1:], 0o755, exe) },
	}
	if caPEM != nil {
		steps = append(steps,
			func() error { return dir("etc/ssl") },
			func() error { return dir("etc/ssl/certs") },
			func() error { return file(caBundle[1:], 0o644, caPEM) })
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, fmt.Errorf("layer tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	return b.Bytes(), nil
}

// image puts the layer on scratch with ftpgate's configuration.
func image(layerTar []byte, arch, version string, created time.Time) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   v1.Time{Time: created},
		CreatedBy: "deploy/container/build: static ftpgate on scratch",
	}})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: created}
	if arch == "arm" {
		cf.Variant = "v7"
	}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", imageUser, imageUser),
		Entrypoint: []string{binPath},
		Cmd:        []string{"run", "--config", configPath},
		Env:        []string{"PATH=/usr/local/bin"},
		WorkingDir: "/",
		ExposedPorts: map[string]struct{}{
			"21/tcp": {}, "9121/tcp": {},
		},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "ftpgate",
			"org.opencontainers.image.description": "firewall-aware FTP proxy and application-level gateway",
			"org.opencontainers.image.version":     version,
			"org.opencontainers.image.source":      "https://github.com/ftpgate/ftpgate",
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	return img, nil
}
