package bench_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/jobs"
	_ "github.com/fudbench/fudbench/power/scpi"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// TestEnergyMatchesTheBoardsCharge: the energy the bench adds up from the
// supply's readings (every 5 ms, over SCPI) agrees with the charge the
// simulated board drew, integrated exactly at every change of its state,
// times its supply's voltage.
func TestEnergyMatchesTheBoardsCharge(t *testing.T) {
	base, up := img(t, "1.0.0", 1, 4<<10, 1), img(t, "2.0.0", 2, 16<<10, 2)
	sb, b, mem := simBoard(t, sim.Config{TimeScale: 1, Supply: true}, base)
	c0 := sb.Charge()
	res := b.Run(context.Background(), bench.Update{Profile: boards.ProfileResumable, Image: up, SZX: 6, RecoveryTimeout: 5 * time.Second, Sample: 5 * time.Millisecond})
	c1 := sb.Charge()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	e := res.Energy
	if e == nil {
		t.Fatal("no energy measured")
	}
	want := 3.3 * (c1 - c0)
	t.Logf("bench %.3f mJ from %d readings, board %.3f mJ; peak %.2f mA", 1e3*e.Joules, e.Samples, 1e3*want, 1e3*e.PeakAmps)
	// The readings stop up to one interval before the update ends.
	if math.Abs(e.Joules-want) > 0.1*want || e.Recovery != 0 {
		t.Errorf("bench measured %.3f mJ (recovery %.3f), the board drew %.3f mJ", 1e3*e.Joules, 1e3*e.Recovery, 1e3*want)
	}
	readings := 0
	for _, ev := range mem.Events() {
		if ev.Kind == results.PowerReading {
			readings++
			if ev.Attrs["volts"] != "3.3" {
				t.Errorf("reading %v", ev.Attrs)
				break
			}
		}
	}
	if readings != e.Samples || readings < 10 {
		t.Errorf("%d readings on the timeline, %d counted", readings, e.Samples)
	}
}

// TestBrownoutResets: below the brownout-reset threshold the device
// resets as after a cut; the bench sees it in the device's own record and
// follows its recovery, which has its energy.
func TestBrownoutResets(t *testing.T) {
	base, up := img(t, "1.0.0", 1, 4<<10, 1), img(t, "2.0.0", 2, 16<<10, 2)
	sb, b, _ := simBoard(t, sim.Config{TimeScale: 1, Supply: true}, base)
	res := b.Run(context.Background(), bench.Update{Profile: boards.ProfileResumable, Image: up, SZX: 6,
		Trigger: trig(t, b, jobs.DuringBlock(5, 2*time.Millisecond)), RecoveryTimeout: 5 * time.Second,
		Brownout: &bench.Brownout{To: 1.5, For: 20 * time.Millisecond}, Sample: 5 * time.Millisecond})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if res.Cut == nil || !strings.HasSuffix(res.Cut.Trigger, ", brownout to 1.5V for 20ms") || res.Cut.Device == nil || res.Cut.Device.Writing != 5 {
		t.Fatalf("cut %+v (device %+v): want the device's record of a reset while writing block 5", res.Cut, res.Cut.Device)
	}
	if _, ok := res.Milestones[bench.MilestoneCoAP]; !ok {
		t.Errorf("no recovery followed: %v", res.Milestones)
	}
	if res.Energy == nil || res.Energy.Recovery <= 0 || res.Energy.Recovery >= res.Energy.Joules {
		t.Errorf("energy %+v: want a recovery share", res.Energy)
	}
	if cuts := sb.Cuts(); len(cuts) != 1 || cuts[0].Cause != sim.ResetBrownout {
		t.Errorf("board's record %+v", cuts)
	}
}

