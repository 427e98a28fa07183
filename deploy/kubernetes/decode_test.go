package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

// newDecoder returns a decoder for the API groups the manifests use, in
// strict mode: an unknown field, a field name in the wrong case, a duplicate
// field or a wrong type is an error, as `kubectl apply --validate=strict`
// makes it. A kind the scheme does not know is an error too.
func newDecoder() (runtime.Decoder, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, networkingv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("build scheme: %w", err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer(), nil
}

// document is one decoded YAML document of a manifest file.
type document struct {
	file string
	line int // where the document starts, 1-based
	obj  runtime.Object
}

func (d document) String() string { return fmt.Sprintf("%s:%d", filepath.Base(d.file), d.line) }

// decodeFile decodes every document of a multi-document YAML file. It
// returns every error, each naming the file and the document's first line;
// a file without any object is an error.
func decodeFile(dec runtime.Decoder, path string) ([]document, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var docs []document
	var errs []error
	for _, part := range splitDocuments(b) {
		if !hasContent(part.text) {
			continue // only comments, as before the first "---"
		}
		obj, _, err := dec.Decode(part.text, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", path, part.line, err))
			continue
		}
		docs = append(docs, document{file: path, line: part.line, obj: obj})
	}
	if len(docs) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s: no Kubernetes object in the file", path))
	}
	return docs, errors.Join(errs...)
}

type yamlPart struct {
	line int
	text []byte
}

// splitDocuments cuts a YAML stream at its "---" lines, keeping where each
// document starts.
func splitDocuments(b []byte) []yamlPart {
	var parts []yamlPart
	cur := yamlPart{line: 1}
	lines := bytes.SplitAfter(b, []byte("\n"))
	for i, l := range lines {
		if t := bytes.TrimRight(l, " \t\r\n"); string(t) == "---" || bytes.HasPrefix(t, []byte("--- ")) {
			parts = append(parts, cur)
			cur = yamlPart{line: i + 2}
			continue
		}
		cur.text = append(cur.text, l...)
	}
	return append(parts, cur)
}

// hasContent reports whether a YAML document holds more than comments and
// blank lines.
func hasContent(doc []byte) bool {
	for _, l := range strings.Split(string(doc), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}
