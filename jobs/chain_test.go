package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// runSim prepares and runs job on the simulated boards of s (inventory
// inv) with their flash counters readable, as `fudbench run` does.
func runSim(t testing.TB, s *sim.Sim, inv *boards.Bench, job *jobs.Job) *jobs.Report {
	t.Helper()
	w := map[string]power.CutWitness{}
	for _, b := range s.Boards {
		w[b.Name()] = simbench.Witness(b)
	}
	prep, err := jobs.Prepare(context.Background(), job, inv, jobs.PrepareOptions{Use: jobs.UseRun, Witnesses: w})
	if err != nil {
		t.Fatal(err)
	}
	rep, stored := executeInto(t, job, prep, w)
	// What is stored is what ran.
	if len(stored) != len(rep.Cycles) {
		t.Fatalf("stored %d cycles, ran %d", len(stored), len(rep.Cycles))
	}
	for i, c := range stored {
		r := rep.Cycles[i]
		if c.ProbeUses != r.ProbeUses || c.ProbeTime != r.ProbeTime || (c.Erases == nil) != (r.Erases == nil) || (c.Erases != nil && *c.Erases != *r.Erases) {
			t.Fatalf("cycle %d stored as probe %d %v erases %v, ran probe %d %v erases %v", c.Cycle, c.ProbeUses, c.ProbeTime, c.Erases, r.ProbeUses, r.ProbeTime, r.Erases)
		}
	}
	return rep
}

