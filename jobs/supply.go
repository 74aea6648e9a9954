package jobs

// The job keys about a board's supply: how a cut cuts (cut: off or a
// brownout) and how often a measuring supply is read (sample:).

import (
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/internal/config"
)

// Limits of the supply keys.
const (
	MaxBrownoutVolts = 60.0
	MinBrownoutFor   = time.Millisecond
	MaxBrownoutFor   = 10 * time.Second
	MinSample        = 5 * time.Millisecond
	MaxSample        = time.Minute
)

// decodeCutMode reads `cut: off` or `cut: {brownout: {to: 1.7V, for:
// 20ms}}`; to may be a list of levels, each a pass over the cut list.
func decodeCutMode(d *config.Decoder, j *Job, f config.Field) error {
	j.cutAt = config.PosOf(f.Key)
	r, err := d.Resolve(f.Val)
	if err != nil {
		return err
	}
	if s, ok := config.ScalarText(r); ok && !d.IsMap(r) {
		if s != "off" {
			return d.Errf(f.Val, "cut %q: want off (the default) or {brownout: {to: 1.7V, for: 20ms}}", s)
		}
		return nil
	}
	fs, err := d.Fields(f.Val, "cut", "brownout")
	if err != nil {
		return err
	}
	bf, ok := fs["brownout"]
	if !ok {
		return d.Errf(f.Val, "cut: want off or {brownout: {to: 1.7V, for: 20ms}}")
	}
	bs, err := d.Fields(bf.Val, "cut.brownout", "to", "for")
	if err != nil {
		return err
	}
	to, okTo := bs["to"]
	dur, okFor := bs["for"]
	if !okTo || !okFor {
		return d.Errf(bf.Val, "cut.brownout: want both to: (the level, e.g. 1.7V) and for: (how long, e.g. 20ms)")
	}
	hold, err := d.Duration(dur.Val, "cut.brownout.for", MaxBrownoutFor)
	if err != nil {
		return err
	}
	if hold < MinBrownoutFor {
		return d.Errf(dur.Val, "cut.brownout.for %v: want at least %v", hold, MinBrownoutFor)
	}
	levels, err := d.Seq(to.Val, "cut.brownout.to", true)
	if err != nil {
		return err
	}
	if len(levels) == 0 {
		return d.Errf(to.Val, "cut.brownout.to: empty list")
	}
	for _, n := range levels {
		v, err := d.Quantity(n, "cut.brownout.to", "V", 0, MaxBrownoutVolts)
		if err != nil {
			return err
		}
		j.Brownouts = append(j.Brownouts, bench.Brownout{To: v, For: hold})
	}
	return nil
}

// decodeSample reads `sample: 20ms` or `sample: off`.
func decodeSample(d *config.Decoder, j *Job, n ast.Node) error {
	j.sampleAt = config.PosOf(n)
	if s, ok := config.ScalarText(n); ok && s == "off" {
		j.Sample = -1
		return nil
	}
	v, err := d.Duration(n, "sample", MaxSample)
	if err != nil {
		return err
	}
	if v < MinSample {
		return d.Errf(n, "sample %v: want at least %v, or off", v, MinSample)
	}
	j.Sample = v
	return nil
}

// SampleFor is how often a board's measuring supply is read: the job's
// sample, else bench.DefaultSample; 0 when the job turned it off.
func (j *Job) SampleFor() time.Duration {
	switch {
	case j.Sample < 0:
		return 0
	case j.Sample == 0:
		return bench.DefaultSample
	}
	return j.Sample
}

// checkSupply refuses, before anything is powered, a brownout cut on a
// board whose supply cannot set its voltage or whose level is not below
// the supply's nominal one, and an explicit sample rate on a board whose
// supply does not measure.
func (j *Job) checkSupply(p *Prepared, b *bench.Board) error {
	cuts := false
	for _, c := range p.Plan {
		cuts = cuts || c.Cut != NoCut
	}
	if len(j.Brownouts) > 0 && cuts {
		sup := b.Supply()
		if sup == nil {
			return j.errAt(j.cutAt, "cut: a brownout needs a supply that sets its voltage, and board %s is powered by %s (use the scpi power driver)", b.Name, b.Power)
		}
		for _, bo := range j.Brownouts {
			if bo.To >= sup.Nominal() {
				return j.errAt(j.cutAt, "cut.brownout.to %s: not below board %s's supply level %s", config.FormatQuantity(bo.To, "V"), b.Name, config.FormatQuantity(sup.Nominal(), "V"))
			}
		}
	}
	if j.Sample > 0 && b.Meter() == nil {
		return j.errAt(j.sampleAt, "sample: board %s's power switch (%s) does not measure; leave sample out, or power the board from a measuring supply (scpi)", b.Name, b.Power)
	}
	return nil
}

// checkBrownoutKinds refuses device_work cuts in a brownout job: the
// device itself loses power at one of its flash operations there, which
// is a cut, never a brownout.
func (j *Job) checkBrownoutKinds() error {
	if len(j.Brownouts) == 0 {
		return nil
	}
	for i, c := range j.Cuts {
		kind := c.Kind
		if s, ok := c.spec.(drawing); ok {
			kind = s.drawnKind()
		}
		if kind == "device_work" {
			return j.errAt(c.At, "%s: device_work cuts are made by the device's own power input at one of its flash operations, never by the supply: they cannot be brownouts (cut: at line %d); time the brownout with during_block or on_gpio", c.what(i), j.cutAt.Line)
		}
	}
	return nil
}
