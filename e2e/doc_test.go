package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocTable checks doc.go's feature table against the source: every Test function of the
// package has a row, and every row names a test defined in the file the row names. It reads
// files only, so it runs everywhere, without root.
func TestDocTable(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	// Rows: "//\t<feature>  <TestName[/subtest]>  <file>", columns two or more spaces apart.
	row := regexp.MustCompile(`^//\t(.+?)\s{2,}(Test\w*(?:/[\w-]+)?)\s{2,}(\S+\.go)$`)
	listed := map[string][]string{} // test -> files of its rows
	rows := 0
	for _, line := range strings.Split(string(doc), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		rows++
		top, sub, isSub := strings.Cut(m[2], "/")
		if !isSub {
			listed[top] = append(listed[top], m[3])
			continue
		}
		// A subtest's row names the file that holds its code, which must exist.
		if _, err := os.Stat(m[3]); err != nil {
			t.Errorf("doc.go's feature table puts the subtest %s/%s in %s: %v", top, sub, m[3], err)
		}
		if _, ok := listed[top]; !ok {
			listed[top] = nil
		}
	}
	if rows == 0 {
		t.Fatal("doc.go has no feature table rows")
	}

	defined := map[string]string{} // test -> file
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Test") {
				defined[fn.Name.Name] = f
			}
		}
	}
	for name, file := range defined {
		if _, ok := listed[name]; !ok {
			t.Errorf("%s (%s) has no row in doc.go's feature table", name, file)
		}
	}
	for name, inFiles := range listed {
		file, ok := defined[name]
		if !ok {
			t.Errorf("doc.go's feature table lists %s, which no test file defines", name)
			continue
		}
		for _, f := range inFiles {
			if f != file {
				t.Errorf("doc.go's feature table puts %s in %s; it is in %s", name, f, file)
			}
		}
	}
	if !slices.Contains(files, "doc_test.go") {
		t.Errorf("test files %v: doc_test.go itself not found (wrong working directory?)", files)
	}
}
