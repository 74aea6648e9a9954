package jobs

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/results"
)

// A cut kind is defined once, in its own file (cut_after_block.go, …):
// how an entry of the job's cuts: list decodes, how it expands into one
// cut per cycle, what it needs of a board's wiring, how it describes
// itself, the trigger that fires it and how to tell whether it landed.
// Adding a kind is adding one file that calls registerCut in its init.
type cutKind struct {
	name string
	// decode reads the entry's value (what follows "after_block:").
	decode func(d *config.Decoder, f config.Field, w string) (cutSpec, error)
	// draw, when not nil, makes the cut a random: entry drew for this
	// kind.
	draw *drawer
}

// drawer says how a random: entry draws cuts of a kind: a block from a
// block window (with a delay when delay is set), or an instant from a
// time window.
type drawer struct {
	byTime bool
	delay  bool
	cut    func(block int64, delay, at time.Duration) bench.Cut
	// share, when not nil, draws a place in the device's own update work
	// (tenths of a percent) instead: blocks, delays and times unused.
	share func(permille int, blocks uint32) bench.Cut
}

// cutSpec is one decoded entry of a job's cut list.
type cutSpec interface {
	// count is the number of cycles of one pass, computed without
	// expanding (a sweep can be huge); it checks block bounds.
	count(j *Job, blocks uint32, what string) (int64, error)
	// expand calls add with each cut of one pass; rng is the entry's own
	// random source.
	expand(j *Job, blocks uint32, what string, rng *rand.Rand, add func(bench.Cut)) error
	// check looks at a board the entry will run on, before anything is
	// powered: the wiring it needs, a timing it cannot meet.
	check(j *Job, bd *boards.Board, what string) error
}

// drawing is an entry that draws its cuts (random:): it may carry its own
// seed, and its cuts are of another kind.
type drawing interface {
	seed() uint64 // 0: the job's
	drawnKind() string
}

var (
	cutKinds = map[string]*cutKind{}
	cutOrder []string // for messages, in registration order
)

func registerCut(k *cutKind) {
	if _, dup := cutKinds[k.name]; dup {
		panic("jobs: cut kind " + k.name + " registered twice")
	}
	cutKinds[k.name] = k
	cutOrder = append(cutOrder, k.name)
	slices.SortStableFunc(cutOrder, func(a, b string) int { return kindRank(a) - kindRank(b) })
}

// kindRank keeps the documented order of kinds in messages.
func kindRank(k string) int {
	if i := slices.Index([]string{"none", "after_block", "during_block", "at_time", "on_console", "on_gpio", "device_work", "random"}, k); i >= 0 {
		return i
	}
	return 100
}

// CutEntry is one entry of a job's cut list.
type CutEntry struct {
	Kind string
	// At is where the entry stands in the job file.
	At   config.Pos
	spec cutSpec
}

// CycleSpec is one planned cycle: the cut to make.
type CycleSpec struct {
	Index  int // position in the list, from 0
	Repeat int // pass over the cut list, from 0
	Entry  int // index into Job.Cuts
	Kind   string
	Cut    bench.Cut
	Desc   string // "after_block 17", "random during_block 3 +1ms"
	// Brownout is how the cut cuts when the job's cut: says brownout
	// (nil: off).
	Brownout *bench.Brownout
}

// Block is the cycle's planned block, -1 when the cut is not placed by
// block.
func (c CycleSpec) Block() int64 { return c.Cut.Block() }

func decodeCuts(d *config.Decoder, j *Job, n ast.Node) error {
	items, err := d.Seq(n, "cuts", false)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return d.Errf(n, "cuts: empty list (use [none] for plain updates)")
	}
	for i, it := range items {
		c, err := decodeCut(d, it, fmt.Sprintf("cuts[%d]", i))
		if err != nil {
			return err
		}
		j.Cuts = append(j.Cuts, c)
	}
	return nil
}

func decodeCut(d *config.Decoder, n ast.Node, what string) (CutEntry, error) {
	c := CutEntry{At: config.PosOf(n)}
	r, err := d.Resolve(n)
	if err != nil {
		return c, err
	}
	if s, ok := r.(*ast.StringNode); ok && s.Value == "none" {
		c.Kind, c.spec = "none", noneSpec{}
		return c, nil
	}
	fs, err := d.Fields(n, what, cutOrder...)
	if err != nil {
		return c, err
	}
	if len(fs) != 1 {
		return c, d.Errf(n, "%s: want exactly one of %s per entry", what, strings.Join(cutOrder, ", "))
	}
	for k, f := range fs {
		c.Kind = k
		c.spec, err = cutKinds[k].decode(d, f, what+"."+k)
	}
	return c, err
}

