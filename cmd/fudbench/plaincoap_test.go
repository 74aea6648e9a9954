package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	peerbuild "github.com/fudbench/fudbench/internal/peers"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/results/report"
)

// plainDevice points examples/plain-coap at libcoap's coap-server on a
// free port, with its state in a directory of the test's own, and kills
// the server when the test ends.
func plainDevice(t *testing.T) (device string) {
	t.Helper()
	lc := peerbuild.NeedLibcoap(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	device = filepath.Join(t.TempDir(), "device")
	t.Setenv("COAP_SERVER", lc.Server)
	t.Setenv("PORT", fmt.Sprint(port))
	t.Setenv("DEVICE_DIR", device)
	script, err := filepath.Abs("../../examples/plain-coap/server-power.sh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command(script, "off").Run() })
	return device
}

// The done-when of a plain CoAP device: a campaign against libcoap's
// coap-server as the device, powered through the exec driver, where a cut
// kills the server process (SIGKILL) and power-on starts a new one that
// holds nothing. Every cut is real (the server's pid changes), the
// transfer starts again from block 0 after each, and a cycle passes only
// when GET /fw names the new version.
func TestPlainCoAPCampaign(t *testing.T) {
	device := plainDevice(t)
	dir := t.TempDir()
	job, err := filepath.Abs("../../examples/plain-coap/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	stdout, stderr, code := runCLI(t, dir, "run", job, "--out", out, "--db", filepath.Join(dir, "results.db"), "--lock-dir", filepath.Join(dir, "locks"))
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	in, err := report.Load(out, "")
	if err != nil {
		t.Fatal(err)
	}
	cuts := 0
	for _, c := range in.Cycles {
		if c.Outcome != results.Updated {
			t.Errorf("cycle %d (%s): %s: %s", c.Cycle, c.Plan, c.Outcome, c.Reason)
		}
		if c.Cut != nil {
			cuts++
			if len(c.Resumes) != 0 {
				t.Errorf("cycle %d (%s): resumed at %v: a plain device has no resume", c.Cycle, c.Plan, c.Resumes)
			}
			if c.BlocksSent <= c.Blocks {
				t.Errorf("cycle %d (%s): %d blocks sent for %d: after the cut the transfer starts again from block 0", c.Cycle, c.Plan, c.BlocksSent, c.Blocks)
			}
		}
	}
	if cuts < 10 {
		t.Fatalf("%d cycles with a cut in %d, want at least 10", cuts, len(in.Cycles))
	}
	// Every cut killed a running server, and the end of the run killed
	// the last one (the safe state): pids never repeat.
	log, err := os.ReadFile(filepath.Join(device, "power.log"))
	if err != nil {
		t.Fatal(err)
	}
	killed := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if pid, ok := strings.CutPrefix(l, "cut "); ok {
			if killed[pid] {
				t.Errorf("server %s killed twice", pid)
			}
			killed[pid] = true
		}
	}
	if len(killed) != cuts+1 {
		t.Errorf("%d servers killed, want %d: one per cut and the safe state at the end\n%s", len(killed), cuts+1, log)
	}
	if !strings.Contains(stdout, "verdict: pass") {
		t.Errorf("stdout:\n%s", stdout)
	}
	t.Logf("%d cycles, %d cuts, %d server processes killed", len(in.Cycles), cuts, len(killed))
}

// The version check decides the outcome: told the update reports a
// version it does not, the bench fails the cycle rather than pass it on
// the transfer's word; with version: none it passes on that word alone.
func TestPlainCoAPVersionCheck(t *testing.T) {
	plainDevice(t)
	dir := t.TempDir()
	ex, err := filepath.Abs("../../examples/plain-coap")
	if err != nil {
		t.Fatal(err)
	}
	bench, err := os.ReadFile(filepath.Join(ex, "bench.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"server-power.sh", "v1.bin", "v2.bin"} {
		if err := os.Symlink(filepath.Join(ex, f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	const check = `version: {get: /fw, match: '^version (\S+)'}`
	if !strings.Contains(string(bench), check) {
		t.Fatalf("examples/plain-coap/bench.yaml has no %q", check)
	}
	job := `name: plain-version
bench: bench.yaml
baseline: {file: v1.bin, version: 1.0.0}
image: {file: v2.bin, version: %s}
block_size: 256
cuts: [none, {after_block: {from: 40, to: 40}}]
off_time: 20ms
recovery_timeout: 1s
`
	for _, tc := range []struct {
		name, check, version string
		code                 int
		want                 []results.Outcome
		reason               string
	}{
		{"wrong version", check, "3.0.0", 1, []results.Outcome{results.RolledBack, results.RolledBack}, "another image runs (2.0.0)"},
		{"none", "version: none", "2.0.0", 0, []results.Outcome{results.Updated, results.Updated}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runWrite(t, filepath.Join(dir, "bench.yaml"), strings.Replace(string(bench), check, tc.check, 1))
			runWrite(t, filepath.Join(dir, "job.yaml"), fmt.Sprintf(job, tc.version))
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(tc.name, " ", "-"))
			stdout, stderr, code := runCLI(t, dir, "run", "job.yaml", "--out", out, "--db", filepath.Join(dir, "results.db"), "--lock-dir", filepath.Join(dir, "locks"))
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			in, err := report.Load(out, "")
			if err != nil {
				t.Fatal(err)
			}
			var got []results.Outcome
			for _, c := range in.Cycles {
				got = append(got, c.Outcome)
				if tc.reason != "" && !strings.Contains(c.Reason, tc.reason) {
					t.Errorf("cycle %d: reason %q, want %q", c.Cycle, c.Reason, tc.reason)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("outcomes %v, want %v", got, tc.want)
			}
		})
	}
}

// fudbench update to a plain CoAP device: the image's version comes from
// --image-version (a file that does not say it is refused before anything
// is sent), and a cut kills the server, whose successor gets the whole
// image again.
func TestPlainCoAPUpdate(t *testing.T) {
	plainDevice(t)
	dir := t.TempDir()
	ex, err := filepath.Abs("../../examples/plain-coap")
	if err != nil {
		t.Fatal(err)
	}
	bench, img := filepath.Join(ex, "bench.yaml"), filepath.Join(ex, "v2.bin")
	if _, stderr, code := runCLI(t, dir, "power", "on", "coap-server", "--bench", bench); code != 0 {
		t.Fatalf("power on: exit %d: %s", code, stderr)
	}
	_, stderr, code := runCLI(t, dir, "update", "coap-server", "--bench", bench, img)
	if code != 2 || !strings.Contains(stderr, "--image-version: board coap-server reads which image runs by GET /fw") {
		t.Fatalf("without --image-version: exit %d, want 2\n%s", code, stderr)
	}
	stdout, stderr, code := runCLI(t, dir, "update", "coap-server", "--bench", bench, "--image-version", "2.0.0",
		"--block-size", "256", "--cut-after-block", "50", "--off-time", "20ms", "--recovery-timeout", "5s", img)
	if code != 0 || !strings.Contains(stdout, "cut: after_block 50") || !strings.Contains(stdout, "running 2.0.0\n") {
		t.Fatalf("exit %d, want 0 with the cut and the new version\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "128 blocks of 256 bytes, 179 sent") {
		t.Errorf("after a cut after block 50 the 128 blocks are sent again from block 0 (179 in all):\n%s", stdout)
	}
}
