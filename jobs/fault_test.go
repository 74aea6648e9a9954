package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/power"
	_ "github.com/fudbench/fudbench/power/simctl"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// The fault suite: each test injects one fault into one board of a job
// running at least two boards, and checks how the faulty cycle is
// classified, that the other boards are unaffected, and that the run's
// records (events.jsonl, the results database, summary.json) agree.

// faultDriver is a power driver registered for these tests: it drives a
// simulated board's gpioreg power pin and fails on command.
const faultDriver = "test-faulty"

// powerFault says which call of a faultSwitch misbehaves and how.
type powerFault struct {
	op   string // "on" or "off"
	nth  int    // the nth call of op (from 1) misbehaves
	hang bool   // hang, ignoring ctx, until the test ends; else return an error
}

type faultSwitch struct {
	pin     gpio.PinIO
	name    string
	mu      sync.Mutex
	fault   powerFault
	calls   map[string]int
	release chan struct{}
}

var (
	faultMu       sync.Mutex
	faultSwitches = map[string]*faultSwitch{} // by pin name
)

func init() {
	power.Register(faultDriver, func(s power.Settings) (power.Switch, error) {
		var cfg struct {
			Pin string `json:"pin"`
		}
		if err := s.Decode(&cfg); err != nil {
			return nil, err
		}
		faultMu.Lock()
		defer faultMu.Unlock()
		fs := faultSwitches[cfg.Pin]
		if fs == nil {
			return nil, fmt.Errorf("no fault switch for pin %q", cfg.Pin)
		}
		return fs, nil
	})
}

// armPowerFault wires board's power through a faultSwitch with fault f.
func armPowerFault(t *testing.T, board string, f powerFault) *faultSwitch {
	t.Helper()
	pinName, _ := sim.PinNames(board)
	pin := gpioreg.ByName(pinName)
	if pin == nil {
		t.Fatalf("no pin %s", pinName)
	}
	fs := &faultSwitch{pin: pin, name: pinName, fault: f, calls: map[string]int{}, release: make(chan struct{})}
	faultMu.Lock()
	faultSwitches[pinName] = fs
	faultMu.Unlock()
	t.Cleanup(func() {
		close(fs.release)
		faultMu.Lock()
		delete(faultSwitches, pinName)
		faultMu.Unlock()
	})
	return fs
}

func (f *faultSwitch) String() string { return faultDriver + ":" + f.name }

func (f *faultSwitch) call(op string, l gpio.Level) error {
	f.mu.Lock()
	f.calls[op]++
	bad := f.fault.op == op && f.fault.nth == f.calls[op]
	f.mu.Unlock()
	if bad {
		if f.fault.hang {
			<-f.release // a driver stuck in a syscall: ctx is ignored
			return errors.New("released")
		}
		return fmt.Errorf("%s: %s: relay does not answer: %w", f, op, power.ErrDriver)
	}
	return f.pin.Out(l)
}

func (f *faultSwitch) On(context.Context) error  { return f.call("on", gpio.High) }
func (f *faultSwitch) Off(context.Context) error { return f.call("off", gpio.Low) }

// startFaultSims starts simulated boards (time scale 0) and returns their
// inventory text, which a test may rewire before parsing.
func startFaultSims(t *testing.T, cfgs ...sim.Config) (*sim.Sim, string) {
	t.Helper()
	for i := range cfgs {
		c := &cfgs[i]
		c.Name = fmt.Sprintf("f%d-%s", simSeq.Add(1), c.Name)
		c.Pins, c.UDPAddrs, c.DTLSAddr, c.StateDir = true, []string{"127.0.0.1:0"}, "-", t.TempDir()
	}
	return serveSims(t, cfgs)
}

