package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// TestBombJobsRefused runs the binary on the job files of the bomb table
// that are refused before the YAML lexer runs: each exits 2 at once with
// its place in the file, and the whole process stays under 100 MiB
// resident (the binary here is built with -race, which doubles that; the
// figures without it are in docs/RELIABILITY.md). Rows refused after the
// lexer are bounded by allocation in internal/config's TestBombs.
//
// The peak is GNU time's: os/exec starts a child sharing the test's
// memory until exec, and the kernel charges the child with the test's
// peak then, so the child's own rusage says nothing under it.
func TestBombJobsRefused(t *testing.T) {
	gnuTime, err := exec.LookPath("/usr/bin/time")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("GNU time is required under CI=true (Debian package time): %v", err)
		}
		t.Skipf("no GNU time: %v", err)
	}
	dir := t.TempDir()
	sparse := alloccheck.Sparse(t, filepath.Join(dir, "sparse.yaml"), 10<<30)
	for _, tt := range []struct {
		name, file, want string
	}{
		{"cuts nested 100,000 deep", runWrite(t, filepath.Join(dir, "deep.yaml"), deepJobText(100_000)), ":3:1031: brackets nest more than 1024 deep (the limit is 64 levels)"},
		{"\"- \" 100,000 times", runWrite(t, filepath.Join(dir, "dashes.yaml"), "cuts:\n"+strings.Repeat("- ", 100_000)+"x\n"), ":2:2049: more than 1024 \"-\" indicators on one line"},
		{"10 GiB job file", sparse, ": job file of 10.0 GiB is too large: the limit is 256KiB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			usage := filepath.Join(dir, "usage")
			cmd := exec.Command(gnuTime, "-f", "%M %e %U %S", "-o", usage, binary, "run", tt.file, "--out", filepath.Join(dir, "out"), "--db", filepath.Join(dir, "results.db"))
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != ExitUsage {
				t.Fatalf("exit %v, want %d; stderr:\n%s", err, ExitUsage, stderr.String())
			}
			if want := "fudbench: " + tt.file + tt.want; !strings.HasPrefix(stderr.String(), want) {
				t.Errorf("stderr %q, want %q", stderr.String(), want)
			}
			b, err := os.ReadFile(usage)
			if err != nil {
				t.Fatal(err)
			}
			var kib int64
			var wall, user, sys float64
			// GNU time writes "Command exited with non-zero status 2"
			// first.
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if _, err := fmt.Sscan(lines[len(lines)-1], &kib, &wall, &user, &sys); err != nil {
				t.Fatalf("GNU time wrote %q: %v", b, err)
			}
			t.Logf("bomb %s: exit 2 in %.2f s (%.2f s CPU), %.1f MiB resident", tt.name, wall, user+sys, float64(kib)/1024)
			if kib > 100<<10 {
				t.Errorf("%.1f MiB resident, want under 100 MiB", float64(kib)/1024)
			}
			if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
				t.Error("an output directory was made")
			}
		})
	}
}
