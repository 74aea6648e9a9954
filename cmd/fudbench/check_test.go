package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// checkSim serves one simulated board for `fudbench check`.
func checkSim(t *testing.T) *servedSim {
	t.Helper()
	return serveSim(t, "boards:\n  - name: chk-safe\n    tags: [sim]\n"+simSection("inplace-recovery", ""), "--time-scale", "0")
}

// rewriteBench writes a copy of the served bench file with re's first
// match replaced by repl, and returns its path.
func rewriteBench(t *testing.T, s *servedSim, re, repl string) string {
	t.Helper()
	b, err := os.ReadFile(s.bench)
	if err != nil {
		t.Fatal(err)
	}
	rx := regexp.MustCompile(re)
	if !rx.Match(b) {
		t.Fatalf("served bench file has no %s:\n%s", re, b)
	}
	done := false
	out := rx.ReplaceAllFunc(b, func(m []byte) []byte {
		if done {
			return m
		}
		done = true
		return rx.ReplaceAll(m, []byte(repl))
	})
	path := filepath.Join(t.TempDir(), "bench.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkLine is the output line of one check of one board.
func checkLine(out, board, check string) string {
	for l := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(l, board+" ") && strings.Contains(l, " "+check+" ") {
			return l
		}
	}
	return ""
}

func TestCheckGoodBoard(t *testing.T) {
	s := checkSim(t)
	out, errOut, code := cli(t, "check", "--bench", s.bench, "--timeout", "2s")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if n := strings.Count(out, "  ok  "); n != 3 {
		t.Errorf("%d ok lines, want 3:\n%s", n, out)
	}
	if l := checkLine(out, "chk-safe", "power off/on"); !strings.Contains(l, `came back: "BL `) {
		t.Errorf("power line lacks the console's first line: %q\n%s", l, out)
	}
	if l := checkLine(out, "chk-safe", "probe"); !strings.Contains(l, "gdbrsp:127.0.0.1:") || !strings.Contains(l, "flash") {
		t.Errorf("probe line: %q", l)
	}
	if l := checkLine(out, "chk-safe", "coap"); !strings.Contains(l, "running ") {
		t.Errorf("coap line: %q", l)
	}
	if !strings.Contains(out, "check: 3 checks passed") {
		t.Errorf("no summary:\n%s", out)
	}
	// --json: the same checks as data.
	out, errOut, code = cli(t, "check", "chk-safe", "--bench", s.bench, "--timeout", "2s", "--json")
	var rs []checkResult
	if err := json.Unmarshal([]byte(out), &rs); err != nil || code != 0 || len(rs) != 3 {
		t.Fatalf("--json: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	for _, r := range rs {
		if r.Board != "chk-safe" || !r.OK || r.Skipped || r.Detail == "" {
			t.Errorf("--json result %+v", r)
		}
	}
	// An unknown board is a usage error naming the bench file.
	_, errOut, code = cli(t, "check", "no-such", "--bench", s.bench)
	if code != 2 || !strings.Contains(errOut, s.bench) || !strings.Contains(errOut, `no board "no-such"`) {
		t.Errorf("unknown board: exit %d: %s", code, errOut)
	}
}

func TestCheckMissingConsole(t *testing.T) {
	s := checkSim(t)
	missing := filepath.Join(t.TempDir(), "no-such.console")
	bench := rewriteBench(t, s, `port: "?[^"\n]+\.console"?`, `port: "`+missing+`"`)
	out, errOut, code := cli(t, "check", "--bench", bench, "--timeout", "1s")
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s\n%s", code, out, errOut)
	}
	l := checkLine(out, "chk-safe", "power off/on")
	if !strings.Contains(l, "FAIL") || !strings.Contains(l, missing) {
		t.Errorf("power line %q does not fail naming the port\n%s", l, out)
	}
	if !strings.Contains(out, "check: 1 of 3 checks failed: chk-safe (power)") {
		t.Errorf("summary:\n%s", out)
	}
}

func TestCheckDeadProbe(t *testing.T) {
	s := checkSim(t)
	bench := rewriteBench(t, s, `(probe: \{driver: gdbrsp, address: )"[^"]+"`, `${1}"127.0.0.1:1"`)
	out, errOut, code := cli(t, "check", "--bench", bench, "--timeout", "1s")
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s\n%s", code, out, errOut)
	}
	l := checkLine(out, "chk-safe", "probe")
	if !strings.Contains(l, "FAIL") || !strings.Contains(l, "gdbrsp:127.0.0.1:1") {
		t.Errorf("probe line %q does not fail naming the probe\n%s", l, out)
	}
	if !strings.Contains(out, "check: 1 of 3 checks failed: chk-safe (probe)") {
		t.Errorf("summary:\n%s", out)
	}
}

