package link

import (
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/internal/config"
)

var keys = []string{"profile", "loss", "delay", "jitter", "rate", "mtu", "duplicate", "reorder", "seed"}

// Decode reads a link configuration: a profile's name, or a mapping of
// impairments that may start from a profile ({profile: lora-sf7, seed:
// 3}). Every error is a *config.Error at its line and column. what names
// the key in messages ("board a: coap.link", "links.a").
func Decode(d *config.Decoder, n ast.Node, what string) (*Config, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return nil, err
	}
	if s, ok := r.(*ast.StringNode); ok {
		c, err := profile(d, n, s.Value, what)
		if err != nil {
			return nil, err
		}
		c.File, c.At = d.File, config.PosOf(n)
		return c, nil
	}
	fs, err := d.Fields(n, what, keys...)
	if err != nil {
		return nil, err
	}
	c := &Config{Seed: 1, File: d.File, At: config.PosOf(n)}
	if f, ok := fs["profile"]; ok {
		name, err := d.Str(f.Val, what+".profile")
		if err != nil {
			return nil, err
		}
		if c, err = profile(d, f.Val, name, what+".profile"); err != nil {
			return nil, err
		}
		if c.Off && len(fs) > 1 {
			return nil, d.Errf(f.Val, "%s: profile none has no impairments to change", what)
		}
		c.File, c.At = d.File, config.PosOf(n)
	}
	for k, dst := range map[string]*Percent{"loss": &c.Loss, "duplicate": &c.Duplicate, "reorder": &c.Reorder} {
		if f, ok := fs[k]; ok {
			if *dst, err = percent(d, f.Val, what+"."+k); err != nil {
				return nil, err
			}
		}
	}
	if f, ok := fs["delay"]; ok {
		if c.Delay, err = d.Duration(f.Val, what+".delay", MaxDelay); err != nil {
			return nil, err
		}
	}
	if f, ok := fs["jitter"]; ok {
		if c.Jitter, err = d.Duration(f.Val, what+".jitter", MaxDelay); err != nil {
			return nil, err
		}
	}
	if c.Jitter > c.Delay {
		at := n
		if f, ok := fs["jitter"]; ok {
			at = f.Val
		} else if f, ok := fs["delay"]; ok {
			at = f.Val
		}
		return nil, d.Errf(at, "%s: jitter %v is more than the delay %v: the delay is drawn from delay±jitter and cannot be negative", what, c.Jitter, c.Delay)
	}
	if f, ok := fs["rate"]; ok {
		if c.Rate, err = rate(d, f.Val, what+".rate"); err != nil {
			return nil, err
		}
	}
	if f, ok := fs["mtu"]; ok {
		v, err := d.IntIn(f.Val, what+".mtu", MinMTU, MaxMTU)
		if err != nil {
			return nil, err
		}
		c.MTU = int(v)
	}
	if f, ok := fs["seed"]; ok {
		v, err := d.Uint64(f.Val, what+".seed")
		if err != nil {
			return nil, err
		}
		if v == 0 {
			return nil, d.Errf(f.Val, "%s.seed: want 1 or more", what)
		}
		c.Seed = v
	}
	return c, nil
}

func profile(d *config.Decoder, n ast.Node, name, what string) (*Config, error) {
	c, ok := Profile(name)
	if !ok {
		return nil, d.Errf(n, "%s: unknown link profile %q (known: %s; or a mapping of loss, delay, jitter, rate, mtu, duplicate, reorder, seed)",
			what, name, strings.Join(ProfileNames(), ", "))
	}
	return &c, nil
}

// percent reads 0% to 100% with at most two decimals (0.25%); a bare 0
// is 0%.
func percent(d *config.Decoder, n ast.Node, what string) (Percent, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return 0, err
	}
	if in, ok := r.(*ast.IntegerNode); ok && in.GetToken() != nil && in.GetToken().Value == "0" {
		return 0, nil
	}
	s, ok := r.(*ast.StringNode)
	if !ok || !strings.HasSuffix(s.Value, "%") {
		text, _ := config.ScalarText(r)
		return 0, d.Errf(n, "%s: want a percentage such as 5%% or 0.5%%, got %s %s", what, config.KindName(r), text)
	}
	num := strings.TrimSuffix(s.Value, "%")
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 100 || strings.ContainsAny(num, "eE_+ ") {
		return 0, d.Errf(n, "%s: %q: want 0%% to 100%%", what, s.Value)
	}
	v := f * 100
	if math.Abs(v-math.Round(v)) > 1e-6 {
		return 0, d.Errf(n, "%s: %q: at most two decimals (0.25%%)", what, s.Value)
	}
	return Percent(math.Round(v)), nil
}

var rateRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(bit|kbit|Mbit)$`)

// rate reads a bit rate with its unit: 55bit, 5.47kbit, 1Mbit (per
// second, as tc writes them).
func rate(d *config.Decoder, n ast.Node, what string) (uint64, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return 0, err
	}
	text, ok := config.ScalarText(r)
	if !ok || r == nil {
		return 0, d.Errf(n, "%s: want a rate such as 50kbit, got %s", what, config.KindName(r))
	}
	m := rateRE.FindStringSubmatch(text)
	if m == nil {
		return 0, d.Errf(n, "%s: %q: want a number and a unit: bit, kbit or Mbit (per second), such as 50kbit", what, text)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, d.Errf(n, "%s: %q: not a number", what, text)
	}
	switch m[2] {
	case "kbit":
		f *= 1e3
	case "Mbit":
		f *= 1e6
	}
	if f > MaxRate {
		return 0, d.Errf(n, "%s: %q: more than 10000Mbit", what, text)
	}
	if math.Abs(f-math.Round(f)) > 1e-6 {
		return 0, d.Errf(n, "%s: %q: not a whole number of bit/s", what, text)
	}
	if f < 1 {
		return 0, d.Errf(n, "%s: %q: want more than 0 (leave rate out for an unlimited link)", what, text)
	}
	return uint64(math.Round(f)), nil
}
