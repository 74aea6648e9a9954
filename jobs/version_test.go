package jobs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/jobs"
	_ "github.com/fudbench/fudbench/power/exec"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// A plain CoAP device is asked which image runs as its bench entry says.
// A naive simulated board updated with plain block1 stands for it: its
// application names its version on the console ("APP v2.0.0 seq=2 …")
// and inside its /fw/version answer, which a pattern picks out as it
// would from any device's text. Each check must give the outcomes the
// bench's own protocol gives, and must decide: told a version the update
// does not report, the clean update is not taken for updated.
func TestVersionChecksOnSimBoards(t *testing.T) {
	job := `name: versions
baseline: {build: {version: 1.0.0, seq: 1, size: 4KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 4KiB, seed: 2}}
profile: block1
block_size: 256
cuts:
  - none
  - after_block: {from: 3, to: 15, step: 4}
off_time: 5ms
recovery_timeout: 1s
reflash: true
`
	checks := []struct {
		name  string
		check *boards.VersionCheck
	}{
		{"fudbench", nil},
		{"console", &boards.VersionCheck{Mode: boards.VersionConsole, Match: regexp.MustCompile(`^APP v(\S+) seq=`)}},
		{"get", &boards.VersionCheck{Mode: boards.VersionCoAP, Get: "/fw/version", Match: regexp.MustCompile(`(\d+\.\d+\.\d+)`)}},
		{"none", &boards.VersionCheck{Mode: boards.VersionNone}},
	}
	outcomes := map[string][]results.Outcome{}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			_, inv := startSims(t, 1, sim.NaiveInplace)
			bd := inv.Boards[0]
			bd.CoAP.Profile, bd.CoAP.Version = boards.ProfileBlock1, tc.check
			rep := execute(t, parseJob(t, job), inv, nil, nil)
			var got []results.Outcome
			for _, c := range rep.Cycles {
				if c.Outcome == results.InfraError || c.Outcome == results.MissedCut {
					t.Fatalf("cycle %d (%s): %s: %s", c.Cycle, c.Plan, c.Outcome, c.Reason)
				}
				got = append(got, c.Outcome)
			}
			if len(got) != 5 || got[0] != results.Updated {
				t.Fatalf("outcomes %v: want 5 cycles, the first (no cut) updated", got)
			}
			outcomes[tc.name] = got
		})
	}
	for _, tc := range checks[1:] {
		if g, w := outcomes[tc.name], outcomes["fudbench"]; len(g) > 0 && len(w) > 0 && !slicesEqual(g, w) {
			t.Errorf("version check %s: outcomes %v, the bench's own protocol %v", tc.name, g, w)
		}
	}

	// The check decides: an update said to report 9.9.9 is not taken for
	// updated when the device reports 2.0.0.
	for _, tc := range checks[1:3] {
		t.Run(tc.name+"/wrong version", func(t *testing.T) {
			_, inv := startSims(t, 1, sim.NaiveInplace)
			bd := inv.Boards[0]
			bd.CoAP.Profile, bd.CoAP.Version = boards.ProfileBlock1, tc.check
			j := parseJob(t, strings.Replace(job, "  - after_block: {from: 3, to: 15, step: 4}\n", "", 1))
			p := mustPrepare(t, j, inv, nil, nil)
			if p.BaselineVersion != "1.0.0" || p.UpdateVersion != "2.0.0" {
				t.Fatalf("versions from the images: %q, %q", p.BaselineVersion, p.UpdateVersion)
			}
			p.UpdateVersion = "9.9.9"
			rep := executePrepared(t, j, p)
			if len(rep.Cycles) != 1 {
				t.Fatalf("%d cycles", len(rep.Cycles))
			}
			c := rep.Cycles[0]
			if c.Outcome != results.RolledBack || !strings.Contains(c.Reason, "another image runs (2.0.0)") {
				t.Errorf("outcome %s (%s), want rolled-back: another image runs (2.0.0)", c.Outcome, c.Reason)
			}
		})
	}
}

func runWriteFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A board that reads its version string needs each image to name one,
// and the two to differ.
func TestVersionCheckNeedsImageVersions(t *testing.T) {
	dir := t.TempDir()
	raw := runWriteFile(t, dir, "raw.bin", "version 2.0.0\n")
	raw1 := runWriteFile(t, dir, "raw1.bin", "version 1.0.0\n")
	bench := `boards:
  - name: plain
    power: {driver: exec, on: [/bin/true], off: [/bin/true]}
    coap:
      address: 127.0.0.1:5683
      profile: block1
      version: {get: /fw/version}
`
	inv, err := boards.Parse(dir+"/bench.yaml", []byte(bench))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, images, want string }{
		{"no version", "baseline: {file: " + raw1 + ", version: 1.0.0}\nimage: {file: " + raw + "}\n",
			"job.yaml:3:"},
		{"same version", "baseline: {file: " + raw1 + ", version: 2.0.0}\nimage: {file: " + raw + ", version: 2.0.0}\n",
			"both report version \"2.0.0\""},
		{"built", "baseline: {build: {version: 1.0.0, seq: 1}}\nimage: {build: {version: 2.0.0, seq: 2}, version: 3.0.0}\n",
			"a built image reports its build.version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := jobs.Parse(dir+"/job.yaml", []byte("name: v\n"+tc.images+"cuts: [none]\n"))
			if err == nil {
				_, err = jobs.Prepare(t.Context(), j, inv, jobs.PrepareOptions{Use: jobs.UseRun, NoDrivers: true})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}
