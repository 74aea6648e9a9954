package jobs

import (
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/results"
)

// random: {count: N, kind: KIND, window: {from, to}, delay: {from, to}, seed: S}
//
// Draws count cuts of another kind (one that says how it is drawn: a
// block from a block window, an instant from a time window), uniformly
// and with replacement, deterministically from the seed (default: the
// job's), with fresh draws on each pass over the cut list.
func init() {
	registerCut(&cutKind{name: "random", decode: decodeRandom})
}

type randomSpec struct {
	n      int
	kind   *cutKind
	blocks IntRange       // block kinds
	times  DurRange       // time kinds
	shares deviceWorkSpec // device_work: the window, in tenths of a percent
	delay  DurRange       // kinds that draw a delay
	seedN  uint64         // 0: derived from the job's seed
}

func (s *randomSpec) seed() uint64      { return s.seedN }
func (s *randomSpec) drawnKind() string { return s.kind.name }

func drawable() string {
	var names []string
	for _, k := range cutKinds {
		if k.draw != nil {
			names = append(names, k.name)
		}
	}
	sort.Slice(names, func(i, j int) bool { return kindRank(names[i]) < kindRank(names[j]) })
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

func decodeRandom(d *config.Decoder, f config.Field, w string) (cutSpec, error) {
	fs, err := d.Fields(f.Val, w, "count", "kind", "window", "delay", "seed")
	if err != nil {
		return nil, err
	}
	s := &randomSpec{}
	cf, ok := fs["count"]
	if !ok {
		return nil, d.Errf(f.Key, "%s: count is required", w)
	}
	cnt, err := d.IntIn(cf.Val, w+".count", 1, MaxRandomCount)
	if err != nil {
		return nil, err
	}
	s.n = int(cnt)
	kf, ok := fs["kind"]
	if !ok {
		return nil, d.Errf(f.Key, "%s: kind is required (%s)", w, drawable())
	}
	kind, err := d.Str(kf.Val, w+".kind")
	if err != nil {
		return nil, err
	}
	s.kind = cutKinds[kind]
	if s.kind == nil || s.kind.draw == nil {
		return nil, d.Errf(kf.Val, "%s.kind %q: want %s", w, kind, drawable())
	}
	wf, hasWindow := fs["window"]
	if s.kind.draw.share != nil {
		s.shares = deviceWorkSpec{0, 1000, 1}
		if hasWindow {
			if s.shares, err = shareWindow(d, wf.Val, w+".window"); err != nil {
				return nil, err
			}
		}
	} else if s.kind.draw.byTime {
		if !hasWindow {
			return nil, d.Errf(f.Key, "%s: window {from, to} is required for %s", w, kind)
		}
		if s.times, err = durRange(d, wf.Val, w+".window", MaxAtTime, true); err != nil {
			return nil, err
		}
	} else {
		s.blocks = IntRange{From: 0, ToLast: true, Step: 1}
		if hasWindow {
			if s.blocks, err = window(d, wf.Val, w+".window"); err != nil {
				return nil, err
			}
		}
	}
	if df, ok := fs["delay"]; ok {
		if !s.kind.draw.delay {
			return nil, d.Errf(df.Key, "%s: delay does not apply to kind %s", w, kind)
		}
		if s.delay, err = durRange(d, df.Val, w+".delay", MaxDelay, true); err != nil {
			return nil, err
		}
	} else {
		s.delay.at = config.PosOf(f.Val)
	}
	if sf, ok := fs["seed"]; ok {
		if s.seedN, err = d.Uint64(sf.Val, w+".seed"); err != nil {
			return nil, err
		}
		if s.seedN == 0 {
			return nil, d.Errf(sf.Val, "%s.seed: 0 means \"derived from the job's seed\": leave it out or pick another", w)
		}
	}
	return s, nil
}

func (s *randomSpec) count(j *Job, blocks uint32, what string) (int64, error) {
	if !s.kind.draw.byTime && s.kind.draw.share == nil {
		if _, _, err := s.blocks.resolve(j, blocks, what+".window"); err != nil {
			return 0, err
		}
	}
	return int64(s.n), nil
}

func (s *randomSpec) expand(j *Job, blocks uint32, what string, rng *rand.Rand, add func(bench.Cut)) error {
	if s.kind.draw.share != nil {
		for range s.n {
			p := s.shares.from + rng.IntN(s.shares.to-s.shares.from+1)
			add(randomWorkCut{randomCut{s.kind.draw.share(p, blocks)}})
		}
		return nil
	}
	var from, to int64
	if !s.kind.draw.byTime {
		var err error
		if from, to, err = s.blocks.resolve(j, blocks, what+".window"); err != nil {
			return err
		}
	}
	for range s.n {
		var cut bench.Cut
		if s.kind.draw.byTime {
			cut = s.kind.draw.cut(-1, 0, s.times.draw(rng))
		} else {
			b := from + rng.Int64N(to-from+1)
			var dl = s.delay.From
			if s.kind.draw.delay {
				dl = s.delay.draw(rng)
			}
			cut = s.kind.draw.cut(b, dl, 0)
		}
		add(randomCut{cut})
	}
	return nil
}

func (s *randomSpec) check(j *Job, bd *boards.Board, what string) error {
	if s.kind.draw.delay {
		return checkDelayLands(j, bd, what+".delay", s.delay)
	}
	return nil
}

// randomCut is a drawn cut: the same cut, described as drawn.
type randomCut struct{ bench.Cut }

func (c randomCut) String() string { return "random " + c.Cut.String() }

func (c randomCut) Missed(cut *results.CutInfo) string { return c.Cut.Missed(cut) }

// randomWorkCut is a drawn cut in the device's own update work: still a
// bench.WorkCut, so the bench measures the work before it.
type randomWorkCut struct{ randomCut }

func (randomWorkCut) DeviceWork() {}
