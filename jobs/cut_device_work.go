package jobs

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/results"
)

// device_work: P% | {from: P%, to: P%, step: P%}
//
// Power goes at one of the device's own flash operations after the last
// block is sent: the last block's write, then the work the device does on
// its own to make the new image run — a recovery bootloader's verify and
// completion marks, an A/B bootloader's copy or swap of the slots, the
// new image confirming itself. P is the place in that work: 0% its first
// flash operation, 100% its last. The bench counts the work with one
// update without a cut before the first such cut on a board
// (bench.Board.BootOps), and the device loses power exactly at the
// operation (a device that can arm a cut at its own flash operation: the
// simulated boards).
func init() {
	registerCut(&cutKind{
		name: "device_work",
		decode: func(d *config.Decoder, f config.Field, w string) (cutSpec, error) {
			return decodeDeviceWork(d, f.Val, w)
		},
		draw: &drawer{share: DeviceWork},
	})
}

// deviceWorkSpec is a sweep in tenths of a percent.
type deviceWorkSpec struct{ from, to, step int }

// shareWindow reads the {from, to} window random: draws device_work cuts
// from (default 0% to 100%).
func shareWindow(d *config.Decoder, n ast.Node, w string) (deviceWorkSpec, error) {
	fs, err := d.Fields(n, w, "from", "to")
	if err != nil {
		return deviceWorkSpec{}, err
	}
	s := deviceWorkSpec{0, 1000, 1}
	for k, dst := range map[string]*int{"from": &s.from, "to": &s.to} {
		if f, ok := fs[k]; ok {
			if *dst, err = permille(d, f.Val, w+"."+k); err != nil {
				return s, err
			}
		}
	}
	if s.from > s.to {
		return s, d.Errf(n, "%s: from %s is after to %s", w, pct(s.from), pct(s.to))
	}
	return s, nil
}

func decodeDeviceWork(d *config.Decoder, n ast.Node, w string) (cutSpec, error) {
	if !d.IsMap(n) {
		v, err := permille(d, n, w)
		return deviceWorkSpec{v, v, 1}, err
	}
	fs, err := d.Fields(n, w, "from", "to", "step")
	if err != nil {
		return nil, err
	}
	s := deviceWorkSpec{0, 1000, 100}
	for k, dst := range map[string]*int{"from": &s.from, "to": &s.to, "step": &s.step} {
		if f, ok := fs[k]; ok {
			if *dst, err = permille(d, f.Val, w+"."+k); err != nil {
				return nil, err
			}
		}
	}
	if s.step == 0 {
		return nil, d.Errf(fs["step"].Val, "%s.step: 0%% would never end; want more than 0%%", w)
	}
	if s.from > s.to {
		return nil, d.Errf(n, "%s: from %s is after to %s", w, pct(s.from), pct(s.to))
	}
	return s, nil
}

// permille reads a percentage from 0% to 100% with at most one decimal
// ("12.5%") as tenths of a percent.
func permille(d *config.Decoder, n ast.Node, w string) (int, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return 0, err
	}
	s, ok := r.(*ast.StringNode)
	if !ok || !strings.HasSuffix(s.Value, "%") {
		return 0, d.Errf(n, "%s: want a percentage of the device's update work such as 40%%, got %s", w, config.KindName(r))
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s.Value, "%"), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 100 {
		return 0, d.Errf(n, "%s: %q: want 0%% to 100%%", w, s.Value)
	}
	v := f * 10
	if math.Abs(v-math.Round(v)) > 1e-9 {
		return 0, d.Errf(n, "%s: %q: at most one decimal (12.5%%)", w, s.Value)
	}
	return int(math.Round(v)), nil
}

func pct(pm int) string {
	if pm%10 == 0 {
		return fmt.Sprintf("%d%%", pm/10)
	}
	return fmt.Sprintf("%d.%d%%", pm/10, pm%10)
}

func (s deviceWorkSpec) count(*Job, uint32, string) (int64, error) {
	return int64((s.to-s.from)/s.step + 1), nil
}

func (s deviceWorkSpec) expand(_ *Job, blocks uint32, _ string, _ *rand.Rand, add func(bench.Cut)) error {
	for p := s.from; p <= s.to; p += s.step {
		add(DeviceWork(p, blocks))
	}
	return nil
}

func (deviceWorkSpec) check(*Job, *boards.Board, string) error { return nil }

// DeviceWork is the cut at permille tenths of a percent of the device's own
// update work, for an image of blocks blocks.
func DeviceWork(permille int, blocks uint32) bench.Cut {
	return deviceWork{pm: permille, blocks: blocks}
}

type deviceWork struct {
	pm     int
	blocks uint32
}

func (c deviceWork) String() string { return "device_work " + pct(c.pm) }
func (c deviceWork) Block() int64   { return -1 }
func (c deviceWork) DeviceWork()    {}

// op is the flash operation, from 1, that the cut falls on for a device
// whose update work takes total operations.
func (c deviceWork) op(total uint64) uint64 {
	return min(max(uint64(math.Round(float64(c.pm)/1000*float64(total))), 1), total)
}

func (c deviceWork) Trigger(b *bench.Board) (bench.Trigger, error) {
	armer, ok := b.Witness.(power.CutArmer)
	if !ok {
		return nil, fmt.Errorf("board %s cannot lose power at one of its own flash operations (a simulated board can); on real hardware cut on the flash-busy line (on_gpio)", b.Name)
	}
	if b.BootOps == 0 {
		return nil, fmt.Errorf("board %s: the device's own update work has not been measured", b.Name)
	}
	if c.blocks == 0 {
		return nil, fmt.Errorf("board %s: an image of no blocks", b.Name)
	}
	n := c.op(b.BootOps)
	return &deviceWorkTrigger{c: c, armer: armer, nth: n,
		name: fmt.Sprintf("%s (flash operation %d of %d after the last block)", c, n, b.BootOps)}, nil
}

func (c deviceWork) Missed(cut *results.CutInfo) string {
	if cut == nil {
		return "the cut never fired: the device's update work ended before the planned flash operation"
	}
	return ""
}

// deviceWorkTrigger arms the device's cut as the last block is sent.
type deviceWorkTrigger struct {
	c     deviceWork
	armer power.CutArmer
	nth   uint64
	name  string

	mu     sync.Mutex
	ctx    context.Context
	fire   bench.Fire
	armed  bool
	disarm func()
	done   bool
}

func (t *deviceWorkTrigger) String() string     { return t.name }
func (t *deviceWorkTrigger) ThroughDeviceWork() {}

func (t *deviceWorkTrigger) Arm(ctx context.Context, fire bench.Fire) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ctx, t.fire = ctx, fire
	return nil
}

// Sent arms the device's cut when the last block goes: the work counted
// starts with that block's write.
func (t *deviceWorkTrigger) Sent(num uint32, _ time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.armed || t.done || num != t.c.blocks-1 {
		return
	}
	t.armed = true
	why := t.name
	fire := t.fire
	disarm, err := t.armer.ArmCut(t.ctx, t.nth, func(at time.Time) { fire(at, why) })
	if err != nil {
		return // never fires: the cycle is a missed cut
	}
	t.disarm = disarm
}

func (t *deviceWorkTrigger) Acked(uint32, time.Time) bool { return false }

func (t *deviceWorkTrigger) Disarm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	if t.disarm != nil {
		t.disarm()
		t.disarm = nil
	}
}
