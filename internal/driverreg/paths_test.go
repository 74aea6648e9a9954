package driverreg

import (
	"os"
	"path/filepath"
	"testing"
)

type dirOf string

func (d dirOf) Dir() string { return string(d) }

// A program beside a bench file named by a relative path ("bench.yaml",
// "./relay.sh") resolves to an absolute path, never to a bare name that
// would be looked up on PATH.
func TestProgramBesideARelativeBenchFile(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, prog, want string }{
		{".", "./relay.sh", filepath.Join(wd, "relay.sh")},
		{"lab", "tools/relay", filepath.Join(wd, "lab", "tools", "relay")},
		{"/etc/fudbench", "./relay.sh", "/etc/fudbench/relay.sh"},
		{".", "uhubctl", "uhubctl"},
		{".", "/usr/bin/relay", "/usr/bin/relay"},
	} {
		if got := Program(dirOf(tc.dir), tc.prog); got != tc.want {
			t.Errorf("Program(%q, %q) = %q, want %q", tc.dir, tc.prog, got, tc.want)
		}
	}
	if got := Path(nil, "rel/x"); got != "rel/x" {
		t.Errorf("settings made in code: %q", got)
	}
}