// running is the header of the image in the application slot of an
// in-place board.
func running(t testing.TB, b *sim.Board, size int) *fwimage.Header {
	t.Helper()
	img := make([]byte, size)
	if err := b.Flash().Read(b.Layout().AppStart, img); err != nil {
		t.Fatal(err)
	}
	h, err := fwimage.ParseHeader(img)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// factory programs the board with img, as it would leave the factory
// (the board is unpowered between tests' runs).
func factory(t testing.TB, b *sim.Board, img []byte) {
	t.Helper()
	if err := b.FactoryProgram(img); err != nil {
		t.Fatal(err)
	}
}

// soakJob is the soak plan of the chain tests: cycles cuts after a random
// block of a 4 KiB image in 256-byte blocks, from the baseline given.
func soakJob(name, baseline string, cycles int) string {
	return fmt.Sprintf(`
boards: [%s]
baseline: %s
image: {build: {version: 2.0.0, seq: 2, size: 4KiB, seed: 2}}
block_size: 256
cuts:
  - random: {count: %d, kind: after_block, window: {from: 0, to: last}}
off_time: 2ms
recovery_timeout: 2s
seed: 7
`, name, baseline, cycles)
}

// TestChainSoakNeverUsesTheProbe is chain mode's promise: 200 cycles,
// each cut after a random block, on an inplace-recovery board that never
// bricks, use the probe 0 times — each cycle updates from the image the
// cycle before left — while the device's erases are counted every
// cycle, and the device ends running link 200 (seq 201). The board left
// the factory with the chain's first image (link 0: 2.0.0+c0, seq 1).
func TestChainSoakNeverUsesTheProbe(t *testing.T) {
	const cycles = 200
	s, inv := startSims(t, 1, sim.InplaceRecovery)
	name := inv.Boards[0].Name
	factory(t, s.Boards[0], build(t, "2.0.0+c0", 1, 4<<10, 2))
	rep := runSim(t, s, inv, parseJob(t, soakJob(name, "chain", cycles)))
	if len(rep.Cycles) != cycles {
		t.Fatalf("%d cycles, want %d", len(rep.Cycles), cycles)
	}
	for _, c := range rep.Cycles {
		if c.Outcome != results.Updated || !c.Accepted {
			t.Errorf("cycle %d (%s): %s %s", c.Cycle, c.Plan, c.Outcome, c.Reason)
		}
		if c.Cut == nil {
			t.Errorf("cycle %d (%s): no cut", c.Cycle, c.Plan)
		}
		if c.ProbeUses != 0 || c.ProbeTime != 0 {
			t.Errorf("cycle %d: probe used %d times (%v)", c.Cycle, c.ProbeUses, c.ProbeTime)
		}
		if c.Erases == nil || *c.Erases == 0 {
			t.Errorf("cycle %d: erases %v, want counted and more than 0", c.Cycle, c.Erases)
		}
	}
	f := rep.Summary.PerBoard[0].Flash
	if f.ProbeUses != 0 || f.ProbeMs != 0 || f.ErasesCycles != cycles || f.ErasesPerCycle <= 0 {
		t.Errorf("summary: %+v", f)
	}
	if h := running(t, s.Boards[0], 4<<10); h.Seq != cycles+1 || h.Version != fmt.Sprintf("2.0.0+c%d", cycles) {
		t.Errorf("the device runs %s seq %d, want 2.0.0+c%d seq %d", h.Version, h.Seq, cycles, cycles+1)
	}
	t.Logf("chain: probe %d uses, %.0f ms; %.2f erases per cycle", f.ProbeUses, f.ProbeMs, f.ErasesPerCycle)
}

// TestBaselineSoakUsesTheProbe is the same plan with one baseline, on a
// board that left the factory with it: every cycle after an update
// restores the baseline over the probe, which the summary counts and
// times.
func TestBaselineSoakUsesTheProbe(t *testing.T) {
	const cycles = 20
	s, inv := startSims(t, 1, sim.InplaceRecovery)
	name := inv.Boards[0].Name
	factory(t, s.Boards[0], build(t, "1.0.0", 1, 4<<10, 1))
	rep := runSim(t, s, inv, parseJob(t, soakJob(name, "{build: {version: 1.0.0, seq: 1, size: 4KiB, seed: 1}}", cycles)))
	if len(rep.Cycles) != cycles {
		t.Fatalf("%d cycles, want %d", len(rep.Cycles), cycles)
	}
	for _, c := range rep.Cycles {
		if c.Outcome != results.Updated {
			t.Errorf("cycle %d (%s): %s %s", c.Cycle, c.Plan, c.Outcome, c.Reason)
		}
		want := 1
		if c.Cycle == 1 {
			want = 0 // the board runs the baseline
		}
		if c.ProbeUses != want || (want > 0) != (c.ProbeTime > 0) {
			t.Errorf("cycle %d: probe used %d times (%v), want %d", c.Cycle, c.ProbeUses, c.ProbeTime, want)
		}
		if c.Erases == nil || *c.Erases == 0 {
			t.Errorf("cycle %d: erases %v", c.Cycle, c.Erases)
		}
	}
	f := rep.Summary.PerBoard[0].Flash
	if f.ProbeUses != cycles-1 || f.ProbeMs <= 0 || f.ProbeUsesPerCycle != float64(cycles-1)/cycles || f.ProbeMsPerCycle <= 0 || f.ErasesCycles != cycles {
		t.Errorf("summary: %+v", f)
	}
	t.Logf("baseline: probe %d uses, %.0f ms; %.2f erases per cycle", f.ProbeUses, f.ProbeMs, f.ErasesPerCycle)
}

// TestChainNaiveBricks: a naive in-place board bricks when cut during its
// update; the bench reflashes it with the image it ran before the cycle,
// and the chain goes on with rising sequence numbers: the next link is
// never refused as a rollback, and the cycle after a brick needs no
// probe to start.
func TestChainNaiveBricks(t *testing.T) {
	s, inv := startSims(t, 1, sim.NaiveInplace)
	name := inv.Boards[0].Name
	job := parseJob(t, fmt.Sprintf(`
boards: [%s]
baseline: chain
image: {build: {version: 2.0.0, seq: 2, size: 4KiB, seed: 2}}
block_size: 256
profile: block1
cuts:
  - none
  - after_block: {from: 1, to: 3}
  - none
  - none
off_time: 2ms
recovery_timeout: 500ms
accept: {"*": [updated, bricked]}
`, name))
	rep := runSim(t, s, inv, job)
	want := []results.Outcome{results.Updated, results.Bricked, results.Bricked, results.Bricked, results.Updated, results.Updated}
	if len(rep.Cycles) != len(want) {
		t.Fatalf("%d cycles, want %d", len(rep.Cycles), len(want))
	}
	for i, c := range rep.Cycles {
		if c.Outcome != want[i] {
			t.Errorf("cycle %d (%s): %s (%s), want %s", c.Cycle, c.Plan, c.Outcome, c.Reason, want[i])
		}
		switch {
		case c.Outcome == results.Bricked && (!c.Reflashed || c.ProbeUses != 1 || c.ProbeTime <= 0):
			t.Errorf("cycle %d: bricked, reflashed %v, probe %d %v", c.Cycle, c.Reflashed, c.ProbeUses, c.ProbeTime)
		case c.Cycle > 1 && c.Outcome == results.Updated && c.ProbeUses != 0:
			t.Errorf("cycle %d: updated from the reflashed image, but the probe was used %d times to start", c.Cycle, c.ProbeUses)
		}
	}
	// Six links pushed after link 0: the last cycle's is link 6.
	if h := running(t, s.Boards[0], 4<<10); h.Seq != 7 || h.Version != "2.0.0+c6" {
		t.Errorf("the device runs %s seq %d, want 2.0.0+c6 seq 7", h.Version, h.Seq)
	}
}

// TestChainDecodeErrors: what a chain cannot be built from is refused
// at its line.
func TestChainDecodeErrors(t *testing.T) {
	for _, c := range []struct {
		name, src string
		line      int
		msg       string
	}{
		{"image file", "baseline: chain\nimage: {file: app.bin}\ncuts: [none]\n", 2, "not from a file"},
		{"seq 1", "baseline: chain\nimage:\n  build: {version: 2.0.0, seq: 1}\ncuts: [none]\n", 3, "want seq 2 or more"},
		{"seq 0", "cuts: [none]\nbaseline: chain\nimage: {build: {version: 2.0.0, seq: 0}}\n", 3, "want seq 2 or more"},
		{"bad word", "image: {build: {version: 2.0.0, seq: 2}}\nbaseline: chains\ncuts: [none]\n", 2, `baseline "chains": want chain`},
		{"list", "image: {build: {version: 2.0.0, seq: 2}}\nbaseline: [chain]\ncuts: [none]\n", 2, "baseline: want chain, or file: or build:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := jobs.Parse("chain.yaml", []byte(c.src))
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Line != c.line || !strings.Contains(ce.Msg, c.msg) || !strings.HasPrefix(err.Error(), fmt.Sprintf("chain.yaml:%d:", c.line)) {
				t.Fatalf("got %v, want an error at line %d with %q", err, c.line, c.msg)
			}
		})
	}
}