// serveSims starts the boards, waits until they have booted, switches
// them off (the run powers them) and returns their bench file text.
func serveSims(t *testing.T, cfgs []sim.Config) (*sim.Sim, string) {
	t.Helper()
	s, err := sim.Start(cfgs, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range s.Boards {
		b.SetPower(false)
	}
	text, err := simbench.Inventory(s.Boards, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, string(text)
}

func parseInventory(t *testing.T, text string) *boards.Bench {
	t.Helper()
	inv, err := boards.Parse("(test bench)", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	return inv
}

// rewire replaces board's line starting with key (e.g. "power:") in an
// inventory made by sim.Inventory.
func rewire(t *testing.T, text, board, key, line string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	in := false
	for i, l := range lines {
		if strings.HasPrefix(l, "  - name: ") {
			in = strings.TrimPrefix(l, "  - name: ") == board
			continue
		}
		if in && strings.HasPrefix(strings.TrimSpace(l), key) {
			lines[i] = l[:len(l)-len(strings.TrimLeft(l, " "))] + key + " " + line
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("no %s line for board %s in\n%s", key, board, text)
	return ""
}

// faultRun is one executed job and where it left its records.
type faultRun struct {
	rep *jobs.Report
	err error
	dir string
	dur time.Duration
}

func runFaultJob(t *testing.T, job string, inv *boards.Bench, base, upd []byte, opt func(*jobs.RunOptions)) faultRun {
	t.Helper()
	j := parseJob(t, job)
	dir := t.TempDir()
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	o := jobs.RunOptions{
		Prepared: mustPrepare(t, j, inv, base, upd),
		Run:      results.RunInfo{ID: fmt.Sprintf("fault%d", simSeq.Add(1)), Job: j.Name, JobHash: "h", Started: time.Now()},
		OutDir:   dir, DB: db, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
		Tx: coap.Transmission{AckTimeout: 200 * time.Millisecond, MaxRetransmit: 2},
	}
	if opt != nil {
		opt(&o)
	}
	start := time.Now()
	rep, err := jobs.Execute(context.Background(), o)
	if rep == nil {
		t.Fatalf("run did not start: %v", err)
	}
	return faultRun{rep: rep, err: err, dir: dir, dur: time.Since(start)}
}

// checkRecords checks that the run's three records agree: every cycle in
// the database has exactly one cycle.outcome event with the same outcome
// in events.jsonl and no event is left over, summary.json counts the same
// cycles and outcomes, and the database passes its integrity check. It
// returns the events.
func checkRecords(t *testing.T, fr faultRun) []results.Event {
	t.Helper()
	db, err := results.OpenDB(filepath.Join(fr.dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.IntegrityCheck(); err != nil {
		t.Errorf("database: %v", err)
	}
	cs, err := db.Cycles(fr.rep.Run.ID)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(fr.dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	evs, err := results.ReadJSONL(f)
	if err != nil {
		t.Errorf("events.jsonl: %v", err)
	}
	type key struct {
		board string
		cycle int
	}
	outcomes := map[key][]string{}
	for _, e := range evs {
		if e.Kind == results.CycleOutcome {
			outcomes[key{e.Board, e.Cycle}] = append(outcomes[key{e.Board, e.Cycle}], e.Text)
		}
	}
	per := map[string]map[results.Outcome]int{}
	for _, c := range cs {
		k := key{c.Board, c.Cycle}
		if got := outcomes[k]; len(got) != 1 || got[0] != string(c.Outcome) {
			t.Errorf("%s cycle %d: database says %s, events.jsonl %v", c.Board, c.Cycle, c.Outcome, got)
		}
		delete(outcomes, k)
		if per[c.Board] == nil {
			per[c.Board] = map[results.Outcome]int{}
		}
		per[c.Board][c.Outcome]++
	}
	for k, o := range outcomes {
		t.Errorf("%s cycle %d: outcome %v in events.jsonl but not in the database", k.board, k.cycle, o)
	}
	b, err := os.ReadFile(filepath.Join(fr.dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s results.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	if s.Cycles != len(cs) {
		t.Errorf("summary.json counts %d cycles, the database holds %d", s.Cycles, len(cs))
	}
	for _, bs := range s.PerBoard {
		for o, n := range bs.Outcomes {
			if per[bs.Board][o] != n {
				t.Errorf("summary.json: %s %s %d, database %d", bs.Board, o, n, per[bs.Board][o])
			}
		}
	}
	return evs
}

// byBoard returns the report's cycles of one board, in order.
func byBoard(rep *jobs.Report, board string) []results.Cycle {
	var out []results.Cycle
	for _, c := range rep.Cycles {
		if c.Board == board {
			out = append(out, c)
		}
	}
	return out
}

func wantAll(t *testing.T, cs []results.Cycle, n int, o results.Outcome) {
	t.Helper()
	if len(cs) != n {
		t.Errorf("%d cycles, want %d", len(cs), n)
	}
	for _, c := range cs {
		if c.Outcome != o {
			t.Errorf("%s cycle %d (%s): %s %q, want %s", c.Board, c.Cycle, c.Plan, c.Outcome, c.Reason, o)
		}
	}
}

const faultImages = `
baseline: {build: {version: 1.0.0, seq: 1, size: 8KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 8KiB, seed: 2}}
`

func faultBase(t *testing.T) ([]byte, []byte) {
	return build(t, "1.0.0", 1, 8<<10, 1), build(t, "2.0.0", 2, 8<<10, 2)
}

// TestFaultConsoleReenumerates: one board's console is a USB adapter
// that vanishes at every power cut and comes back as a new device behind
// the same link, mid-cycle. The bench follows it: every cycle of both
// boards ends updated, the console's gaps and reopenings are on the
// timeline, and lines read after each reopening reach the cycle record.
func TestFaultConsoleReenumerates(t *testing.T) {
	// Flash as fast as at time scale 0, but a boot that takes 50 ms: the
	// console's new port appears at power-on and the bench, which looks
	// for it every 20 ms, opens it before the boot lines come.
	fast := func(c sim.Config) sim.Config {
		c.TimeScale, c.ProgramTime, c.EraseTime, c.BootDelay = 1, time.Nanosecond, time.Microsecond, 50*time.Millisecond
		return c
	}
	s, text := startFaultSims(t,
		fast(sim.Config{Name: "usb", Strategy: sim.InplaceRecovery, Reenumerate: true}),
		fast(sim.Config{Name: "fixed", Strategy: sim.InplaceRecovery}))
	usb, fixed := s.Boards[0].Name(), s.Boards[1].Name()
	base, upd := faultBase(t)
	fr := runFaultJob(t, fmt.Sprintf(`boards: [%s, %s]
%s
block_size: 512
cuts:
  - after_block: {from: 2, to: 10, step: 4}
off_time: 20ms
recovery_timeout: 5s
`, usb, fixed, faultImages), parseInventory(t, text), base, upd, func(o *jobs.RunOptions) { o.Console = true })
	if fr.err != nil {
		t.Fatal(fr.err)
	}
	wantAll(t, byBoard(fr.rep, usb), 3, results.Updated)
	wantAll(t, byBoard(fr.rep, fixed), 3, results.Updated)
	// From cycle 2 on the console has come back at least once mid-run,
	// and its lines reach the cycle records.
	for _, c := range byBoard(fr.rep, usb)[1:] {
		if len(c.LastConsole) == 0 {
			t.Errorf("%s cycle %d: no console lines recorded", usb, c.Cycle)
		}
	}
	evs := checkRecords(t, fr)
	reopened := map[string]int{}
	linesAfter := 0 // console lines of the re-enumerating board after its first reopening
	for _, e := range evs {
		if e.Kind == results.ConsoleReopen {
			reopened[e.Board]++
		}
		if e.Kind == results.ConsoleLine && e.Board == usb && reopened[usb] > 0 {
			linesAfter++
		}
	}
	if linesAfter == 0 {
		t.Errorf("no console lines of %s after its port came back", usb)
	}
	// A reopening per power-on but the last: at time scale 0 the run can
	// end before the console's next look finds the last port.
	if reopened[usb] < 2 || reopened[fixed] != 0 {
		t.Errorf("console reopenings: %v, want >= 2 for %s and none for %s", reopened, usb, fixed)
	}
	if fr.rep.Summary.Verdict != results.VerdictPass {
		t.Errorf("verdict %s", fr.rep.Summary.Verdict)
	}
}

// TestFaultPowerDriver: one board's power driver fails at a chosen call,
// with an error or by hanging (ignoring its context). The cycle is an
// infra-error naming the board and the driver, the board is put in its
// safe state at once and taken out of the run (its later cycles are
// infra-errors saying why they did not run), and the other board cycles
// on, all updated.
func TestFaultPowerDriver(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault powerFault
		// want is what the faulty cycle's reason says.
		want string
	}{
		{"off-error-at-cut", powerFault{op: "off", nth: 2}, "relay does not answer"},
		{"on-error-after-cut", powerFault{op: "on", nth: 4}, "relay does not answer"},
		{"off-hangs-at-cut", powerFault{op: "off", nth: 2, hang: true}, "no answer within 500ms"},
		{"on-hangs-after-cut", powerFault{op: "on", nth: 4, hang: true}, "no answer within 500ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, text := startFaultSims(t,
				sim.Config{Name: "bad", Strategy: sim.InplaceRecovery},
				sim.Config{Name: "good", Strategy: sim.InplaceRecovery})
			bad, good := s.Boards[0], s.Boards[1]
			pin, _ := sim.PinNames(bad.Name())
			armPowerFault(t, bad.Name(), tc.fault)
			text = rewire(t, text, bad.Name(), "power:", fmt.Sprintf(`{driver: %s, pin: "%s"}`, faultDriver, pin))
			base, upd := faultBase(t)
			fr := runFaultJob(t, fmt.Sprintf(`boards: [%s, %s]
%s
block_size: 512
cuts:
  - after_block: {from: 1, to: 4}
off_time: 5ms
recovery_timeout: 5s
`, bad.Name(), good.Name(), faultImages), parseInventory(t, text), base, upd, func(o *jobs.RunOptions) {
				o.PowerTimeout = 500 * time.Millisecond
			})
			t.Logf("run took %v", fr.dur)
			if fr.err != nil {
				t.Logf("run error: %v", fr.err)
			}
			wantAll(t, byBoard(fr.rep, good.Name()), 4, results.Updated)
			cs := byBoard(fr.rep, bad.Name())
			if len(cs) != 4 {
				t.Fatalf("%d cycles of %s, want 4", len(cs), bad.Name())
			}
			// Both faults land in cycle 2 (one cut and two power-ons per cycle).
			if cs[0].Outcome != results.Updated {
				t.Errorf("cycle 1: %s %q", cs[0].Outcome, cs[0].Reason)
			}
			f := cs[1]
			if f.Outcome != results.InfraError || !strings.Contains(f.Reason, "board "+bad.Name()) ||
				!strings.Contains(f.Reason, faultDriver+":"+pin) || !strings.Contains(f.Reason, tc.want) ||
				!strings.Contains(f.Reason, "power "+tc.fault.op) {
				t.Errorf("faulty cycle: %s %q, want infra-error naming the board, %s:%s, power %s and %q", f.Outcome, f.Reason, faultDriver, pin, tc.fault.op, tc.want)
			}
			for _, c := range cs[2:] {
				if c.Outcome != results.InfraError || !strings.Contains(c.Reason, "not run") || !strings.Contains(c.Reason, "since cycle 2") {
					t.Errorf("cycle %d after the fault: %s %q", c.Cycle, c.Outcome, c.Reason)
				}
			}
			if bad.Powered() {
				t.Errorf("%s left powered after its power fault", bad.Name())
			}
			evs := checkRecords(t, fr)
			// The safe state came at once: in cycle 2, before the board's
			// later cycles were recorded as not run.
			var safeAt, nextAt time.Duration = -1, -1
			for _, e := range evs {
				if e.Board != bad.Name() {
					continue
				}
				if e.Kind == results.PowerOff && e.Text == "safe state" && e.Cycle == 2 && safeAt < 0 {
					safeAt = e.T
				}
				if e.Kind == results.CycleOutcome && e.Cycle == 3 {
					nextAt = e.T
				}
			}
			if safeAt < 0 || nextAt < 0 || safeAt > nextAt {
				t.Errorf("safe state of %s at %v, cycle 3 recorded at %v: want the safe state first", bad.Name(), safeAt, nextAt)
			}
			// One safe-state call per board and run: the board taken out
			// is not switched again at the end (docs/bench.md).
			safes := map[string]int{}
			for _, e := range evs {
				if e.Kind == results.PowerOff && e.Text == "safe state" {
					safes[e.Board]++
				}
			}
			if safes[bad.Name()] != 1 || safes[good.Name()] != 1 {
				t.Errorf("safe-state calls %v: want one per board", safes)
			}
			if fr.rep.Summary.Verdict != results.VerdictInfraError {
				t.Errorf("verdict %s, want %s", fr.rep.Summary.Verdict, results.VerdictInfraError)
			}
		})
	}
}

// cutProxy is a TCP proxy in front of a GDB port that, once armed, cuts
// every connection after a number of bytes from the client and refuses
// every later one: a probe whose cable or adapter dies mid-flash.
type cutProxy struct {
	ln     net.Listener
	target string
	budget atomic.Int64 // bytes the client may still send once armed; < 0 unarmed
	dead   atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.budget.Store(-1)
	t.Cleanup(func() { ln.Close(); p.kill() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.dead.Load() {
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go io.Copy(c, s)
			go p.pipe(s, c)
		}
	}()
	return p
}

// pipe copies client bytes to the server, counting them once armed.
func (p *cutProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 512)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if b := p.budget.Load(); b >= 0 {
				if int64(n) >= b {
					dst.Write(buf[:b])
					p.kill()
					return
				}
				p.budget.Add(-int64(n))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *cutProxy) arm(bytes int64) { p.budget.Store(bytes) }

func (p *cutProxy) kill() {
	p.dead.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestFaultProbeDiesMidFlash: a naive board bricks at a cut and its GDB
// probe dies while the bench reflashes it. The cycle stays bricked (what
// the device did), with the failed reflash in its reason and not marked
// reflashed; the next cycle tries to restore the baseline once more, fails
// as an infra-error naming the probe, and takes the board out of the run.
// The other board is unaffected.
func TestFaultProbeDiesMidFlash(t *testing.T) {
	s, text := startFaultSims(t,
		sim.Config{Name: "naive", Strategy: sim.NaiveInplace},
		sim.Config{Name: "safe", Strategy: sim.InplaceRecovery})
	naive, safe := s.Boards[0], s.Boards[1]
	proxy := startCutProxy(t, naive.GDBAddr())
	text = rewire(t, text, naive.Name(), "probe:", fmt.Sprintf(`{driver: gdbrsp, address: "%s", reset: reset}`, proxy.ln.Addr()))
	// Arm the proxy once the naive board lies bricked: the bench's
	// recovery wait and classification come before its reflash.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if naive.Mode() == sim.ModeHalted {
				proxy.arm(2048) // well into the 8 KiB image's vFlashWrite packets
				return
			}
		}
	}()
	base, upd := faultBase(t)
	fr := runFaultJob(t, fmt.Sprintf(`boards: [%s, %s]
%s
block_size: 512
cuts:
  - after_block: {from: 2, to: 5}
off_time: 5ms
recovery_timeout: 1s
profiles: {%s: block1}
accept: {%s: [updated, bricked], "*": [updated]}
`, naive.Name(), safe.Name(), faultImages, naive.Name(), naive.Name()), parseInventory(t, text), base, upd, nil)
	wantAll(t, byBoard(fr.rep, safe.Name()), 4, results.Updated)
	cs := byBoard(fr.rep, naive.Name())
	if len(cs) != 4 {
		t.Fatalf("%d cycles of %s, want 4", len(cs), naive.Name())
	}
	if c := cs[0]; c.Outcome != results.Bricked || c.Reflashed || !strings.Contains(c.Reason, "reflash failed") || !strings.Contains(c.Reason, "gdbrsp") {
		t.Errorf("cycle 1: %s reflashed=%v %q, want bricked, not reflashed, the failed reflash over gdbrsp in the reason", c.Outcome, c.Reflashed, c.Reason)
	}
	if c := cs[1]; c.Outcome != results.InfraError || !strings.HasPrefix(c.Reason, "baseline: ") || !strings.Contains(c.Reason, "gdbrsp") {
		t.Errorf("cycle 2: %s %q, want infra-error restoring the baseline over gdbrsp", c.Outcome, c.Reason)
	}
	for _, c := range cs[2:] {
		if c.Outcome != results.InfraError || !strings.Contains(c.Reason, "not run") {
			t.Errorf("cycle %d: %s %q, want not run", c.Cycle, c.Outcome, c.Reason)
		}
	}
	if !proxy.dead.Load() {
		t.Error("the probe connection was never cut")
	}
	checkRecords(t, fr)
	if fr.rep.Summary.Verdict != results.VerdictInfraError {
		t.Errorf("verdict %s, want %s", fr.rep.Summary.Verdict, results.VerdictInfraError)
	}
}

// TestFaultSimProcessKilled: a board served with its own control endpoint
// (as `fudbench sim` serves boards out of process, reached through the
// sim power driver) disappears mid-campaign: its CoAP, GDB and control
// endpoints all go. A device that stops answering is bricked only while
// the bench still controls its power; here the power switch is gone too,
// so the cycle is an infra-error naming the switch, the board is out of
// the run, and the other board (in another sim) is unaffected.
func TestFaultSimProcessKilled(t *testing.T) {
	cfg := func(name string) sim.Config {
		return sim.Config{Name: fmt.Sprintf("k%d-%s", simSeq.Add(1), name), Pins: true,
			UDPAddrs: []string{"127.0.0.1:0"}, DTLSAddr: "-", StateDir: t.TempDir()}
	}
	start := func(c sim.Config) (*sim.Sim, string, string) {
		s, err := sim.Start([]sim.Config{c}, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		s.Boards[0].SetPower(false)
		addr, err := s.ServeControl("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		text, err := simbench.Inventory(s.Boards, nil)
		if err != nil {
			t.Fatal(err)
		}
		name := s.Boards[0].Name()
		return s, name, rewire(t, string(text), name, "power:", fmt.Sprintf(`{driver: sim, url: "http://%s", board: %s}`, addr, name))
	}
	victimSim, victim, vtext := start(cfg("victim"))
	_, other, otext := start(cfg("other"))
	inv := parseInventory(t, vtext+strings.TrimPrefix(otext, "boards:\n"))
	vb := victimSim.Boards[0]
	// Kill the victim's sim in its second cycle, mid-transfer: after its
	// second cut, once it is back in recovery receiving blocks.
	stop := make(chan struct{})
	defer close(stop)
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			// Cuts: the power-off after the first boot, then one per cycle.
			if len(vb.Cuts()) >= 3 && vb.Mode() == sim.ModeRecovery {
				victimSim.Close()
				return
			}
		}
	}()
	base, upd := faultBase(t)
	fr := runFaultJob(t, fmt.Sprintf(`boards: [%s, %s]
%s
block_size: 256
cuts:
  - after_block: {from: 4, to: 28, step: 4}
off_time: 5ms
recovery_timeout: 1s
`, victim, other, faultImages), inv, base, upd, nil)
	select {
	case <-killed:
	default:
		t.Fatal("the victim's sim was never killed")
	}
	wantAll(t, byBoard(fr.rep, other), 7, results.Updated)
	cs := byBoard(fr.rep, victim)
	if len(cs) != 7 {
		t.Fatalf("%d cycles of %s, want 7", len(cs), victim)
	}
	i := 0
	for i < len(cs) && cs[i].Outcome == results.Updated {
		i++
	}
	if i < 1 || i == len(cs) {
		t.Fatalf("victim: %d cycles updated before the kill; outcomes %v", i, cs)
	}
	if f := cs[i]; f.Outcome != results.InfraError || !strings.Contains(f.Reason, "sim:") || !strings.Contains(f.Reason, "board "+victim) {
		t.Errorf("cycle %d (the kill): %s %q, want infra-error naming the board and its sim power switch", f.Cycle, f.Outcome, f.Reason)
	} else {
		t.Logf("cycle %d: %s", f.Cycle, f.Reason)
	}
	for _, c := range cs[i+1:] {
		if c.Outcome != results.InfraError || !strings.Contains(c.Reason, "not run") {
			t.Errorf("cycle %d after the kill: %s %q", c.Cycle, c.Outcome, c.Reason)
		}
	}
	checkRecords(t, fr)
}

// TestFaultSilentBoardIsBricked is the counterpart of
// TestFaultSimProcessKilled: when the device goes silent but its power
// switch still answers and reads on, the bench cannot tell it from a
// bricked device, and says bricked.
func TestFaultSilentBoardIsBricked(t *testing.T) {
	s, text := startFaultSims(t,
		sim.Config{Name: "naive", Strategy: sim.NaiveInplace},
		sim.Config{Name: "safe", Strategy: sim.InplaceRecovery})
	naive, safe := s.Boards[0].Name(), s.Boards[1].Name()
	base, upd := faultBase(t)
	fr := runFaultJob(t, fmt.Sprintf(`boards: [%s, %s]
%s
block_size: 512
cuts:
  - after_block: 3
off_time: 5ms
recovery_timeout: 500ms
profiles: {%s: block1}
accept: {%s: [bricked], "*": [updated]}
`, naive, safe, faultImages, naive, naive), parseInventory(t, text), base, upd, nil)
	if fr.err != nil {
		t.Fatal(fr.err)
	}
	wantAll(t, byBoard(fr.rep, naive), 1, results.Bricked)
	wantAll(t, byBoard(fr.rep, safe), 1, results.Updated)
	checkRecords(t, fr)
}

// TestFaultPowerTimeoutDefault: without a configured timeout a power call
// is bounded by bench.DefaultPowerTimeout.
func TestFaultPowerTimeoutDefault(t *testing.T) {
	if bench.DefaultPowerTimeout <= 0 || bench.DefaultPowerTimeout > time.Minute {
		t.Fatalf("DefaultPowerTimeout %v", bench.DefaultPowerTimeout)
	}
	hs := &hangSwitch{release: make(chan struct{})}
	defer close(hs.release)
	b := bench.NewBoard("b", hs, bench.Endpoint{}, "", bench.NewHub(results.NewClock(), nil))
	b.PowerTimeout = 50 * time.Millisecond
	err := b.PowerOn(context.Background())
	if !errors.Is(err, power.ErrTimeout) || !errors.Is(err, bench.ErrPower) || !strings.Contains(err.Error(), "board b") {
		t.Errorf("PowerOn of a hung switch: %v", err)
	}
	if err := b.Safe(); !errors.Is(err, power.ErrTimeout) {
		t.Errorf("Safe of a hung switch: %v", err)
	}
}

type hangSwitch struct{ release chan struct{} }

func (h *hangSwitch) On(context.Context) error  { <-h.release; return nil }
func (h *hangSwitch) Off(context.Context) error { <-h.release; return nil }
func (h *hangSwitch) String() string            { return "hang" }

// fsizeEnv selects the child of TestFaultDiskFull; it holds the output
// directory.
const fsizeEnv = "FUDBENCH_JOBS_TEST_FSIZE"

// diskFullChild is what the child of TestFaultDiskFull reports.
type diskFullChild struct {
	Err     string   `json:"err"`
	Run     string   `json:"run"`
	Planned int      `json:"planned"`
	Powered []string `json:"powered"` // boards left powered
}

// TestHelperDiskFullRun runs a long job in a child process whose file
// size limit (RLIMIT_FSIZE) makes the run's writes fail as on a full disk,
// and prints what Execute returned.
func TestHelperDiskFullRun(t *testing.T) {
	dir := os.Getenv(fsizeEnv)
	if dir == "" {
		t.Skip("helper process for TestFaultDiskFull")
	}
	signal.Ignore(syscall.SIGXFSZ) // writes past the limit return EFBIG
	var cfgs []sim.Config
	for _, n := range []string{"a", "b"} {
		// Flash in memory: only the run's own files hit the limit.
		cfgs = append(cfgs, sim.Config{Name: fmt.Sprintf("d%d-%s", simSeq.Add(1), n), Pins: true,
			UDPAddrs: []string{"127.0.0.1:0"}, DTLSAddr: "-", GDBAddr: "127.0.0.1:0"})
	}
	s, text := serveSims(t, cfgs)
	inv := parseInventory(t, text)
	j := parseJob(t, fmt.Sprintf(`boards: [%s, %s]
%s
block_size: 512
cuts:
  - after_block: {from: 0, to: last}
repeat: 20
off_time: 1ms
recovery_timeout: 5s
`, s.Boards[0].Name(), s.Boards[1].Name(), faultImages))
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lim := syscall.Rlimit{Cur: 256 << 10, Max: 256 << 10}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	base, upd := faultBase(t)
	rep, err := jobs.Execute(context.Background(), jobs.RunOptions{
		Prepared: mustPrepare(t, j, inv, base, upd),
		Run:      results.RunInfo{ID: "diskfull", Job: j.Name, JobHash: "diskfull-hash", Started: time.Now()},
		OutDir:   dir, DB: db, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
		Tx: coap.Transmission{AckTimeout: 200 * time.Millisecond, MaxRetransmit: 2},
	})
	out := diskFullChild{Err: fmt.Sprint(err)}
	if rep != nil {
		out.Run = rep.Run.ID
		out.Planned = rep.Summary.Planned
	}
	for _, b := range s.Boards {
		if b.Powered() {
			out.Powered = append(out.Powered, b.Name())
		}
	}
	line, _ := json.Marshal(out)
	fmt.Printf("diskfull-result: %s\n", line)
}

// TestFaultDiskFull: the run's files stop growing mid-campaign (a child
// process under RLIMIT_FSIZE: writes fail with EFBIG as they fail with
// ENOSPC on a full disk, without root). The whole run stops — every
// board, not only the one whose record failed — with an error naming the
// file, the boards are left off, the database is intact and the run stays
// unfinished so --resume can complete it, summary.json agrees with the
// database, and events.jsonl is readable up to the write that failed.
func TestFaultDiskFull(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDiskFullRun$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), fsizeEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var res diskFullChild
	found := false
	for l := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(l, "diskfull-result: "); ok {
			found = json.Unmarshal([]byte(rest), &res) == nil
		}
	}
	if !found {
		t.Fatalf("no result from the child:\n%s", out)
	}
	t.Logf("Execute: %s", res.Err)
	if !strings.Contains(res.Err, "record") || !strings.Contains(res.Err, dir) {
		t.Errorf("error %q, want a record error naming a file in %s", res.Err, dir)
	}
	if len(res.Powered) != 0 {
		t.Errorf("boards left powered: %v", res.Powered)
	}
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.IntegrityCheck(); err != nil {
		t.Error(err)
	}
	ri, cs, err := db.LatestUnfinished("diskfull-hash")
	if err != nil || ri == nil || ri.ID != res.Run {
		t.Fatalf("unfinished run: %+v, %v; want run %s left for --resume", ri, err, res.Run)
	}
	if len(cs) == 0 || len(cs) >= res.Planned {
		t.Fatalf("%d of %d cycles recorded: want the run stopped after some", len(cs), res.Planned)
	}
	last := map[string]int{}
	for _, c := range cs {
		last[c.Board] = max(last[c.Board], c.Cycle)
	}
	t.Logf("%d of %d cycles recorded before the run stopped; last cycle per board %v", len(cs), res.Planned, last)
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s results.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	if s.Cycles != len(cs) {
		t.Errorf("summary.json counts %d cycles, the database %d", s.Cycles, len(cs))
	}
	f, err := os.Open(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	evs, rerr := results.ReadJSONL(f)
	if rerr != nil {
		// Only the line being written when the limit hit may be torn.
		t.Logf("events.jsonl: %v", rerr)
		f.Seek(0, io.SeekStart)
		all, _ := io.ReadAll(f)
		if n := strings.Count(string(all), "\n"); len(evs) < n-1 {
			t.Errorf("events.jsonl: %d events read of %d lines: %v", len(evs), n, rerr)
		}
	}
	// No board went on: its last event is of the cycle after its last
	// recorded one at most (the one in progress when the run stopped).
	for _, e := range evs {
		if e.Board != "" && e.Cycle > last[e.Board]+1 {
			t.Errorf("%s has events of cycle %d, its last recorded cycle is %d: it went on after the run stopped", e.Board, e.Cycle, last[e.Board])
			break
		}
	}
	inDB := map[string]bool{}
	for _, c := range cs {
		inDB[fmt.Sprintf("%s/%d", c.Board, c.Cycle)] = true
	}
	seen := map[string]bool{}
	extra := 0
	for _, e := range evs {
		if e.Kind != results.CycleOutcome {
			continue
		}
		k := fmt.Sprintf("%s/%d", e.Board, e.Cycle)
		seen[k] = true
		if !inDB[k] {
			extra++ // its record was the write that failed
		}
	}
	missing := 0
	for k := range inDB {
		if !seen[k] {
			missing++ // its event was lost with the timeline's failed write
		}
	}
	if extra > 2 || missing > 2 {
		t.Errorf("events.jsonl and the database disagree beyond the failed writes: %d outcomes not in the database, %d cycles without an outcome event", extra, missing)
	}
}

// busyLine is a trigger input line claimed by someone else: it cannot be
// set up for edge detection.
type busyLine struct{ gpiotest.Pin }

func (b *busyLine) In(gpio.Pull, gpio.Edge) error { return errors.New("device or resource busy") }

// TestFaultTriggerCannotArm: a cut timed to an input that cannot be set up
// must not let the update run uncut and count as survived: the cycle is
// the bench's failure and no block is sent.
func TestFaultTriggerCannotArm(t *testing.T) {
	s, text := startFaultSims(t, sim.Config{Name: "arm", Strategy: sim.InplaceRecovery})
	name := s.Boards[0].Name()
	line := &busyLine{gpiotest.Pin{N: strings.ToUpper(name) + "-CLAIMED"}}
	if err := gpioreg.Register(line); err != nil {
		t.Fatal(err)
	}
	defer gpioreg.Unregister(line.N)
	text = rewire(t, text, name, "busy:", `{driver: gpio, pin: "`+line.N+`"}`)
	base, upd := faultBase(t)
	fr := runFaultJob(t, fmt.Sprintf(`boards: [%s]
%s
cuts:
  - on_gpio: {input: busy, nth: 2}
recovery_timeout: 2s
`, name, faultImages), parseInventory(t, text), base, upd, nil)
	if fr.err != nil {
		t.Fatal(fr.err)
	}
	wantAll(t, byBoard(fr.rep, name), 1, results.InfraError)
	c := fr.rep.Cycles[0]
	if !strings.Contains(c.Reason, "arming the cut") || !strings.Contains(c.Reason, "device or resource busy") || c.BlocksSent != 0 || c.Cut != nil {
		t.Errorf("cycle: reason %q, %d blocks sent, cut %+v", c.Reason, c.BlocksSent, c.Cut)
	}
	checkRecords(t, fr)
}
