package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
)

// Runs stopped from outside: by a signal, by a full disk, by another run
// holding the board. Every test here serves its boards from a `fudbench
// sim` process on ephemeral loopback ports and reaches their power
// through its control endpoint (the sim power driver), so the boards'
// power can be read back from outside the run.

// sigSim is a `fudbench sim` process and the bench file that wires its
// boards for `fudbench run`.
type sigSim struct {
	control string // host:port of the control endpoint
	bench   string // bench file for fudbench run
}

// sigStartSim serves inplace-recovery boards with the given names, their
// flash and boot times scaled by scale, and returns the bench file that
// wires them.
func sigStartSim(t *testing.T, dir string, scale string, names ...string) *sigSim {
	t.Helper()
	var b strings.Builder
	b.WriteString("boards:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n    sim: {strategy: inplace-recovery, coap: [\"127.0.0.1:0\"], coaps: \"-\", gdb: \"127.0.0.1:0\"}\n", n)
	}
	simBench := runWrite(t, filepath.Join(dir, "sim.yaml"), b.String())
	cmd := exec.Command(binary, "sim", "--bench", simBench, "--control", "127.0.0.1:0",
		"--state-dir", filepath.Join(dir, "state"), "--time-scale", scale)
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sim exit after Ctrl-C: %v\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("sim did not stop within 10 s of Ctrl-C")
		}
	})
	type addrs struct{ coap, gdb string }
	got := map[string]*addrs{}
	var control string
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var cur *addrs
		sent := false
		for sc.Scan() {
			l := sc.Text()
			switch f := strings.Fields(l); {
			case strings.HasPrefix(l, "control endpoint: http://"):
				control = strings.TrimSuffix(strings.TrimPrefix(l, "control endpoint: http://"), "/boards")
			case !strings.HasPrefix(l, " ") && len(f) > 0:
				cur = &addrs{}
				got[f[0]] = cur
			case cur != nil && len(f) == 2 && f[0] == "coap":
				cur.coap = strings.TrimPrefix(f[1], "coap://")
			case cur != nil && len(f) == 2 && f[0] == "gdb":
				cur.gdb = f[1]
			case cur != nil && len(f) > 0 && f[0] == "power" && len(got) == len(names) && !sent:
				sent = true
				ready <- true
			}
		}
		if !sent {
			ready <- false
		}
		done <- cmd.Wait()
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("sim exited before serving:\n%s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("sim not ready within 30 s:\n%s", stderr.String())
	}
	b.Reset()
	b.WriteString("boards:\n")
	for _, n := range names {
		a := got[n]
		if a == nil || a.coap == "" || a.gdb == "" {
			t.Fatalf("sim did not print the addresses of %s: %+v", n, a)
		}
		// The default sim layout: a 16 KiB bootloader, four 4 KiB sectors
		// of records, journal and counter, the app slot from 0x8000.
		fmt.Fprintf(&b, `  - name: %s
    power: {driver: sim, url: "http://%s", board: %s}
    probe: {driver: gdbrsp, address: "%s"}
    coap: {address: "%s"}
    flash: {size: 512KiB, base: 0x0, app_address: 0x8000, erase_from: 0x4000}
`, n, control, n, a.gdb, a.coap)
	}
	return &sigSim{control: control, bench: runWrite(t, filepath.Join(dir, "bench.yaml"), b.String())}
}