// Cycles expands the cut list for an update image of blocks blocks:
// sweeps give one cycle per value, random entries draw their points
// (deterministically from the seed, fresh points on each pass), and the
// whole list runs Repeat times. A cut point past the last block is a
// configuration error at the entry's line.
func (j *Job) Cycles(blocks uint32) ([]CycleSpec, error) {
	if blocks == 0 {
		return nil, j.errAt(j.cutsAt, "the update image has no blocks")
	}
	// Check every entry and count before building anything.
	var total int64
	for i, c := range j.Cuts {
		n, err := c.spec.count(j, blocks, c.what(i))
		if err != nil {
			return nil, err
		}
		total += min(n, MaxCycles+1)
		if total > MaxCycles {
			break
		}
	}
	total *= int64(max(len(j.Brownouts), 1))
	if total > MaxCycles || total*int64(j.Repeat) > MaxCycles {
		return nil, j.errAt(j.cutsAt, "cuts: the plan expands to more than %d cycles per board", MaxCycles)
	}
	out := make([]CycleSpec, 0, total*int64(j.Repeat))
	// Each entry draws from its own stream, seeded by the entry's seed
	// or the job's, so adding an entry does not move another's draws.
	rngs := make([]*rand.Rand, len(j.Cuts))
	for i, c := range j.Cuts {
		seed := j.Seed
		if s, ok := c.spec.(drawing); ok && s.seed() != 0 {
			seed = s.seed()
		}
		rngs[i] = rand.New(rand.NewPCG(seed, uint64(i)+1))
	}
	// Each brownout level is a pass over an entry with cuts; an entry
	// without one (none) runs once.
	levels := []*bench.Brownout{nil}
	if len(j.Brownouts) > 0 {
		levels = levels[:0]
		for i := range j.Brownouts {
			levels = append(levels, &j.Brownouts[i])
		}
	}
	for rep := range j.Repeat {
		for i, c := range j.Cuts {
			kind := c.Kind
			if s, ok := c.spec.(drawing); ok {
				kind = s.drawnKind()
			}
			for li, bo := range levels {
				if kind == "none" && li > 0 {
					break
				}
				if kind == "none" {
					bo = nil
				}
				add := func(cut bench.Cut) {
					out = append(out, CycleSpec{Index: len(out), Repeat: rep, Entry: i, Kind: kind, Cut: cut, Desc: bench.PlanText(cut, bo), Brownout: bo})
				}
				if err := c.spec.expand(j, blocks, c.what(i), rngs[i], add); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

func (c CutEntry) what(i int) string { return fmt.Sprintf("cuts[%d].%s", i, c.Kind) }

// CheckBoard checks the cut list against a board it will run on — the
// wiring each kind needs (a console, a trigger input) and timings it
// cannot meet — before anything is powered.
func (j *Job) CheckBoard(bd *boards.Board) error {
	for i, c := range j.Cuts {
		if err := c.spec.check(j, bd, c.what(i)); err != nil {
			return err
		}
	}
	return nil
}

// OneCut is a cut list entry that plans exactly cut, for a job made in
// code (fudbench update --cut-after-block N).
func OneCut(kind string, cut bench.Cut) CutEntry { return CutEntry{Kind: kind, spec: oneSpec{cut}} }

type oneSpec struct{ cut bench.Cut }

func (s oneSpec) count(j *Job, blocks uint32, what string) (int64, error) {
	if b := s.cut.Block(); b >= int64(blocks) {
		return 0, j.errAt(config.Pos{}, "%s: block %d is past the last block (%d) of the %d-block update image", s.cut, b, blocks-1, blocks)
	}
	return 1, nil
}

func (s oneSpec) expand(_ *Job, _ uint32, _ string, _ *rand.Rand, add func(bench.Cut)) error {
	add(s.cut)
	return nil
}

func (oneSpec) check(*Job, *boards.Board, string) error { return nil }

// noneSpec is the entry "none": a cycle without a cut.
type noneSpec struct{}

func init() {
	registerCut(&cutKind{name: "none", decode: func(d *config.Decoder, f config.Field, w string) (cutSpec, error) {
		r, err := d.Resolve(f.Val)
		if err != nil {
			return nil, err
		}
		if mn, ok := r.(*ast.MappingNode); r != nil && (!ok || len(mn.Values) != 0) { // null or {}
			return nil, d.Errf(f.Val, "%s: takes no parameters (write none: {})", w)
		}
		return noneSpec{}, nil
	}})
}

func (noneSpec) count(*Job, uint32, string) (int64, error) { return 1, nil }
func (noneSpec) expand(_ *Job, _ uint32, _ string, _ *rand.Rand, add func(bench.Cut)) error {
	add(NoCut)
	return nil
}
func (noneSpec) check(*Job, *boards.Board, string) error { return nil }

// NoCut is the plan of a cycle without a cut.
var NoCut bench.Cut = noCut{}

type noCut struct{}

func (noCut) String() string                              { return "none" }
func (noCut) Block() int64                                { return -1 }
func (noCut) Trigger(*bench.Board) (bench.Trigger, error) { return nil, nil }
func (noCut) Missed(c *results.CutInfo) string {
	if c != nil {
		return "a cut fired although none was planned"
	}
	return ""
}