func TestCheckUnreachableDevice(t *testing.T) {
	s := checkSim(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unused := pc.LocalAddr().String()
	pc.Close()
	bench := rewriteBench(t, s, `(coap: \{address: )"[^"]+"`, `${1}"`+unused+`"`)
	out, errOut, code := cli(t, "check", "--bench", bench, "--timeout", "1s")
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s\n%s", code, out, errOut)
	}
	l := checkLine(out, "chk-safe", "coap")
	if !strings.Contains(l, "FAIL") || !strings.Contains(l, unused) {
		t.Errorf("coap line %q does not fail naming the address\n%s", l, out)
	}
	if !strings.Contains(out, "check: 1 of 3 checks failed: chk-safe (coap)") || !strings.Contains(errOut, "chk-safe (coap)") {
		t.Errorf("summary:\n%s\n%s", out, errOut)
	}
}

// TestRunCheckStopsOnDeadProbe: `fudbench run --check` runs the checks on
// the job's boards first and stops with exit 3 before the campaign.
func TestRunCheckStopsOnDeadProbe(t *testing.T) {
	s := checkSim(t)
	bench := rewriteBench(t, s, `(probe: \{driver: gdbrsp, address: )"[^"]+"`, `${1}"127.0.0.1:1"`)
	dir := t.TempDir()
	job := runWrite(t, filepath.Join(dir, "job.yaml"), strings.ReplaceAll(runSmallJob("updated"), "sim-safe", "chk-safe"))
	out := filepath.Join(dir, "out")
	stdout, stderr, code := runCLI(t, dir, "run", job, "--bench", bench, "--check", "--check-timeout", "1s",
		"--out", out, "--db", filepath.Join(dir, "r.db"), "--lock-dir", filepath.Join(dir, "locks"))
	if code != 3 {
		t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if l := checkLine(stderr, "chk-safe", "probe"); !strings.Contains(l, "FAIL") || !strings.Contains(l, "gdbrsp:127.0.0.1:1") {
		t.Errorf("no failed probe line:\n%s", stderr)
	}
	if !strings.Contains(stderr, "check: 1 of 3 checks failed: chk-safe (probe); the campaign was not started") {
		t.Errorf("stderr:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "summary.json")); err == nil {
		t.Error("the campaign ran after a failed check")
	}
}

// TestCheckReenumeratingConsole: a board whose console is its own USB
// device goes away at power off and enumerates again after it boots; the
// lines it printed before the host found it again are lost, and the port
// coming back is the check's evidence.
func TestCheckReenumeratingConsole(t *testing.T) {
	s := serveSim(t, "boards:\n  - name: chk-usb\n"+simSection("naive-inplace", "      reenumerate: true\n"), "--time-scale", "0")
	out, errOut, code := cli(t, "check", "--bench", s.bench, "--timeout", "3s")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if l := checkLine(out, "chk-usb", "power off/on"); !strings.Contains(l, " ok ") ||
		!strings.Contains(l, "console went quiet, came back") && !strings.Contains(l, "console went away and came back (re-enumerated") {
		t.Errorf("power line %q", l)
	}
}
