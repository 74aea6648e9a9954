package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// TestQBlockCampaign runs a campaign on an inplace-recovery board that
// takes its image in Q-Block1 bursts, through a lossy link: cuts where a
// burst ends and cuts timed into a burst all land and end updated, lost
// blocks are listed by the device and sent again, and the recovery
// bootloader resumes from its journal (the blocks held in RAM past a gap
// are lost with the power, never counted as taken).
func TestQBlockCampaign(t *testing.T) {
	_, inv := startSims(t, 1, sim.InplaceRecovery)
	bd := inv.Boards[0]
	bd.CoAP.QBlock = &boards.QBlock{} // MAX_PAYLOADS 10, the device's
	job := parseJob(t, fmt.Sprintf(`
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 6KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 30KiB, seed: 2}}
block_size: 1024
link: {loss: 5%%, delay: 10ms, seed: 3}
cuts:
  - none
  - after_block: {from: 9, to: 19, step: 10}
  - after_block: last
  - at_time: {from: 10ms, to: 40ms, step: 15ms}
off_time: 5ms
recovery_timeout: 5s
missed_cut: fail
`, bd.Name))
	dir := t.TempDir()
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mu sync.Mutex
	var sent, again int
	rep, err := jobs.Execute(context.Background(), jobs.RunOptions{
		Prepared: mustPrepare(t, job, inv, nil, nil),
		Run:      results.RunInfo{ID: fmt.Sprintf("r%d", simSeq.Add(1)), Job: "qblock", JobHash: "h", Started: time.Now()},
		OutDir:   dir, DB: db, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
		Tx: coap.Transmission{AckTimeout: 200 * time.Millisecond, MaxRetransmit: 4},
		Sinks: []results.Sink{results.SinkFunc(func(e results.Event) {
			mu.Lock()
			defer mu.Unlock()
			if e.Kind == results.BlockSent {
				sent++
				if strings.Contains(e.Text, "q-block1") {
					again++
				}
			}
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cycles) != 7 {
		t.Fatalf("%d cycles, want 7", len(rep.Cycles))
	}
	resumed := 0
	for _, c := range rep.Cycles {
		if c.Outcome != results.Updated || c.Missed != "" {
			t.Errorf("cycle %d (%s): %s (%s%s)", c.Cycle, c.Plan, c.Outcome, c.Reason, c.Missed)
		}
		if c.Plan != "none" && c.Cut == nil {
			t.Errorf("cycle %d (%s): no cut", c.Cycle, c.Plan)
		}
		if len(c.Resumes) > 0 {
			resumed++
		}
		t.Logf("cycle %d %-18s %s: %d blocks sent, %d again, resumed at %v", c.Cycle, c.Plan, c.Outcome, c.BlocksSent, c.BlocksResent, c.Resumes)
	}
	mu.Lock()
	defer mu.Unlock()
	if again == 0 {
		t.Errorf("no block was sent again over a link losing 5%% (%d blocks sent)", sent)
	}
	t.Logf("%d blocks sent, %d of them again after the device listed them missing", sent, again)
}

// TestQBlockRefusesBlockCuts: a cut at a block inside a burst cannot land
// and is refused before anything is powered, at its line, with the blocks
// where bursts end.
func TestQBlockRefusesBlockCuts(t *testing.T) {
	_, inv := startSims(t, 1, sim.InplaceRecovery)
	bd := inv.Boards[0]
	bd.CoAP.QBlock = &boards.QBlock{}
	job := parseJob(t, fmt.Sprintf(`
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 6KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 30KiB, seed: 2}}
block_size: 1024
cuts:
  - after_block: 9
  - during_block: {block: 12}
`, bd.Name))
	_, err := jobs.Prepare(context.Background(), job, inv, jobs.PrepareOptions{Use: jobs.UseRun})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Line != 8 || !strings.Contains(err.Error(), "during_block 12") ||
		!strings.Contains(err.Error(), "cannot land while that block is written") {
		t.Fatalf("err %v", err)
	}
	job = parseJob(t, fmt.Sprintf(`
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 6KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 30KiB, seed: 2}}
block_size: 1024
cuts:
  - after_block: {from: 9, to: 29, step: 10}
  - after_block: {from: 0, to: 4}
`, bd.Name))
	_, err = jobs.Prepare(context.Background(), job, inv, jobs.PrepareOptions{Use: jobs.UseRun})
	if !errors.As(err, &ce) || ce.Line != 8 || !strings.Contains(err.Error(), "after_block 0") ||
		!strings.Contains(err.Error(), "bursts of 10 blocks") || !strings.Contains(err.Error(), "blocks 9, 19, … and the last, 29") {
		t.Fatalf("err %v", err)
	}
}
