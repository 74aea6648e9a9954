package jobs_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// TestLossyLinkCampaign runs a short campaign on an inplace-recovery
// board through a link that loses 5% of the datagrams each way and delays
// them 20 ms: every cycle still ends updated (a lossy link is not a
// brick), the timeline shows the drops, and the link's summaries agree
// with the loss and delay set, within the binomial 99.9% bound for the
// datagrams the campaign sent.
func TestLossyLinkCampaign(t *testing.T) {
	_, inv := startSims(t, 1, sim.InplaceRecovery)
	name := inv.Boards[0].Name
	job := parseJob(t, fmt.Sprintf(`
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 6KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 6KiB, seed: 2}}
block_size: 512
link: {loss: 5%%, delay: 20ms, seed: 7}
cuts:
  - none
  - after_block: {from: 1, to: 9, step: 4}
off_time: 5ms
recovery_timeout: 5s
`, name))
	dir := t.TempDir()
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mu sync.Mutex
	var evs []results.Event
	rep, err := jobs.Execute(context.Background(), jobs.RunOptions{
		Prepared: mustPrepare(t, job, inv, nil, nil),
		Run:      results.RunInfo{ID: fmt.Sprintf("r%d", simSeq.Add(1)), Job: "link", JobHash: "h", Started: time.Now()},
		OutDir:   dir, DB: db, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
		Tx:    coap.Transmission{AckTimeout: 200 * time.Millisecond, MaxRetransmit: 4},
		Sinks: []results.Sink{results.SinkFunc(func(e results.Event) { mu.Lock(); evs = append(evs, e); mu.Unlock() })},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cycles) != 4 {
		t.Fatalf("%d cycles, want 4", len(rep.Cycles))
	}
	for _, c := range rep.Cycles {
		if c.Outcome != results.Updated {
			t.Errorf("cycle %d (%s): %s (%s)", c.Cycle, c.Plan, c.Outcome, c.Reason)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var drops, blockDrops, summaries int
	var sent, lost, delivered uint64
	var delaySum time.Duration
	for _, e := range evs {
		switch e.Kind {
		case results.LinkDrop:
			drops++
			if e.Block >= 0 {
				blockDrops++
			}
		case results.LinkSummary:
			summaries++
			for _, p := range []string{"to_device.", "from_device."} {
				n := attr(t, e, p+"datagrams")
				sent += n
				lost += attr(t, e, p+"lost")
				d := attr(t, e, p+"delivered")
				delivered += d
				md, err := time.ParseDuration(e.Attrs[p+"mean_delay"])
				if err != nil {
					t.Fatalf("mean_delay %q", e.Attrs[p+"mean_delay"])
				}
				delaySum += md * time.Duration(d)
			}
		}
	}
	if summaries != 4 {
		t.Errorf("%d link summaries, want one a cycle", summaries)
	}
	if drops == 0 || uint64(drops) != lost {
		t.Errorf("%d link.drop events, %d datagrams lost", drops, lost)
	}
	bound := 3.29 * math.Sqrt(float64(sent)*0.05*0.95)
	mean := delaySum / time.Duration(max(delivered, 1))
	t.Logf("%d datagrams, %d lost (%.2f%%, set 5%%, bound ±%.0f), %d of them Block1 requests or answers; mean delay %v (set 20ms)",
		sent, lost, 100*float64(lost)/float64(sent), bound, blockDrops, mean)
	if math.Abs(float64(lost)-0.05*float64(sent)) > bound {
		t.Errorf("%d of %d lost, want %.0f ± %.0f", lost, sent, 0.05*float64(sent), bound)
	}
	if mean < 20*time.Millisecond || mean > 40*time.Millisecond {
		t.Errorf("mean delay %v, want about 20ms", mean)
	}
}

func attr(t *testing.T, e results.Event, k string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(e.Attrs[k], 10, 64)
	if err != nil {
		t.Fatalf("%s: attr %s = %q", e.Kind, k, e.Attrs[k])
	}
	return v
}

// TestLostExchangesAreTheLink: on a link that loses a fifth of the
// datagrams, with one retransmission an exchange, whole exchanges go
// unanswered; the bench sends such a block again as a new request instead
// of blaming the device, and every board — resumable in place, naive in
// place over block1, A/B over block1 — ends every uncut cycle updated.
func TestLostExchangesAreTheLink(t *testing.T) {
	for _, st := range []sim.Strategy{sim.InplaceRecovery, sim.NaiveInplace, sim.ABSwap} {
		t.Run(string(st), func(t *testing.T) {
			_, inv := startSims(t, 1, st)
			name := inv.Boards[0].Name
			job := parseJob(t, fmt.Sprintf(`
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 8KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 8KiB, seed: 2}}
block_size: 256
link: {loss: 20%%, seed: 11}
cuts: [none]
repeat: 3
off_time: 5ms
recovery_timeout: 5s
`, name))
			dir := t.TempDir()
			var mu sync.Mutex
			var evs []results.Event
			rep, err := jobs.Execute(context.Background(), jobs.RunOptions{
				Prepared: mustPrepare(t, job, inv, nil, nil),
				Run:      results.RunInfo{ID: fmt.Sprintf("r%d", simSeq.Add(1)), Job: "lost", JobHash: "h", Started: time.Now()},
				OutDir:   dir, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
				Tx:    coap.Transmission{AckTimeout: 40 * time.Millisecond, MaxRetransmit: 1},
				Sinks: []results.Sink{results.SinkFunc(func(e results.Event) { mu.Lock(); evs = append(evs, e); mu.Unlock() })},
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range rep.Cycles {
				if c.Outcome != results.Updated {
					t.Errorf("cycle %d: %s (%s)", c.Cycle, c.Outcome, c.Reason)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			again := 0
			for _, e := range evs {
				if e.Kind == results.BlockRetry && strings.Contains(e.Text, "sent again as a new request") {
					again++
				}
			}
			t.Logf("%s: %d blocks sent again after a lost exchange over %d cycles", st, again, len(rep.Cycles))
			if again == 0 {
				t.Error("no exchange was lost: the test does not test the resend")
			}
		})
	}
}
