package config

import (
	"strings"
	"testing"
)

func TestParseQuantity(t *testing.T) {
	for _, tc := range []struct {
		in, unit string
		want     float64
		err      string
	}{
		{"1.7V", "V", 1.7, ""},
		{"1700mV", "V", 1.7, ""},
		{" 3.3 ", "V", 3.3, ""},
		{"20mA", "A", 0.02, ""},
		{"500uA", "A", 0.0005, ""},
		{"500µA", "A", 0.0005, ""},
		{"0.5A", "A", 0.5, ""},
		{"1.7A", "V", 0, "want a number of volts"},
		{"-1V", "V", 0, "want a number of volts"},
		{"1.7mm", "V", 0, "want a number of volts"},
		{"5m", "V", 0, "want a number of volts"},
		{"V", "V", 0, "want a number of volts"},
		{"1e999V", "V", 0, "out of range"},
	} {
		got, err := ParseQuantity(tc.in, tc.unit)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got < tc.want*(1-1e-12) || got > tc.want*(1+1e-12) {
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, v := range []float64{1.7, 0.02, 3.3, 0} {
		back, err := ParseQuantity(FormatQuantity(v, "V"), "V")
		if err != nil || back < v-1e-12 || back > v+1e-12 {
			t.Errorf("FormatQuantity(%v) = %q reads back as %v, %v", v, FormatQuantity(v, "V"), back, err)
		}
	}
}

func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"1.7V", "20mA", "5e-3A", "µ", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseQuantity(s, "V")
		if err == nil && (v < 0 || v != v) {
			t.Fatalf("%q read as %v", s, v)
		}
	})
}
