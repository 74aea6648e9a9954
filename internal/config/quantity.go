package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"

	"github.com/goccy/go-yaml/ast"
)

// Electrical quantities in bench and job files: a supply's voltage, a
// current limit, a brownout level.

var quantityRE = regexp.MustCompile(`^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(m|u|µ)?([A-Za-z]*)\s*$`)

// ParseQuantity reads a value of unit ("V" or "A") written as 1.7V,
// 1700mV, 0.5A, 20mA, 500uA (or 500µA), or a plain number in the unit.
// Negative values, other units and NaN are refused.
func ParseQuantity(s, unit string) (float64, error) {
	m := quantityRE.FindStringSubmatch(s)
	if m == nil || (m[3] != "" && m[3] != unit) || (m[2] != "" && m[3] == "") {
		return 0, fmt.Errorf("%q: want a number of %s such as %s", s, unitName(unit), unitExample(unit))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q: out of range", s)
	}
	switch m[2] {
	case "m":
		v /= 1e3
	case "u", "µ":
		v /= 1e6
	}
	return v, nil
}

func unitName(unit string) string {
	if unit == "A" {
		return "amperes"
	}
	return "volts"
}

func unitExample(unit string) string {
	if unit == "A" {
		return "0.5A or 20mA"
	}
	return "3.3V or 1700mV"
}

// FormatQuantity writes v in unit the way ParseQuantity reads it, in the
// unit or its thousandth, whichever reads better.
func FormatQuantity(v float64, unit string) string {
	if v != 0 && math.Abs(v) < 1 {
		return strconv.FormatFloat(v*1e3, 'f', -1, 64) + "m" + unit
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + unit
}

// Quantity reads a value of unit (see ParseQuantity) within [lo, hi],
// written as a number or a string with the unit.
func (d *Decoder) Quantity(n ast.Node, what, unit string, lo, hi float64) (float64, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return 0, err
	}
	text, ok := ScalarText(r)
	if !ok {
		return 0, d.Errf(n, "%s: want %s, got %s", what, unitExample(unit), KindName(r))
	}
	v, err := ParseQuantity(text, unit)
	if err != nil {
		return 0, d.Errf(n, "%s: %v", what, err)
	}
	if v < lo || v > hi {
		return 0, d.Errf(n, "%s %s: want %s to %s", what, FormatQuantity(v, unit), FormatQuantity(lo, unit), FormatQuantity(hi, unit))
	}
	return v, nil
}