// power reads a board's power input through the control endpoint.
func (s *sigSim) power(t *testing.T, board string) string {
	t.Helper()
	resp, err := http.Get("http://" + s.control + "/boards/" + board + "/power")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// sigReadEvents reads events.jsonl as far as it is written.
func sigReadEvents(path string) []results.Event {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	evs, _ := results.ReadJSONL(f)
	return evs
}

// sigLongJob cycles two boards for long: 768 blocks of 64 bytes per
// transfer, a cut after block 700, fifty times.
const sigLongJob = `name: long
boards: [%s]
baseline:
  build: {version: 1.0.0, seq: 1, size: 16KiB}
image:
  build: {version: 2.0.0, seq: 2, size: 48KiB, seed: 2}
block_size: 64
cuts:
  # Late in a long transfer: a test that signals once it sees blocks
  # 10..150 acknowledged finds the board still powered, far from its cut.
  - after_block: 700
repeat: 50
off_time: 5ms
recovery_timeout: 5s
`

// TestRunSignalSafeState interrupts a run mid-transfer with SIGINT and
// with SIGTERM. Each time: the boards, powered at the signal, are
// switched off by the safe state within one second of it (measured from
// the safe-state events' wall times and read back from the sim's control
// endpoint), the exit code is 130, the database is intact and the run
// left unfinished for --resume, and every cycle whose outcome is in
// events.jsonl is in the database and the other way round.
func TestRunSignalSafeState(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			s := sigStartSim(t, dir, "0", "alpha", "beta")
			job := runWrite(t, filepath.Join(dir, "job.yaml"), fmt.Sprintf(sigLongJob, "alpha, beta"))
			out, dbPath := filepath.Join(dir, "out"), filepath.Join(dir, "r.db")
			cmd := exec.Command(binary, "run", job, "--bench", s.bench, "--out", out, "--db", dbPath, "--lock-dir", filepath.Join(dir, "locks"))
			cmd.Dir = dir
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			guard := time.AfterFunc(120*time.Second, func() { cmd.Process.Kill() })
			defer guard.Stop()
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()

			// Wait until both boards are mid-transfer in cycle 2 or later.
			evPath := filepath.Join(out, "events.jsonl")
			for {
				select {
				case err := <-exited:
					t.Fatalf("run ended before the signal: %v\n%s\n%s", err, stdout.String(), stderr.String())
				case <-time.After(2 * time.Millisecond):
				}
				// Both boards have been mid-transfer in cycle 2 or later
				// (events.jsonl is written in batches: it tells where a
				// board has been, not where it is)...
				mid := map[string]bool{}
				for _, e := range sigReadEvents(evPath) {
					if e.Kind == results.BlockAcked && e.Cycle >= 2 && e.Block >= 10 && e.Block < 150 {
						mid[e.Board] = true
					}
				}
				// ...and both are powered now, by their power inputs: not
				// in a cut's off-time.
				if mid["alpha"] && mid["beta"] && s.power(t, "alpha") == "on" && s.power(t, "beta") == "on" {
					break
				}
			}
			sent := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			// Read back the power inputs until both are off.
			var offAfter time.Duration
			for {
				if s.power(t, "alpha") == "off" && s.power(t, "beta") == "off" {
					offAfter = time.Since(sent)
					break
				}
				if time.Since(sent) > 30*time.Second {
					t.Fatal("boards still powered 30 s after the signal")
				}
				time.Sleep(2 * time.Millisecond)
			}
			var werr error
			select {
			case werr = <-exited:
			case <-time.After(60 * time.Second):
				t.Fatal("run did not exit within 60 s of the signal")
			}
			code := 0
			var ee *exec.ExitError
			if errors.As(werr, &ee) {
				code = ee.ExitCode()
			}
			if code != ExitInterrupted {
				t.Errorf("exit %d, want %d\n%s", code, ExitInterrupted, stderr.String())
			}

			evs := sigReadEvents(evPath)
			poweredAtSignal := map[string]bool{}
			safeAt := map[string]time.Time{}
			for _, e := range evs {
				switch {
				case e.Wall.Before(sent) && e.Kind == results.PowerOn:
					poweredAtSignal[e.Board] = true
				case e.Wall.Before(sent) && e.Kind == results.PowerOff:
					poweredAtSignal[e.Board] = false
				case !e.Wall.Before(sent) && e.Kind == results.PowerOff && e.Text == "safe state":
					if _, ok := safeAt[e.Board]; !ok {
						safeAt[e.Board] = e.Wall
					}
				}
			}
			for _, b := range []string{"alpha", "beta"} {
				if !poweredAtSignal[b] {
					t.Errorf("%s was not powered when the signal came", b)
				}
				at, ok := safeAt[b]
				if !ok {
					t.Errorf("%s: no safe-state power-off after the signal", b)
					continue
				}
				d := at.Sub(sent)
				t.Logf("%s: safe state %v after the signal", b, d.Round(time.Microsecond))
				if d > time.Second {
					t.Errorf("%s: safe state %v after the signal, want within 1 s", b, d)
				}
				if p := s.power(t, b); p != "off" {
					t.Errorf("%s: power reads %q after the run, want off", b, p)
				}
			}
			t.Logf("both power inputs read off %v after the signal (control endpoint polled)", offAfter.Round(time.Microsecond))
			if offAfter > time.Second {
				t.Errorf("power inputs read off %v after the signal, want within 1 s", offAfter)
			}

			db := runOpenDB(t, dbPath) // runs PRAGMA integrity_check
			runs, err := db.Runs()
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) != 1 || !runs[0].Finished.IsZero() {
				t.Fatalf("runs: %+v, want one left unfinished", runs)
			}
			cs, err := db.Cycles(runs[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			inDB := map[string]bool{}
			for _, c := range cs {
				inDB[fmt.Sprintf("%s/%d", c.Board, c.Cycle)] = true
			}
			inEvents := map[string]bool{}
			for _, e := range evs {
				if e.Kind == results.CycleOutcome {
					k := fmt.Sprintf("%s/%d", e.Board, e.Cycle)
					inEvents[k] = true
					if !inDB[k] {
						t.Errorf("cycle %s finished in events.jsonl but is not in the database", k)
					}
				}
			}
			for k := range inDB {
				if !inEvents[k] {
					t.Errorf("cycle %s is in the database but has no outcome in events.jsonl", k)
				}
			}
			if len(cs) < 2 {
				t.Errorf("%d cycles recorded before the signal, want the first cycle of each board", len(cs))
			}
		})
	}
}

