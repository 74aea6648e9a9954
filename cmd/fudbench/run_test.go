package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
)

// The tests of `fudbench run` drive the real binary. The built-in
// simulated boards of a run bind ephemeral loopback ports; the tests are
// not parallel because each run keeps two cores busy.

// runCLI runs the binary in dir with TMPDIR inside dir (the built-in sims'
// state directory lands there) and returns stdout, stderr and the exit
// code.
func runCLI(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+runTmp(t, dir))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

func runTmp(t *testing.T, dir string) string {
	t.Helper()
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	return tmp
}

func runWrite(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runSmallJob is a one-cycle job on the built-in bench: a 4 KiB image in
// 1 KiB blocks, cut after block 1.
func runSmallJob(accept string) string {
	return `name: small
boards: [sim-safe]
baseline:
  build: {version: 1.0.0, seq: 1, size: 4KiB}
image:
  build: {version: 2.0.0, seq: 2, size: 4KiB, seed: 2}
block_size: 1024
cuts:
  - after_block: 1
accept: {sim-safe: [` + accept + `]}
`
}

// runOutputs are the files a run leaves, decoded.
type runOutputs struct {
	summary results.Summary
	junit   results.JUnitSuites
	events  []results.Event
}

func runReadOutputs(t *testing.T, out string) runOutputs {
	t.Helper()
	var o runOutputs
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o.summary); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	b, err = os.ReadFile(filepath.Join(out, "junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, &o.junit); err != nil {
		t.Fatalf("junit.xml is not valid XML: %v", err)
	}
	f, err := os.Open(filepath.Join(out, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if o.events, err = results.ReadJSONL(f); err != nil {
		t.Fatalf("events.jsonl: %v", err)
	}
	return o
}

// runOpenDB opens a results database and checks its integrity.
func runOpenDB(t *testing.T, path string) *results.DB {
	t.Helper()
	db, err := results.OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.IntegrityCheck(); err != nil {
		t.Fatalf("database: %v", err)
	}
	return db
}

func runBoardSummary(t *testing.T, s results.Summary, board string) results.BoardSummary {
	t.Helper()
	for _, b := range s.PerBoard {
		if b.Board == board {
			return b
		}
	}
	t.Fatalf("summary has no board %s: %+v", board, s.PerBoard)
	return results.BoardSummary{}
}

// TestRunDemo runs the built-in demo end to end and checks every output.
func TestRunDemo(t *testing.T) {
	dir := t.TempDir()
	out, dbPath := filepath.Join(dir, "out"), filepath.Join(dir, "db", "results.db")
	start := time.Now()
	stdout, stderr, code := runCLI(t, dir, "run", "--out", out, "--db", dbPath, "--lock-dir", filepath.Join(dir, "locks"))
	t.Logf("demo took %v", time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	// The terminal table: a row per board, then the verdict.
	for _, re := range []string{`(?m)^sim-safe\s+20\s+20\s.*\spass$`, `(?m)^sim-naive\s+20\s.*\spass$`, `(?m)^verdict: pass \(40 cycles, 0 failed`} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("stdout does not match %s:\n%s", re, stdout)
		}
	}

	o := runReadOutputs(t, out)
	s := o.summary
	if s.Verdict != results.VerdictPass || s.Cycles != 40 || s.Planned != 40 || len(s.Failures) != 0 || s.InfraErrors != 0 {
		t.Errorf("summary: verdict %s, %d/%d cycles, failures %v, infra errors %d", s.Verdict, s.Cycles, s.Planned, s.Failures, s.InfraErrors)
	}
	safe := runBoardSummary(t, s, "sim-safe")
	if safe.Cycles != 20 || safe.Outcomes[results.Updated] != 20 {
		t.Errorf("sim-safe: %d cycles, outcomes %v; want 20 updated", safe.Cycles, safe.Outcomes)
	}
	naive := runBoardSummary(t, s, "sim-naive")
	bricked := naive.Outcomes[results.Bricked]
	if naive.Cycles != 20 || naive.Outcomes[results.Updated]+bricked != 20 {
		t.Errorf("sim-naive: %d cycles, outcomes %v; want 20 updated or bricked", naive.Cycles, naive.Outcomes)
	}
	// The demo is a chain: the probe restores at most the chain's first
	// image, once, and reflashes sim-naive's bricks; nothing else. Both
	// boards count their flash erases.
	if f := safe.Flash; f.ProbeUses > 1 || f.ErasesCycles != 20 || f.ErasesPerCycle <= 0 {
		t.Errorf("sim-safe: probe and flash %+v; want at most 1 probe use and erases counted", f)
	}
	if f := naive.Flash; f.ProbeUses > 1+bricked || f.ErasesCycles != 20 {
		t.Errorf("sim-naive: probe and flash %+v with %d bricked; want at most %d probe uses", f, bricked, 1+bricked)
	}
	if !strings.Contains(stdout, "  probe sim-safe: ") || !strings.Contains(stdout, "sector erases") {
		t.Errorf("no probe and flash line in the table:\n%s", stdout)
	}
	if len(s.Cuts) != 40 {
		t.Errorf("summary lists %d cut points, want 40", len(s.Cuts))
	}
	// Every planned cut happened at its planned point, by the bench's view
	// and by the board's own record.
	if s.MissedCuts != 0 {
		t.Errorf("%d missed cuts", s.MissedCuts)
	}
	for _, c := range s.Cuts {
		if !c.Fired || !c.Landed || c.Device == nil {
			t.Errorf("%s cycle %d (%s): fired %v landed %v device record %+v", c.Board, c.Cycle, c.Plan, c.Fired, c.Landed, c.Device)
		}
	}

	// junit.xml: one case per cycle, none failed; every bricked cycle is
	// marked reflashed in its output.
	j := o.junit
	if j.Tests != 40 || j.Failures != 0 || j.Errors != 0 || len(j.Suites) != 2 {
		t.Errorf("junit: tests %d failures %d errors %d suites %d", j.Tests, j.Failures, j.Errors, len(j.Suites))
	}
	reflashedCases := 0
	for _, su := range j.Suites {
		if su.Tests != 20 || len(su.Cases) != 20 {
			t.Errorf("junit suite %s: %d tests, %d cases", su.Name, su.Tests, len(su.Cases))
		}
		for _, c := range su.Cases {
			if c.Failure != nil || c.Error != nil {
				t.Errorf("junit %s %s: failed: %+v %+v", su.Name, c.Name, c.Failure, c.Error)
			}
			if c.SystemOut != nil && strings.Contains(c.SystemOut.Text, "outcome: bricked (reflashed)") {
				reflashedCases++
			}
		}
	}
	if reflashedCases != bricked {
		t.Errorf("junit marks %d cases bricked (reflashed), the summary counts %d bricked", reflashedCases, bricked)
	}

	// events.jsonl: the timeline of both boards.
	kinds := map[string]int{}
	for _, e := range o.events {
		kinds[e.Board+" "+string(e.Kind)]++
	}
	for _, b := range []string{"sim-safe", "sim-naive"} {
		if kinds[b+" cut.trigger"] == 0 {
			t.Errorf("events.jsonl: no cut.trigger for %s", b)
		}
		if n := kinds[b+" cycle.outcome"]; n != 20 {
			t.Errorf("events.jsonl: %d cycle.outcome events for %s, want 20", n, b)
		}
	}

	// The database: the run, finished, with its 40 cycles.
	db := runOpenDB(t, dbPath)
	runs, err := db.Runs()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != s.RunID || runs[0].Finished.IsZero() {
		t.Fatalf("runs %+v, want run %s finished", runs, s.RunID)
	}
	cs, err := db.Cycles(s.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 40 {
		t.Errorf("database holds %d cycles, want 40", len(cs))
	}
	for _, c := range cs {
		if c.Outcome == results.Bricked && !c.Reflashed {
			t.Errorf("%s cycle %d bricked and not reflashed", c.Board, c.Cycle)
		}
		if c.Board == "sim-safe" && strings.HasPrefix(c.Plan, "after_block") && c.BlocksResent != 0 {
			t.Errorf("sim-safe cycle %d (%s): %d blocks re-sent, want 0 after a cut between blocks", c.Cycle, c.Plan, c.BlocksResent)
		}
	}
}

// TestRunBrokenJob: a bad key is reported at its line and column, exit
// 2, and nothing is written.
func TestRunBrokenJob(t *testing.T) {
	dir := t.TempDir()
	job := runWrite(t, filepath.Join(dir, "broken.yaml"), `name: broken
boards: [sim-safe]
baseline:
  build: {version: 1.0.0, seq: 1, size: 4KiB}
image:
  build: {version: 2.0.0, seq: 2, size: 4KiB, seed: 2}
block_size: 1024
colour: blue
cuts:
  - after_block: 1
`)
	out, dbPath := filepath.Join(dir, "out"), filepath.Join(dir, "db", "results.db")
	_, stderr, code := runCLI(t, dir, "run", job, "--out", out, "--db", dbPath, "--lock-dir", filepath.Join(dir, "locks"))
	if code != 2 || !strings.Contains(stderr, job+":8:1:") || !strings.Contains(stderr, `"colour"`) {
		t.Errorf("exit %d, want 2 with %s:8:1: in stderr:\n%s", code, job, stderr)
	}
	for _, p := range []string{out, dbPath, filepath.Dir(dbPath), filepath.Join(dir, "fudbench-out")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a broken job (%v)", p, err)
		}
	}
}

// TestRunWrongExpectation: an outcome the job does not accept exits 1.
func TestRunWrongExpectation(t *testing.T) {
	dir := t.TempDir()
	job := runWrite(t, filepath.Join(dir, "wrong.yaml"), runSmallJob("rolled-back"))
	out := filepath.Join(dir, "out")
	stdout, stderr, code := runCLI(t, dir, "run", job, "--out", out, "--db", filepath.Join(dir, "r.db"), "--lock-dir", filepath.Join(dir, "locks"))
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	o := runReadOutputs(t, out)
	if o.summary.Verdict != results.VerdictFail || len(o.summary.Failures) != 1 || o.summary.Failures[0].Outcome != results.Updated {
		t.Errorf("summary: verdict %s, failures %+v", o.summary.Verdict, o.summary.Failures)
	}
	if o.junit.Tests != 1 || o.junit.Failures != 1 || o.junit.Errors != 0 {
		t.Errorf("junit: tests %d failures %d errors %d", o.junit.Tests, o.junit.Failures, o.junit.Errors)
	}
	if !strings.Contains(stdout, "FAIL sim-safe cycle 1 (after_block 1): updated") {
		t.Errorf("the table does not name the failure:\n%s", stdout)
	}
}

// runFreePorts returns n distinct loopback ports that were free a moment
// ago, on UDP or TCP.
func runFreePorts(t *testing.T, network string, n int) []int {
	t.Helper()
	var ports []int
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for range n {
		switch network {
		case "udp":
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			closers = append(closers, c)
			ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
		default:
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			closers = append(closers, l)
			ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		}
	}
	return ports
}

// TestRunPowerDriverFails: boards served by a `fudbench sim` process, one
// of them behind a power driver that fails. Its cycles are infra errors,
// exit 3, and the other board's results are kept.
func TestRunPowerDriverFails(t *testing.T) {
	dir := t.TempDir()
	coap := runFreePorts(t, "udp", 2)
	tcp := runFreePorts(t, "tcp", 3) // two GDB ports and the control endpoint
	control := fmt.Sprintf("127.0.0.1:%d", tcp[2])
	simBench := runWrite(t, filepath.Join(dir, "sim.yaml"), fmt.Sprintf(`boards:
  - name: good
    sim: {strategy: inplace-recovery, coap: ["127.0.0.1:%d"], coaps: "-", gdb: "127.0.0.1:%d"}
  - name: bad
    sim: {strategy: inplace-recovery, coap: ["127.0.0.1:%d"], coaps: "-", gdb: "127.0.0.1:%d"}
`, coap[0], tcp[0], coap[1], tcp[1]))
	// The default sim layout: a 16 KiB bootloader, four 4 KiB sectors of
	// records, journal and counter, the app slot from 0x8000.
	runBench := runWrite(t, filepath.Join(dir, "bench.yaml"), fmt.Sprintf(`boards:
  - name: good
    power: {driver: sim, url: "http://%[1]s", board: good}
    probe: {driver: gdbrsp, address: "127.0.0.1:%[2]d"}
    coap: {address: "127.0.0.1:%[3]d"}
    flash: {size: 512KiB, base: 0x0, app_address: 0x8000, erase_from: 0x4000}
  - name: bad
    power: {driver: exec, on: ["/bin/false"], off: ["/bin/true"]}
    probe: {driver: gdbrsp, address: "127.0.0.1:%[4]d"}
    coap: {address: "127.0.0.1:%[5]d"}
    flash: {size: 512KiB, base: 0x0, app_address: 0x8000, erase_from: 0x4000}
`, control, tcp[0], coap[0], tcp[1], coap[1]))
	job := runWrite(t, filepath.Join(dir, "job.yaml"), `name: infra
boards: [good, bad]
baseline:
  build: {version: 1.0.0, seq: 1, size: 4KiB}
image:
  build: {version: 2.0.0, seq: 2, size: 4KiB, seed: 2}
block_size: 1024
cuts:
  - after_block: {from: 1, to: 2}
recovery_timeout: 5s
`)

	simCmd := exec.Command(binary, "sim", "--bench", simBench, "--control", control,
		"--state-dir", filepath.Join(dir, "state"), "--time-scale", "0")
	simCmd.Dir = dir
	simOut, err := simCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var simErr bytes.Buffer
	simCmd.Stderr = &simErr
	if err := simCmd.Start(); err != nil {
		t.Fatal(err)
	}
	simDone := make(chan error, 1)
	defer func() {
		simCmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-simDone:
			if err != nil {
				t.Errorf("sim exit after Ctrl-C: %v\n%s", err, simErr.String())
			}
		case <-time.After(10 * time.Second):
			simCmd.Process.Kill()
			t.Error("sim did not stop within 10 s of Ctrl-C")
		}
	}()
	// Ready once both boards are listed.
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(simOut)
		ok := false
		for sc.Scan() {
			if !ok && strings.HasPrefix(sc.Text(), "  power") && strings.Contains(sc.Text(), "/boards/bad/") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
		simDone <- simCmd.Wait()
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("sim exited before serving:\n%s", simErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("sim not ready within 30 s:\n%s", simErr.String())
	}

	out, dbPath := filepath.Join(dir, "out"), filepath.Join(dir, "r.db")
	stdout, stderr, code := runCLI(t, dir, "run", job, "--bench", runBench, "--out", out, "--db", dbPath, "--lock-dir", filepath.Join(dir, "locks"))
	if code != 3 {
		t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	o := runReadOutputs(t, out)
	s := o.summary
	if s.Verdict != results.VerdictInfraError || s.Cycles != 4 || s.InfraErrors != 2 {
		t.Errorf("summary: verdict %s, %d cycles, %d infra errors", s.Verdict, s.Cycles, s.InfraErrors)
	}
	if bad := runBoardSummary(t, s, "bad"); bad.Cycles != 2 || bad.Outcomes[results.InfraError] != 2 || bad.Verdict != results.VerdictInfraError {
		t.Errorf("bad: %d cycles, outcomes %v, verdict %s", bad.Cycles, bad.Outcomes, bad.Verdict)
	}
	if good := runBoardSummary(t, s, "good"); good.Cycles != 2 || good.Outcomes[results.Updated] != 2 || good.Verdict != results.VerdictPass {
		t.Errorf("good: %d cycles, outcomes %v, verdict %s", good.Cycles, good.Outcomes, good.Verdict)
	}
	for _, f := range s.Failures {
		if f.Board != "bad" || f.Outcome != results.InfraError || !strings.Contains(f.Reason, "power on") {
			t.Errorf("failure %+v: want only bad's power-on infra errors", f)
		}
	}
	if o.junit.Tests != 4 || o.junit.Errors != 2 || o.junit.Failures != 0 {
		t.Errorf("junit: tests %d failures %d errors %d", o.junit.Tests, o.junit.Failures, o.junit.Errors)
	}
	cs, err := runOpenDB(t, dbPath).Cycles(s.RunID)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, c := range cs {
		count[c.Board+" "+string(c.Outcome)]++
	}
	if len(cs) != 4 || count["good updated"] != 2 || count["bad infra-error"] != 2 {
		t.Errorf("database cycles: %v", count)
	}
}

// runProgressLine is a plain progress line (stdout is not a terminal).
var runProgressLine = regexp.MustCompile(`^\[(\d+)/(\d+)\] (\S+) cycle (\d+) \(.*\): ([a-z-]+)`)

// TestRunKillAndResume kills the demo mid-run with SIGKILL, checks what
// the database kept, and resumes the run to its end.
func TestRunKillAndResume(t *testing.T) {
	dir := t.TempDir()
	out, dbPath, locks := filepath.Join(dir, "out"), filepath.Join(dir, "r.db"), filepath.Join(dir, "locks")
	args := []string{"run", "--out", out, "--db", dbPath, "--lock-dir", locks}

	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+runTmp(t, dir))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	guard := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer guard.Stop()
	type key struct {
		board string
		cycle int
	}
	var printed []key
	sc := bufio.NewScanner(stdout)
	for len(printed) < 6 && sc.Scan() {
		if m := runProgressLine.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.Atoi(m[4])
			printed = append(printed, key{m[3], n})
		}
	}
	cmd.Process.Kill()
	go io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	if len(printed) < 6 {
		t.Fatalf("%d progress lines before the run ended (%v):\n%s", len(printed), werr, stderr.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the run ended before the kill: %v\n%s", werr, stderr.String())
	}

	// What the database kept. A progress line is printed just before its
	// cycle is committed (under the same lock), so each line printed
	// before the last one read is committed for sure.
	db := runOpenDB(t, dbPath)
	runs, err := db.Runs()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || !runs[0].Finished.IsZero() {
		t.Fatalf("runs after the kill: %+v, want one unfinished", runs)
	}
	id := runs[0].ID
	cs, err := db.Cycles(id)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[key]bool{}
	for _, c := range cs {
		recorded[key{c.Board, c.Cycle}] = true
	}
	for _, k := range printed[:len(printed)-1] {
		if !recorded[k] {
			t.Errorf("%s cycle %d was reported finished before the kill but is not in the database", k.board, k.cycle)
		}
	}
	kept := len(cs)
	db.Close()
	t.Logf("killed after %d progress lines; the database kept %d cycles", len(printed), kept)

	// Resume: the same run, only the cycles not yet recorded.
	start := time.Now()
	rout, rerr, code := runCLI(t, dir, append(args, "--resume")...)
	t.Logf("resume took %v", time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("resume: exit %d\nstdout:\n%s\nstderr:\n%s", code, rout, rerr)
	}
	ran := 0
	for _, l := range strings.Split(rout, "\n") {
		if m := runProgressLine.FindStringSubmatch(l); m != nil {
			ran++
			n, _ := strconv.Atoi(m[4])
			if recorded[key{m[3], n}] {
				t.Errorf("resume ran %s cycle %d again", m[3], n)
			}
		}
	}
	if ran != 40-kept {
		t.Errorf("resume ran %d cycles, want %d", ran, 40-kept)
	}
	db = runOpenDB(t, dbPath)
	runs, err = db.Runs()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != id || runs[0].Finished.IsZero() {
		t.Fatalf("runs after resume: %+v, want run %s finished", runs, id)
	}
	cs, err = db.Cycles(id)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[key]bool{}
	for _, c := range cs {
		k := key{c.Board, c.Cycle}
		if seen[k] {
			t.Errorf("%s cycle %d recorded twice", c.Board, c.Cycle)
		}
		seen[k] = true
	}
	if len(cs) != 40 {
		t.Errorf("database holds %d cycles after resume, want 40", len(cs))
	}
	o := runReadOutputs(t, out)
	if o.summary.RunID != id || o.summary.Cycles != 40 || o.summary.Verdict != results.VerdictPass {
		t.Errorf("summary after resume: run %s, %d cycles, verdict %s", o.summary.RunID, o.summary.Cycles, o.summary.Verdict)
	}
}

// TestRunJSON: --json prints the summary on stdout, and nothing else.
func TestRunJSON(t *testing.T) {
	dir := t.TempDir()
	job := runWrite(t, filepath.Join(dir, "small.yaml"), runSmallJob("updated"))
	stdout, stderr, code := runCLI(t, dir, "run", job, "--json", "--out", filepath.Join(dir, "out"), "--db", filepath.Join(dir, "r.db"), "--lock-dir", filepath.Join(dir, "locks"))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var s results.Summary
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("stdout is not a summary: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Errorf("stdout holds more than the summary:\n%s", stdout)
	}
	if s.Job != "small" || s.Cycles != 1 || s.Verdict != results.VerdictPass || s.Outcomes[results.Updated] != 1 {
		t.Errorf("summary: job %q, %d cycles, verdict %s, outcomes %v", s.Job, s.Cycles, s.Verdict, s.Outcomes)
	}
	for _, human := range []string{"BOARD", "verdict:", "[1/1]", "results:"} {
		if strings.Contains(stdout, human) {
			t.Errorf("stdout holds %q of the human output:\n%s", human, stdout)
		}
	}
	if !strings.Contains(stderr, "verdict: pass") {
		t.Errorf("the table is not on stderr:\n%s", stderr)
	}
}