// TestBrownoutMarginal: between the brownout threshold and the flash's
// minimum voltage the device runs on and the transfer with it; the block
// written meanwhile keeps wrong bits, the recovery bootloader refuses the
// image by its digest, and the bench sends it again with a new prepare.
func TestBrownoutMarginal(t *testing.T) {
	base, up := img(t, "1.0.0", 1, 4<<10, 1), img(t, "2.0.0", 2, 16<<10, 2)
	sb, b, mem := simBoard(t, sim.Config{TimeScale: 1, Supply: true}, base)
	res := b.Run(context.Background(), bench.Update{Profile: boards.ProfileResumable, Image: up, SZX: 6,
		Trigger: trig(t, b, jobs.DuringBlock(5, 2*time.Millisecond)), RecoveryTimeout: 5 * time.Second,
		Brownout: &bench.Brownout{To: 2.1, For: 20 * time.Millisecond}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if res.Cut == nil || res.Cut.Device != nil || len(sb.Cuts()) != 0 {
		t.Fatalf("cut %+v, board's record %+v: want no reset", res.Cut, sb.Cuts())
	}
	if len(res.Milestones) != 0 && res.Milestones[bench.MilestoneCoAP] != 0 {
		t.Errorf("a recovery was followed although the device never reset: %v", res.Milestones)
	}
	refused := false
	for _, e := range mem.Events() {
		refused = refused || e.Kind == results.Note && strings.Contains(e.Text, "refused the image after the cut")
	}
	if !refused || res.BlocksResent < int(res.Blocks)-1 {
		t.Errorf("refused %v, re-sent %d of %d blocks: want the image sent again whole", refused, res.BlocksResent, res.Blocks)
	}
	if in := sb.Info(); in.WeakPrograms == 0 {
		t.Errorf("no program ran at the marginal voltage: %+v", in)
	}
}

// TestBrownoutNeedsASupply: a brownout on a switch that cannot set a
// voltage is the bench's failure, never the device's.
func TestBrownoutNeedsASupply(t *testing.T) {
	base, up := img(t, "1.0.0", 1, 4<<10, 1), img(t, "2.0.0", 2, 16<<10, 2)
	_, b, _ := simBoard(t, sim.Config{}, base)
	res := b.Run(context.Background(), bench.Update{Profile: boards.ProfileResumable, Image: up, SZX: 6,
		Trigger: trig(t, b, jobs.AfterBlock(3)), RecoveryTimeout: 5 * time.Second,
		Brownout: &bench.Brownout{To: 1.5, For: 20 * time.Millisecond}})
	if !res.Infra || res.Err == nil || !strings.Contains(res.Err.Error(), "a brownout cut needs a supply that sets its voltage") {
		t.Fatalf("infra %v, err %v", res.Infra, res.Err)
	}
}

// BenchmarkSupply measures what a measuring supply costs an update, on a
// simulated board behind its SCPI emulator at its real flash timing: the
// update's time with readings every 5 ms against none (alternating, one
// of each per iteration), one reading's round trip, and the cut latency
// (trigger to the supply's answer) of a brownout against a switch-off,
// both over SCPI.
func BenchmarkSupply(b *testing.B) {
	_, bd, _ := simBoard(b, sim.Config{TimeScale: 1, Supply: true}, img(b, "1.0.0", 1, 4<<10, 1))
	// Each update a newer image: anti-rollback stays on.
	seq := uint32(1)
	next := func() []byte {
		seq++
		return img(b, fmt.Sprintf("2.%d.0", seq), seq, 16<<10, int64(seq))
	}
	var plain, sampled, offLat, boLat time.Duration
	for b.Loop() {
		for _, every := range []time.Duration{0, 5 * time.Millisecond} {
			up := next()
			t0 := time.Now()
			res := bd.Run(context.Background(), bench.Update{Profile: boards.ProfileResumable, Image: up, SZX: 6, RecoveryTimeout: 5 * time.Second, Sample: every})
			if res.Err != nil {
				b.Fatal(res.Err)
			}
			if every == 0 {
				plain += time.Since(t0)
			} else {
				sampled += time.Since(t0)
			}
		}
		for _, bo := range []*bench.Brownout{nil, {To: 1.5, For: 5 * time.Millisecond}} {
			res := bd.Run(context.Background(), bench.Update{Profile: boards.ProfileResumable, Image: next(), SZX: 6, RecoveryTimeout: 5 * time.Second,
				Trigger: trig(b, bd, jobs.AfterBlock(3)), OffTime: 5 * time.Millisecond, Brownout: bo})
			if res.Err != nil || res.Cut == nil {
				b.Fatalf("cut %+v: %v", res.Cut, res.Err)
			}
			if bo == nil {
				offLat += res.Cut.Latency
			} else {
				boLat += res.Cut.Latency
			}
		}
	}
	m := bd.Meter()
	const reads = 200
	t0 := time.Now()
	for range reads {
		if _, err := m.Measure(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(plain.Milliseconds())/n, "update_ms")
	b.ReportMetric(float64(sampled.Milliseconds())/n, "update_sampled_ms")
	b.ReportMetric(float64(sampled)/float64(plain), "sampled/plain")
	b.ReportMetric(float64(time.Since(t0).Microseconds())/reads, "reading_us")
	b.ReportMetric(float64(offLat.Microseconds())/n, "off_latency_us")
	b.ReportMetric(float64(boLat.Microseconds())/n, "brownout_latency_us")
}
