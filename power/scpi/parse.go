package scpi

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/internal/config"
)

// maxQuote bounds how much of an instrument's reply goes into an error.
const maxQuote = 64

// quote quotes an instrument's reply for an error, cut to maxQuote bytes.
func quote(reply string) string {
	if len(reply) > maxQuote {
		return strconv.Quote(reply[:maxQuote]) + "…"
	}
	return strconv.Quote(reply)
}

// number is a reply's number: NR1, NR2 or NR3 (+3.30000E+00), with an
// optional unit some supplies add (3.300V, 12.5 mA).
var number = regexp.MustCompile(`^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*(?:([mu]?)([VvAaWw]))?$`)

// overrange is SCPI's 9.9E37, which an instrument returns for a value it
// cannot measure; 9.91E37 is its NaN.
const overrange = 9.9e37

// ParseNumber parses an instrument's numeric reply: "+3.30000E+00",
// "0.012345", "3.300V", "12.5mA" (a unit's milli or micro prefix scales
// the value). Surrounding white space is ignored. SCPI's over-range and
// not-a-number values (9.9E37, 9.91E37) are errors, as is anything that is
// no finite number.
func ParseNumber(reply string) (float64, error) {
	m := number.FindStringSubmatch(strings.TrimSpace(reply))
	if m == nil {
		return 0, errors.New("is no number")
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, errors.New("is no number")
	}
	if math.Abs(v) >= overrange {
		return 0, errors.New("is SCPI's over-range or not-a-number value")
	}
	switch m[2] {
	case "m":
		v /= 1e3
	case "u":
		v /= 1e6
	}
	return v, nil
}

// ParseState parses a reply to OUTP?: 1, 0, ON or OFF.
func ParseState(reply string) (bool, error) {
	switch strings.ToUpper(strings.TrimSpace(reply)) {
	case "1", "+1", "ON":
		return true, nil
	case "0", "+0", "OFF":
		return false, nil
	}
	return false, errors.New("is neither on nor off")
}

// koradOutput is the bit of a Korad STATUS? byte that is set while the
// output is on.
const koradOutput = 1 << 6

// ParseKoradStatus parses a Korad STATUS? reply: one byte, whose bit 6 is
// the output.
func ParseKoradStatus(reply string) (bool, error) {
	if len(reply) != 1 {
		return false, fmt.Errorf("is %d bytes, not the one status byte", len(reply))
	}
	return reply[0]&koradOutput != 0, nil
}

// ParseError parses a reply to SYST:ERR?: a code, a comma and a message,
// such as `-222,"Data out of range"`. Code 0 is no error.
func ParseError(reply string) (code int, msg string, err error) {
	r := strings.TrimSpace(reply)
	c, m, _ := strings.Cut(r, ",")
	code, err = strconv.Atoi(strings.TrimSpace(c))
	if err != nil {
		return 0, "", errors.New("is no error code and message")
	}
	return code, strings.Trim(strings.TrimSpace(m), `"`), nil
}

// parseLevel parses a setting's level: a number and a unit, or the unit
// with a prefix (3.3V, 3300mV; 0.5A, 500mA). A bare number is refused,
// so that 3300 is never taken for volts.
func parseLevel(s, unit string) (float64, error) {
	if !strings.HasSuffix(strings.TrimSpace(s), unit) {
		return 0, fmt.Errorf("%q: a unit is needed: %s or m%s", s, unit, unit)
	}
	v, err := config.ParseQuantity(s, unit)
	if err != nil {
		return 0, fmt.Errorf("%q is no level in %s or m%s", s, unit, unit)
	}
	return v, nil
}

// formatLevel writes a level for a SCPI command, in plain decimal
// notation to the microvolt or microampere: 3.3, 0.0005.
func formatLevel(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}

// volts and amps are levels in the settings, written with their unit.
type (
	volts float64
	amps  float64
)

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (v *volts) UnmarshalYAML(n ast.Node) error { return levelYAML(n, "V", (*float64)(v)) }

// UnmarshalJSON decodes a level written as a string.
func (v *volts) UnmarshalJSON(b []byte) error { return levelJSON(b, "V", (*float64)(v)) }

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (a *amps) UnmarshalYAML(n ast.Node) error { return levelYAML(n, "A", (*float64)(a)) }

// UnmarshalJSON decodes a level written as a string.
func (a *amps) UnmarshalJSON(b []byte) error { return levelJSON(b, "A", (*float64)(a)) }

func levelYAML(n ast.Node, unit string, v *float64) error {
	switch n.Type() {
	case ast.MappingType, ast.MappingValueType, ast.SequenceType:
		return &config.PosError{Pos: config.PosOf(n), Err: fmt.Errorf("want a level such as 3.3%s, got %s", unit, config.KindName(n))}
	}
	return config.Scalar(n, func(s string) (err error) {
		*v, err = parseLevel(s, unit)
		return err
	})
}

func levelJSON(b []byte, unit string, v *float64) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s: want a level such as 3.3%s, written as a string", b, unit)
	}
	var err error
	*v, err = parseLevel(s, unit)
	return err
}
