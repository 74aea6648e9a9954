package jobs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/power"
	_ "github.com/fudbench/fudbench/power/gpio"
	_ "github.com/fudbench/fudbench/probes/gdbrsp"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

var simSeq atomic.Int64

// startSims starts n in-process simulated boards (time scale 0) and
// returns them with their inventory, as `fudbench run` wires them.
func startSims(t testing.TB, n int, strategy sim.Strategy) (*sim.Sim, *boards.Bench) {
	t.Helper()
	var cfgs []sim.Config
	for i := 0; i < n; i++ {
		cfgs = append(cfgs, sim.Config{
			Name: fmt.Sprintf("x%d-%d", simSeq.Add(1), i), Strategy: strategy, Pins: true,
			UDPAddrs: []string{"127.0.0.1:0"}, DTLSAddr: "-", StateDir: t.TempDir(),
		})
	}
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
	inv, err := boards.Parse("(test bench)", text)
	if err != nil {
		t.Fatal(err)
	}
	return s, inv
}

func build(t testing.TB, v string, seq uint32, size int, seed int64) []byte {
	t.Helper()
	img, err := fwimage.Build(fwimage.Spec{Version: v, Seq: seq, Size: size, Seed: seed}, fwimage.DevKey())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func execute(t testing.TB, job *jobs.Job, inv *boards.Bench, base, upd []byte) *jobs.Report {
	t.Helper()
	return executePrepared(t, job, mustPrepare(t, job, inv, base, upd))
}

// executePrepared runs a prepared job into a fresh results database.
func executePrepared(t testing.TB, job *jobs.Job, p *jobs.Prepared) *jobs.Report {
	t.Helper()
	rep, _ := executeInto(t, job, p, nil)
	return rep
}

// executeInto runs a prepared job with the boards' witnesses (nil: none)
// into a fresh results database, and returns the cycles stored there
// with the report.
func executeInto(t testing.TB, job *jobs.Job, p *jobs.Prepared, w map[string]power.CutWitness) (*jobs.Report, []results.Cycle) {
	t.Helper()
	dir := t.TempDir()
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rep, err := jobs.Execute(context.Background(), jobs.RunOptions{
		Prepared: p,
		Run:      results.RunInfo{ID: fmt.Sprintf("r%d", simSeq.Add(1)), Job: job.Name, JobHash: "h", Started: time.Now()},
		OutDir:   dir, DB: db, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
		Tx:        coap.Transmission{AckTimeout: 300 * time.Millisecond, MaxRetransmit: 2},
		Witnesses: w,
	})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := db.Cycles(rep.Run.ID)
	if err != nil {
		t.Fatal(err)
	}
	return rep, stored
}

// mustPrepare prepares job on inv as `fudbench run` does; base and upd,
// when not nil, replace the images the job builds.
func mustPrepare(t testing.TB, job *jobs.Job, inv *boards.Bench, base, upd []byte) *jobs.Prepared {
	t.Helper()
	p, err := jobs.Prepare(context.Background(), job, inv, jobs.PrepareOptions{Use: jobs.UseRun})
	if err != nil {
		t.Fatal(err)
	}
	if base != nil {
		p.Baseline = base
	}
	if upd != nil {
		p.Update = upd
	}
	return p
}

func parseJob(t testing.TB, text string) *jobs.Job {
	t.Helper()
	j, err := jobs.Parse("job.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestSweepAfterEveryBlock cuts after every block of a small image on an
// inplace-recovery board: every cycle ends updated and no block is sent
// twice after an after_block cut.
func TestSweepAfterEveryBlock(t *testing.T) {
	_, inv := startSims(t, 1, sim.InplaceRecovery)
	name := inv.Boards[0].Name
	job := parseJob(t, fmt.Sprintf(`
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 6KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 6KiB, seed: 2}}
block_size: 512
cuts:
  - after_block: {from: 0, to: last}
off_time: 5ms
recovery_timeout: 2s
`, name))
	rep := execute(t, job, inv, build(t, "1.0.0", 1, 6<<10, 1), build(t, "2.0.0", 2, 6<<10, 2))
	if len(rep.Cycles) != 12 {
		t.Fatalf("%d cycles, want 12", len(rep.Cycles))
	}
	for _, c := range rep.Cycles {
		if c.Outcome != results.Updated || !c.Accepted {
			t.Errorf("cycle %d (%s): %s %s", c.Cycle, c.Plan, c.Outcome, c.Reason)
		}
		if c.Cut == nil || c.Cut.LastAcked != c.PlannedBlock {
			t.Errorf("cycle %d: cut %+v, planned block %d", c.Cycle, c.Cut, c.PlannedBlock)
		}
		if c.BlocksResent != 0 {
			t.Errorf("cycle %d: %d blocks re-sent after an after_block cut", c.Cycle, c.BlocksResent)
		}
		if c.PlannedBlock < 11 && (len(c.Resumes) != 1 || int64(c.Resumes[0]) != c.PlannedBlock+1) {
			t.Errorf("cycle %d: resumed at %v, want %d", c.Cycle, c.Resumes, c.PlannedBlock+1)
		}
	}
	if rep.Summary.Verdict != results.VerdictPass {
		t.Errorf("verdict %s", rep.Summary.Verdict)
	}
}

// TestNaiveBricksAndIsReflashed: cuts mid-transfer brick a naive board;
// the executor reflashes it over its GDB port and the next cycle starts
// from the baseline again.
func TestNaiveBricksAndIsReflashed(t *testing.T) {
	_, inv := startSims(t, 1, sim.NaiveInplace)
	name := inv.Boards[0].Name
	job := parseJob(t, fmt.Sprintf(`
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 8KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 8KiB, seed: 2}}
profile: block1
cuts:
  - after_block: {from: 1, to: 3}
  - none
off_time: 5ms
recovery_timeout: 500ms
accept: {"*": [updated, bricked]}
`, name))
	rep := execute(t, job, inv, build(t, "1.0.0", 1, 8<<10, 1), build(t, "2.0.0", 2, 8<<10, 2))
	want := []results.Outcome{results.Bricked, results.Bricked, results.Bricked, results.Updated}
	for i, c := range rep.Cycles {
		if c.Outcome != want[i] {
			t.Errorf("cycle %d (%s): %s (%s), want %s", c.Cycle, c.Plan, c.Outcome, c.Reason, want[i])
		}
		if c.Outcome == results.Bricked && !c.Reflashed {
			t.Errorf("cycle %d: bricked but not reflashed", c.Cycle)
		}
	}
}
