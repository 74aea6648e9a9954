package jobs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fudbench/fudbench/bench/update"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/boards/sim"
	"github.com/fudbench/fudbench/boards/sim/image"
	"github.com/fudbench/fudbench/jobs"
	_ "github.com/fudbench/fudbench/power/gpio"
	_ "github.com/fudbench/fudbench/probes/gdbrsp"
	"github.com/fudbench/fudbench/results"
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
	text, err := sim.Inventory(s.Boards)
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
	img, err := image.Build(image.Spec{Version: v, Seq: seq, Size: size, Seed: seed}, image.DevKey())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func execute(t testing.TB, job *jobs.Job, inv *boards.Bench, base, upd []byte) *jobs.Report {
	t.Helper()
	dir := t.TempDir()
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rep, err := jobs.Execute(context.Background(), jobs.RunOptions{
		Job: job, Inventory: inv, Baseline: base, Update: upd,
		Run:    results.RunInfo{ID: fmt.Sprintf("r%d", simSeq.Add(1)), Job: job.Name, JobHash: "h", Started: time.Now()},
		OutDir: dir, DB: db, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
		Tx: update.Transmission{AckTimeout: 300 * time.Millisecond, MaxRetransmit: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
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

// BenchmarkCyclesPerMinute runs after_block cycles on 1, 8 and 64 sim
// boards in parallel (time scale 0) and reports complete cut-and-recover
// cycles per minute and the peak heap.
func BenchmarkCyclesPerMinute(b *testing.B) {
	for _, n := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("boards%d", n), func(b *testing.B) {
			_, inv := startSims(b, n, sim.InplaceRecovery)
			var names string
			for i, bd := range inv.Boards {
				if i > 0 {
					names += ", "
				}
				names += bd.Name
			}
			job := parseJob(b, fmt.Sprintf(`
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 4KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 4KiB, seed: 2}}
block_size: 512
cuts:
  - after_block: {from: 0, to: 5}
off_time: 1ms
recovery_timeout: 5s
`, names))
			base, upd := build(b, "1.0.0", 1, 4<<10, 1), build(b, "2.0.0", 2, 4<<10, 2)
			var peak uint64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				var ms runtime.MemStats
				for {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}()
			cycles := 0
			start := time.Now()
			for b.Loop() {
				rep := execute(b, job, inv, base, upd)
				for _, c := range rep.Cycles {
					if c.Outcome != results.Updated {
						b.Fatalf("%s cycle %d: %s %s", c.Board, c.Cycle, c.Outcome, c.Reason)
					}
				}
				cycles += len(rep.Cycles)
			}
			el := time.Since(start)
			close(stop)
			<-done
			b.ReportMetric(float64(cycles)/el.Minutes(), "cycles/min")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}