// TestChainVersionTooLong: a version that cannot carry the link numbers
// of the planned cycles is refused at Prepare, at the image's line.
func TestChainVersionTooLong(t *testing.T) {
	_, inv := startSims(t, 1, sim.InplaceRecovery)
	job := parseJob(t, fmt.Sprintf(`boards: [%s]
baseline: chain
image: {build: {version: 1.2.3-release-candidate-77777, seq: 2, size: 4KiB}}
block_size: 256
cuts:
  - after_block: {from: 0, to: last}
`, inv.Boards[0].Name))
	_, err := jobs.Prepare(context.Background(), job, inv, jobs.PrepareOptions{Use: jobs.UseRun, NoDrivers: true})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Line != 3 || !strings.Contains(ce.Msg, "shorten the version") {
		t.Fatalf("got %v, want an error at line 3", err)
	}
}

// TestChainResume: a chain run interrupted after its third cycle goes on
// with --resume past every link the recorded cycles may have used: its
// first cycle restores the link before over the probe (the bench cannot
// know what the board runs), the others need no probe, and sequence
// numbers keep rising to the end.
func TestChainResume(t *testing.T) {
	s, inv := startSims(t, 1, sim.InplaceRecovery)
	name := inv.Boards[0].Name
	factory(t, s.Boards[0], build(t, "2.0.0+c0", 1, 4<<10, 2))
	job := parseJob(t, soakJob(name, "chain", 6))
	w := map[string]power.CutWitness{name: simbench.Witness(s.Boards[0])}
	dir := t.TempDir()
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	run := func(ctx context.Context, recorded func(results.Cycle) error) *jobs.Report {
		prep, err := jobs.Prepare(context.Background(), job, inv, jobs.PrepareOptions{Use: jobs.UseRun, Witnesses: w})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := jobs.Execute(ctx, jobs.RunOptions{
			Prepared: prep, Resume: true, Recorded: recorded,
			Run:    results.RunInfo{ID: fmt.Sprintf("r%d", simSeq.Add(1)), Job: job.Name, JobHash: "chain-resume", Started: time.Now()},
			OutDir: dir, DB: db, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
			Tx:        coap.Transmission{AckTimeout: 300 * time.Millisecond, MaxRetransmit: 2},
			Witnesses: w,
		})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := run(ctx, func(c results.Cycle) error {
		if c.Cycle == 3 {
			cancel()
		}
		return nil
	})
	if !first.Interrupted || len(first.Cycles) != 3 {
		t.Fatalf("first run: interrupted %v with %d cycles, want 3", first.Interrupted, len(first.Cycles))
	}
	if h := running(t, s.Boards[0], 4<<10); h.Seq != 4 {
		t.Fatalf("after 3 cycles the device runs %s seq %d, want seq 4", h.Version, h.Seq)
	}
	rep := run(context.Background(), nil)
	if rep.Run.ID != first.Run.ID || len(rep.Cycles) != 6 {
		t.Fatalf("resumed run %s with %d cycles, want %s with 6", rep.Run.ID, len(rep.Cycles), first.Run.ID)
	}
	for _, c := range rep.Cycles {
		want := 0
		if c.Cycle == 4 {
			want = 1 // link 5 restored: the resumed run starts past links 1-5
		}
		if c.Outcome != results.Updated || c.ProbeUses != want {
			t.Errorf("cycle %d: %s (%s), probe %d, want updated, probe %d", c.Cycle, c.Outcome, c.Reason, c.ProbeUses, want)
		}
	}
	// Three cycles recorded used links 1-3; the resumed run skips 4 and
	// 5 (what an interrupted cycle may have used) and pushes 6, 7, 8.
	if h := running(t, s.Boards[0], 4<<10); h.Seq != 9 || h.Version != "2.0.0+c8" {
		t.Errorf("the device runs %s seq %d, want 2.0.0+c8 seq 9", h.Version, h.Seq)
	}
}
