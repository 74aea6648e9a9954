package scpi

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseReading: an instrument's reply, whatever it is, never makes
// the parsers panic; a number they accept is finite and in range, and
// reads back the same once written plainly.
func FuzzParseReading(f *testing.F) {
	for _, s := range []string{"+3.30000E+00", "0.012345", "3.300V", "12.5mA", "9.9E+37", "abc", "", "1", "OFF",
		`-222,"Data out of range"`, `+0,"No error"`, "\x41", "03.30", "1e-400", "-.5e+3 uA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := ParseNumber(s); err == nil {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) >= overrange {
				t.Fatalf("%q: %v accepted", s, v)
			}
			back, err := ParseNumber(strconv.FormatFloat(v, 'g', -1, 64))
			if err != nil || back != v {
				t.Fatalf("%q: %v reads back as %v, %v", s, v, back, err)
			}
		}
		if _, err := ParseState(s); err == nil && len(strings.TrimSpace(s)) > 3 {
			t.Fatalf("state %q accepted", s)
		}
		if on, err := ParseKoradStatus(s); err == nil && on != (s[0]&koradOutput != 0) {
			t.Fatalf("status %q: %v", s, on)
		}
		if _, _, err := ParseError(s); err == nil && !strings.ContainsAny(s, "0123456789") {
			t.Fatalf("error %q", s)
		}
		for _, unit := range []string{"V", "A"} {
			if v, err := parseLevel(s, unit); err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
				t.Fatalf("level %q: %v accepted", s, v)
			}
		}
		_ = quote(s)
	})
}
