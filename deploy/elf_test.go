package deploy

import (
	"debug/elf"
	"testing"
)

// elfMachine names the CPU an ELF file is for, and fails the test for one
// that is not static (has an interpreter).
func elfMachine(t *testing.T, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: not a static binary", path)
		}
	}
	return f.Machine.String()
}