// sigLease is a lease file as jobs.FileLocker writes it.
type sigLease struct {
	Holder struct {
		Run  string `json:"run"`
		Job  string `json:"job"`
		Host string `json:"host"`
		PID  int    `json:"pid"`
	} `json:"holder"`
	Expires time.Time `json:"expires"`
}

func sigWriteLease(t *testing.T, path, run, host string, pid int, expires time.Time) {
	t.Helper()
	var l sigLease
	l.Holder.Run, l.Holder.Job, l.Holder.Host, l.Holder.PID, l.Expires = run, "other", host, pid, expires
	b, _ := json.Marshal(l)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sigFirstEvent is the wall time of a run's first event.
func sigFirstEvent(t *testing.T, out string) time.Time {
	t.Helper()
	evs := sigReadEvents(filepath.Join(out, "events.jsonl"))
	if len(evs) == 0 {
		t.Fatalf("no events in %s", out)
	}
	return evs[0].Wall
}

// TestRunBoardLocked: two runs that want the same board. The second
// fails at once, exit 3, naming the holder (run id, job, pid and host)
// and leaving no trace; with --lock-wait it waits and runs once the
// first run is gone. A lease left by a dead run on this host is taken
// over at once; one of another host is waited out until it expires.
func TestRunBoardLocked(t *testing.T) {
	dir := t.TempDir()
	s := sigStartSim(t, dir, "0", "gamma")
	locks := filepath.Join(dir, "locks")
	long := runWrite(t, filepath.Join(dir, "long.yaml"), fmt.Sprintf(sigLongJob, "gamma"))
	short := runWrite(t, filepath.Join(dir, "short.yaml"), `name: short
boards: [gamma]
baseline:
  build: {version: 1.0.0, seq: 1, size: 4KiB}
image:
  build: {version: 2.0.0, seq: 2, size: 4KiB, seed: 2}
block_size: 1024
cuts:
  - after_block: 1
`)
	run := func(name string, extra ...string) []string {
		return append([]string{"run", short, "--bench", s.bench, "--out", filepath.Join(dir, name), "--db", filepath.Join(dir, name+".db"), "--lock-dir", locks}, extra...)
	}

	// The first run holds the board.
	first := exec.Command(binary, "run", long, "--bench", s.bench, "--out", filepath.Join(dir, "first"), "--db", filepath.Join(dir, "first.db"), "--lock-dir", locks)
	first.Dir = dir
	var firstErr bytes.Buffer
	first.Stderr = &firstErr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	guard := time.AfterFunc(120*time.Second, func() { first.Process.Kill() })
	defer guard.Stop()
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Wait() }()
	leasePath := filepath.Join(locks, "gamma.lease")
	var lease sigLease
	for {
		b, err := os.ReadFile(leasePath)
		if err == nil && json.Unmarshal(b, &lease) == nil {
			break
		}
		select {
		case err := <-firstDone:
			t.Fatalf("first run ended before taking the board: %v\n%s", err, firstErr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	host, _ := os.Hostname()
	if lease.Holder.PID != first.Process.Pid || lease.Holder.Host != host || lease.Holder.Run == "" {
		t.Fatalf("lease %+v, want pid %d on %s", lease.Holder, first.Process.Pid, host)
	}

	// A second run fails at once, naming the holder.
	stdout, stderr, code := runCLI(t, dir, run("second")...)
	holder := fmt.Sprintf("run %s (job long, pid %d on %s)", lease.Holder.Run, first.Process.Pid, host)
	if code != ExitInfra || !strings.Contains(stderr, holder) || !strings.Contains(stderr, "gamma") {
		t.Errorf("second run: exit %d, want %d and %q in\n%s%s", code, ExitInfra, holder, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "second", "events.jsonl")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused run left events.jsonl: %v", err)
	}

	// With --lock-wait it waits for the first run to end.
	waiter := exec.Command(binary, run("waiter", "--lock-wait")...)
	waiter.Dir = dir
	var waitOut bytes.Buffer
	waiter.Stdout, waiter.Stderr = &waitOut, &waitOut
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	waiterDone := make(chan error, 1)
	go func() { waiterDone <- waiter.Wait() }()
	defer waiter.Process.Kill()
	select {
	case err := <-waiterDone:
		t.Fatalf("the waiting run ended while the board was held: %v\n%s", err, waitOut.String())
	case <-time.After(time.Second):
	}
	first.Process.Signal(syscall.SIGINT)
	if err := <-firstDone; err == nil {
		t.Error("the interrupted first run exited 0")
	}
	firstEvs := sigReadEvents(filepath.Join(dir, "first", "events.jsonl"))
	if len(firstEvs) == 0 {
		t.Fatal("the first run left no events")
	}
	firstLast := firstEvs[len(firstEvs)-1].Wall
	select {
	case err := <-waiterDone:
		if err != nil {
			t.Fatalf("the waiting run: %v\n%s", err, waitOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the waiting run did not finish within 60 s of the board's release:\n%s", waitOut.String())
	}
	if at := sigFirstEvent(t, filepath.Join(dir, "waiter")); at.Before(firstLast) {
		t.Errorf("the waiting run started at %v, before the first run's last event at %v", at, firstLast)
	}

	// A lease of a run that died on this host is taken over at once.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	sigWriteLease(t, leasePath, "crashed", host, dead.Process.Pid, time.Now().Add(time.Hour))
	if stdout, stderr, code := runCLI(t, dir, run("after-crash")...); code != 0 {
		t.Errorf("over a dead run's lease: exit %d\n%s%s", code, stdout, stderr)
	}

	// A live lease of another host: refused without --lock-wait, waited
	// out with it.
	expires := time.Now().Add(1500 * time.Millisecond)
	sigWriteLease(t, leasePath, "remote", "elsewhere", 4242, expires)
	if stdout, stderr, code := runCLI(t, dir, run("remote-refused")...); code != ExitInfra || !strings.Contains(stderr, "pid 4242 on elsewhere") {
		t.Errorf("over another host's lease: exit %d, want %d naming pid 4242 on elsewhere\n%s%s", code, ExitInfra, stdout, stderr)
	}
	if stdout, stderr, code := runCLI(t, dir, run("remote-expired", "--lock-wait")...); code != 0 {
		t.Errorf("waiting out another host's lease: exit %d\n%s%s", code, stdout, stderr)
	}
	if at := sigFirstEvent(t, filepath.Join(dir, "remote-expired")); at.Before(expires) {
		t.Errorf("the run started at %v, before the other host's lease expired at %v", at, expires)
	}
}

// TestRunDiskFull: the run's files stop growing mid-campaign (bash's
// ulimit -f sets RLIMIT_FSIZE: writes past it fail with EFBIG as they
// fail with ENOSPC on a full disk, without root). The run stops, exit 3,
// with the boards off; the database is intact and keeps the run
// unfinished for --resume with the cycles recorded before the failure,
// and summary.json agrees with it. The limit, 2 MiB (bash counts in
// KiB), holds about 8 of the job's 100 cycles: with 512 KiB the first
// cycle's records (events, nonces) sometimes did not fit.
func TestRunDiskFull(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bash is needed to set a file size limit")
		}
		t.Skip("bash is needed to set a file size limit")
	}
	dir := t.TempDir()
	s := sigStartSim(t, dir, "0", "delta", "epsilon")
	job := runWrite(t, filepath.Join(dir, "job.yaml"), fmt.Sprintf(sigLongJob, "delta, epsilon"))
	out, dbPath := filepath.Join(dir, "out"), filepath.Join(dir, "r.db")
	cmd := exec.Command(bash, "-c", `ulimit -f 2048 && exec "$0" "$@"`, binary, "run", job, "--bench", s.bench,
		"--out", out, "--db", dbPath, "--lock-dir", filepath.Join(dir, "locks"))
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	guard := time.AfterFunc(180*time.Second, func() { cmd.Process.Kill() })
	defer guard.Stop()
	werr := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
	} else if werr != nil {
		t.Fatal(werr)
	}
	if code != ExitInfra {
		t.Fatalf("exit %d, want %d\n%s", code, ExitInfra, stderr.String())
	}
	t.Logf("stderr:\n%s", stderr.String())
	for _, b := range []string{"delta", "epsilon"} {
		if p := s.power(t, b); p != "off" {
			t.Errorf("%s: power reads %q after the run, want off", b, p)
		}
	}
	db := runOpenDB(t, dbPath) // runs PRAGMA integrity_check
	runs, err := db.Runs()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || !runs[0].Finished.IsZero() {
		t.Fatalf("runs: %+v, want one left unfinished", runs)
	}
	cs, err := db.Cycles(runs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) == 0 || len(cs) >= 100 {
		t.Fatalf("%d of 100 cycles recorded: want the run stopped after some", len(cs))
	}
	t.Logf("%d of 100 cycles recorded before the run stopped", len(cs))
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sum results.Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	if sum.Cycles != len(cs) || sum.RunID != runs[0].ID {
		t.Errorf("summary.json: run %s, %d cycles; the database: run %s, %d cycles", sum.RunID, sum.Cycles, runs[0].ID, len(cs))
	}
}
