package jobs

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/internal/config"
)

// IntRange is an inclusive sweep over integers; a single value has
// From == To and Step 1. FromLast and ToLast stand for the image's last
// block ("last" in YAML).
type IntRange struct {
	From, To, Step   int64
	FromLast, ToLast bool
	fromAt, toAt     config.Pos
}

// DurRange is an inclusive sweep over durations; a single value has
// From == To and Step 0.
type DurRange struct {
	From, To, Step time.Duration
	at             config.Pos
}

// window reads a block window {from, to} for random cuts.
func window(d *config.Decoder, n ast.Node, w string) (IntRange, error) {
	fs, err := d.Fields(n, w, "from", "to")
	if err != nil {
		return IntRange{}, err
	}
	r := IntRange{From: 0, ToLast: true, Step: 1}
	return r, rangeEnds(d, &r, fs, w, true)
}

// intRange reads N, "last" (when allowLast) or {from, to, step}. from
// defaults to lo; to defaults to last when allowLast and is required
// otherwise.
func intRange(d *config.Decoder, n ast.Node, w string, allowLast bool, lo int64) (IntRange, error) {
	if !d.IsMap(n) {
		v, last, err := point(d, n, w, allowLast, lo)
		p := config.PosOf(n)
		return IntRange{From: v, To: v, Step: 1, FromLast: last, ToLast: last, fromAt: p, toAt: p}, err
	}
	fs, err := d.Fields(n, w, "from", "to", "step")
	if err != nil {
		return IntRange{}, err
	}
	r := IntRange{From: lo, Step: 1, ToLast: allowLast, fromAt: config.PosOf(n), toAt: config.PosOf(n)}
	if _, ok := fs["to"]; !ok && !allowLast {
		return r, d.Errf(n, "%s: to is required", w)
	}
	if err := rangeEnds(d, &r, fs, w, allowLast); err != nil {
		return r, err
	}
	if sf, ok := fs["step"]; ok {
		if r.Step, err = d.IntIn(sf.Val, w+".step", 1, math.MaxInt32); err != nil {
			return r, err
		}
	}
	return r, nil
}

func rangeEnds(d *config.Decoder, r *IntRange, fs map[string]config.Field, w string, allowLast bool) error {
	lo := r.From
	var err error
	if ff, ok := fs["from"]; ok {
		if r.From, r.FromLast, err = point(d, ff.Val, w+".from", allowLast, lo); err != nil {
			return err
		}
		r.fromAt = config.PosOf(ff.Val)
	}
	if tf, ok := fs["to"]; ok {
		if r.To, r.ToLast, err = point(d, tf.Val, w+".to", allowLast, lo); err != nil {
			return err
		}
		r.toAt = config.PosOf(tf.Val)
	}
	if !r.FromLast && !r.ToLast && r.From > r.To {
		return d.ErrAt(r.fromAt, "%s: from %d is after to %d", w, r.From, r.To)
	}
	return nil
}

// point reads one integer >= lo, or "last".
func point(d *config.Decoder, n ast.Node, w string, allowLast bool, lo int64) (int64, bool, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return 0, false, err
	}
	if s, ok := r.(*ast.StringNode); ok && allowLast {
		if s.Value == "last" {
			return 0, true, nil
		}
		return 0, false, d.Errf(n, "%s: %q: want a block number or last", w, s.Value)
	}
	if _, ok := r.(*ast.IntegerNode); !ok {
		want := "an integer"
		if allowLast {
			want = "a block number, last, or {from, to, step}"
		}
		return 0, false, d.Errf(n, "%s: want %s, got %s", w, want, config.KindName(r))
	}
	v, err := d.IntIn(n, w, lo, math.MaxUint32)
	return v, false, err
}

// durRange reads a duration or {from, to, step}; window ranges take no
// step (random draws from them).
func durRange(d *config.Decoder, n ast.Node, w string, limit time.Duration, window bool) (DurRange, error) {
	if !d.IsMap(n) {
		v, err := d.Duration(n, w, limit)
		return DurRange{From: v, To: v, at: config.PosOf(n)}, err
	}
	keys := []string{"from", "to", "step"}
	if window {
		keys = keys[:2]
	}
	fs, err := d.Fields(n, w, keys...)
	if err != nil {
		return DurRange{}, err
	}
	r := DurRange{at: config.PosOf(n)}
	if ff, ok := fs["from"]; ok {
		if r.From, err = d.Duration(ff.Val, w+".from", limit); err != nil {
			return r, err
		}
	}
	tf, ok := fs["to"]
	if !ok {
		return r, d.Errf(n, "%s: to is required", w)
	}
	if r.To, err = d.Duration(tf.Val, w+".to", limit); err != nil {
		return r, err
	}
	if r.From > r.To {
		return r, d.Errf(fs["from"].Val, "%s: from %v is after to %v", w, r.From, r.To)
	}
	if window {
		return r, nil
	}
	sf, ok := fs["step"]
	if !ok {
		return r, d.Errf(n, "%s: step is required for a sweep of durations", w)
	}
	if r.Step, err = d.Duration(sf.Val, w+".step", limit); err != nil {
		return r, err
	}
	if r.Step <= 0 {
		return r, d.Errf(sf.Val, "%s.step: must be more than 0", w)
	}
	if (r.To-r.From)/r.Step >= MaxCycles {
		return r, d.Errf(sf.Val, "%s: the sweep has more than %d values", w, MaxCycles)
	}
	return r, nil
}

// values lists a duration sweep's values.
func (r DurRange) values() []time.Duration {
	if r.Step <= 0 || r.From == r.To {
		return []time.Duration{r.From}
	}
	var out []time.Duration
	for v := r.From; v <= r.To; v += r.Step {
		out = append(out, v)
	}
	return out
}

// draw picks a duration in [From, To], in whole microseconds when the
// window allows, so descriptions stay readable.
func (r DurRange) draw(rng *rand.Rand) time.Duration {
	span := r.To - r.From
	if span <= 0 {
		return r.From
	}
	if span >= time.Microsecond {
		return r.From + time.Duration(rng.Int64N(int64(span/time.Microsecond)+1))*time.Microsecond
	}
	return r.From + time.Duration(rng.Int64N(int64(span)+1))
}

// resolve turns a block range into concrete bounds for an image of blocks
// blocks; a point past the last block is an error at its line.
func (r IntRange) resolve(j *Job, blocks uint32, what string) (from, to int64, err error) {
	last := int64(blocks) - 1
	from, to = r.From, r.To
	if r.FromLast {
		from = last
	}
	if r.ToLast {
		to = last
	}
	if from > last {
		return 0, 0, j.errAt(r.fromAt, "%s: block %d is past the last block (%d) of the %d-block update image", what, from, last, blocks)
	}
	if to > last {
		return 0, 0, j.errAt(r.toAt, "%s: block %d is past the last block (%d) of the %d-block update image", what, to, last, blocks)
	}
	if from > to {
		return 0, 0, j.errAt(r.fromAt, "%s: from %d is after to %d", what, from, to)
	}
	return from, to, nil
}

// count is the number of values of a resolved block sweep.
func (r IntRange) count(from, to int64) int64 { return (to-from)/max(r.Step, 1) + 1 }
