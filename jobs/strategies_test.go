package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// TestDeviceWorkCuts runs one plan — no cut, cuts during the transfer,
// and a sweep through the device's own update work after the last block —
// on each update strategy of the simulated board, and checks what each
// strategy promises: the A/B schemes and the recovery bootloader never
// brick, naive in place does; every device_work cut lands (the bench
// measured the work first), and the timeline carries what the strategy
// table needs.
func TestDeviceWorkCuts(t *testing.T) {
	type want struct {
		mayBrick, mustBrick bool
		outcomes            []results.Outcome
	}
	cases := map[sim.Strategy]want{
		sim.InplaceRecovery: {outcomes: []results.Outcome{results.Updated}},
		sim.NaiveInplace:    {mayBrick: true, mustBrick: true, outcomes: []results.Outcome{results.Updated, results.Bricked}},
		sim.ABOverwrite:     {outcomes: []results.Outcome{results.Updated}},
		sim.ABSwap:          {outcomes: []results.Outcome{results.Updated, results.RolledBack}},
		sim.ABDirect:        {outcomes: []results.Outcome{results.Updated, results.RolledBack}},
	}
	for _, st := range []sim.Strategy{sim.InplaceRecovery, sim.NaiveInplace, sim.ABOverwrite, sim.ABSwap, sim.ABDirect} {
		w := cases[st]
		t.Run(string(st), func(t *testing.T) {
			s, inv := startSims(t, 1, st)
			name := inv.Boards[0].Name
			profile := "block1"
			if st == sim.InplaceRecovery {
				profile = "resumable"
			}
			job := parseJob(t, fmt.Sprintf(`
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 6KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 6KiB, seed: 2}}
block_size: 512
profile: %s
cuts:
  - none
  - after_block: {from: 0, to: last, step: 4}
  - device_work: {from: 0%%, to: 100%%, step: 10%%}
off_time: 5ms
recovery_timeout: 500ms
accept: {"*": [updated, rolled-back, bricked]}
`, name, profile))
			dir := t.TempDir()
			db, err := results.OpenDB(filepath.Join(dir, "results.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var mu sync.Mutex
			var evs []results.Event
			witnesses := map[string]power.CutWitness{name: simbench.Witness(s.Boards[0])}
			prep, err := jobs.Prepare(context.Background(), job, inv, jobs.PrepareOptions{Use: jobs.UseRun, Witnesses: witnesses})
			if err != nil {
				t.Fatal(err)
			}
			prep.Baseline, prep.Update = build(t, "1.0.0", 1, 6<<10, 1), build(t, "2.0.0", 2, 6<<10, 2)
			rep, err := jobs.Execute(context.Background(), jobs.RunOptions{
				Prepared: prep,
				Run:      results.RunInfo{ID: fmt.Sprintf("r%d", simSeq.Add(1)), Job: "strategies", JobHash: "h", Started: time.Now()},
				OutDir:   dir, DB: db, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
				Tx:        coap.Transmission{AckTimeout: 300 * time.Millisecond, MaxRetransmit: 2},
				Witnesses: witnesses,
				Sinks:     []results.Sink{results.SinkFunc(func(e results.Event) { mu.Lock(); evs = append(evs, e); mu.Unlock() })},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Cycles) != 1+3+11 {
				t.Fatalf("%d cycles, want 15", len(rep.Cycles))
			}
			counts := map[results.Outcome]int{}
			for _, c := range rep.Cycles {
				counts[c.Outcome]++
				ok := false
				for _, o := range w.outcomes {
					ok = ok || c.Outcome == o
				}
				if !ok {
					t.Errorf("cycle %d (%s): %s (%s)", c.Cycle, c.Plan, c.Outcome, c.Reason)
				}
				if c.Plan != "none" && c.Cut == nil {
					t.Errorf("cycle %d (%s): no cut fired (%s)", c.Cycle, c.Plan, c.Missed)
				}
				// Updated after a cut means the bench saw the new image run
				// after power came back, having sent every block since.
				if c.Plan != "none" && c.Outcome == results.Updated && c.RecoveryVersion <= 0 {
					t.Errorf("cycle %d (%s): updated, but the new version was never seen running after the cut", c.Cycle, c.Plan)
				}
			}
			if w.mustBrick && counts[results.Bricked] == 0 {
				t.Errorf("no cut bricked the board: %v", counts)
			}
			t.Logf("%s: %v", st, counts)
			var info, cost bool
			for _, e := range evs {
				switch e.Kind {
				case results.DeviceInfo:
					info = e.Text == string(st) && e.Attrs["space"] != "" && e.Attrs["cache"] != ""
				case results.FlashCost:
					if n, _ := strconv.Atoi(e.Attrs["boot_ops"]); n > 0 {
						cost = true
					}
				}
			}
			if !info || !cost {
				t.Errorf("timeline: device info %v, flash cost with boot_ops %v", info, cost)
			}
		})
	}
}

// TestDeviceWorkNeedsAnArmer: a device_work cut on a board whose device
// cannot lose power at one of its own flash operations is refused at the
// cut's line before anything is powered.
func TestDeviceWorkNeedsAnArmer(t *testing.T) {
	_, inv := startSims(t, 1, sim.ABSwap)
	name := inv.Boards[0].Name
	job := parseJob(t, fmt.Sprintf(`boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 6KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 6KiB, seed: 2}}
cuts:
  - none
  - device_work: 50%%
`, name))
	// No witness: the board's gpio power switch knows nothing of its flash.
	_, err := jobs.Prepare(context.Background(), job, inv, jobs.PrepareOptions{Use: jobs.UseRun})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Line != 6 || ce.Column != 5 || !strings.Contains(ce.Msg, "cannot lose power at one of its own flash operations") || !strings.Contains(ce.Msg, name) {
		t.Fatalf("got %v, want an error at 6:5 naming the board", err)
	}
}
