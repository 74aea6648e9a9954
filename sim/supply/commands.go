package supply

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// node is one node of a command's header: its long form (VOLTAGE), its
// short form (VOLT: the long form's upper-case letters), whether it may be
// left out, and whether it takes a channel suffix (OUTPut1).
type node struct {
	long, short string
	optional    bool
	suffix      bool
}

// command is a header pattern with what its set form and its query do;
// nil is a form the command does not have.
type command struct {
	pattern string
	nodes   []node
	set     func(s *Supply, args []string) *scpiError
	query   func(s *Supply, args []string) (string, *scpiError)
}

// parsePattern reads "[SOURce#]:VOLTage[:LEVel]": nodes separated by ":",
// optional ones in brackets, "#" for a channel suffix; the short form is
// the upper-case part.
func parsePattern(p string) []node {
	var nodes []node
	for part := range strings.SplitSeq(strings.ReplaceAll(p, "[:", ":["), ":") {
		if part == "" {
			continue
		}
		var n node
		if strings.HasPrefix(part, "[") {
			n.optional = true
			part = strings.Trim(part, "[]")
		}
		if strings.HasSuffix(part, "#") {
			n.suffix = true
			part = strings.TrimSuffix(part, "#")
		}
		n.long = strings.ToUpper(part)
		n.short = strings.Map(func(r rune) rune {
			if r >= 'A' && r <= 'Z' || r == '*' {
				return r
			}
			return -1
		}, part)
		nodes = append(nodes, n)
	}
	return nodes
}

var commands []command

func init() {
	for _, c := range []command{
		{pattern: "*IDN", query: (*Supply).idn},
		{pattern: "*RST", set: (*Supply).reset},
		{pattern: "*CLS", set: func(s *Supply, args []string) *scpiError { s.errs = nil; return nil }},
		{pattern: "*OPC", set: none, query: constant("1")},
		{pattern: "*WAI", set: none},
		{pattern: "*TST", query: constant("0")},
		{pattern: "*ESR", query: constant("0")},
		{pattern: "*STB", query: constant("0")},
		{pattern: "SYSTem:ERRor[:NEXT]", query: (*Supply).nextError},
		{pattern: "SYSTem:VERSion", query: constant("1999.0")},
		{pattern: "SYSTem:REMote", set: none},
		{pattern: "SYSTem:LOCal", set: none},
		{pattern: "SYSTem:RWLock", set: none},
		{pattern: "INSTrument:NSELect", set: (*Supply).selectNumber, query: constant("1")},
		{pattern: "INSTrument[:SELect]", set: (*Supply).selectName, query: constant("CH1")},
		{pattern: "[SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", set: (*Supply).setVoltage, query: (*Supply).voltage},
		{pattern: "[SOURce#]:CURRent[:LEVel][:IMMediate][:AMPLitude]", set: (*Supply).setCurrent, query: (*Supply).current},
		{pattern: "APPLy", set: (*Supply).apply, query: (*Supply).applied},
		{pattern: "OUTPut#[:STATe]", set: (*Supply).setOutput, query: (*Supply).output},
		{pattern: "MEASure#[:SCALar]:VOLTage[:DC]", query: (*Supply).measVoltage},
		{pattern: "MEASure#[:SCALar]:CURRent[:DC]", query: (*Supply).measCurrent},
		{pattern: "MEASure#[:SCALar]:POWer[:DC]", query: (*Supply).measPower},
	} {
		c.nodes = parsePattern(c.pattern)
		commands = append(commands, c)
	}
}

// Commands lists the header patterns the supply knows: nodes in brackets
// may be left out, "#" takes the channel suffix 1. Each is a setting, a
// query ("?") or both, as the package comment lists.
func Commands() []string {
	out := make([]string, len(commands))
	for i, c := range commands {
		out[i] = c.pattern
	}
	return out
}

func none(*Supply, []string) *scpiError { return nil }

func constant(v string) func(*Supply, []string) (string, *scpiError) {
	return func(_ *Supply, args []string) (string, *scpiError) {
		if len(args) > 0 {
			return "", &errParamNotAllowed
		}
		return v, nil
	}
}

// run runs one command of a program message; prefix is the path the
// previous command of the message left (for "MEAS:VOLT?;CURR?"). It
// returns the answer of a query and the header path it matched, to be the
// next command's prefix (nil for a common command).
func (s *Supply) run(unit string, prefix []string) (out string, hasOut bool, path []string, e *scpiError) {
	header, params := unit, ""
	if i := strings.IndexAny(unit, " \t"); i >= 0 {
		header, params = unit[:i], unit[i+1:]
	}
	header = strings.ToUpper(header)
	query := strings.HasSuffix(header, "?")
	header = strings.TrimSuffix(header, "?")
	if !validHeader(header) {
		return "", false, nil, &errSyntax
	}
	args, e := splitArgs(params)
	if e != nil {
		return "", false, nil, e
	}
	var c *command
	switch {
	case strings.HasPrefix(header, "*"):
		c = findCommon(header)
	case strings.HasPrefix(header, ":"):
		path = strings.Split(header[1:], ":")
		c, e = find(path)
	default:
		toks := strings.Split(header, ":")
		if len(prefix) > 0 {
			rel := append(append([]string(nil), prefix...), toks...)
			if c, e = find(rel); c != nil {
				path = rel
				break
			}
		}
		path = toks
		c, e = find(toks)
	}
	if e != nil {
		return "", false, nil, e
	}
	if c == nil || query && c.query == nil || !query && c.set == nil {
		return "", false, nil, &errUndefinedHeader
	}
	if query {
		out, e = c.query(s, args)
		return out, e == nil, path, e
	}
	return "", false, path, c.set(s, args)
}

// validHeader: letters, digits and ":" between non-empty nodes, or a
// common command "*XXX".
func validHeader(h string) bool {
	if h == "" {
		return false
	}
	if h[0] == '*' {
		h = h[1:]
		if h == "" || strings.Contains(h, ":") {
			return false
		}
	} else {
		h = strings.TrimPrefix(h, ":")
	}
	for node := range strings.SplitSeq(h, ":") {
		if node == "" {
			return false
		}
		for i := 0; i < len(node); i++ {
			c := node[i]
			if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
				return false
			}
		}
	}
	return true
}

// splitArgs splits the parameters at commas; an empty one between two
// commas is missing.
func splitArgs(params string) ([]string, *scpiError) {
	params = strings.TrimSpace(params)
	if params == "" {
		return nil, nil
	}
	args := strings.Split(params, ",")
	for i, a := range args {
		args[i] = strings.TrimSpace(a)
		if args[i] == "" {
			return nil, &errMissingParam
		}
	}
	return args, nil
}

func findCommon(h string) *command {
	for i := range commands {
		if commands[i].pattern == h {
			return &commands[i]
		}
	}
	return nil
}

// find returns the command whose pattern the header's nodes match; a
// channel suffix other than 1 on a node that takes one is an error.
func find(toks []string) (*command, *scpiError) {
	var suffixErr bool
	for i := range commands {
		c := &commands[i]
		if c.pattern[0] == '*' {
			continue
		}
		ok, bad := matchNodes(c.nodes, toks)
		if ok {
			if bad {
				suffixErr = true
				continue
			}
			return c, nil
		}
	}
	if suffixErr {
		return nil, &errSuffixRange
	}
	return nil, nil
}

// matchNodes matches header tokens to pattern nodes, optional nodes left
// out where they must be; bad reports a channel suffix out of range.
func matchNodes(nodes []node, toks []string) (ok, bad bool) {
	if len(toks) == 0 {
		for _, n := range nodes {
			if !n.optional {
				return false, false
			}
		}
		return true, false
	}
	if len(nodes) == 0 {
		return false, false
	}
	n := nodes[0]
	name, suffix := splitSuffix(toks[0])
	if (name == n.long || name == n.short) && (suffix == "" || n.suffix) {
		if ok, b := matchNodes(nodes[1:], toks[1:]); ok {
			return true, b || suffix != "" && suffix != "1"
		}
	}
	if n.optional {
		return matchNodes(nodes[1:], toks)
	}
	return false, false
}

// splitSuffix splits a node's trailing digits off: OUTP1 → OUTP, 1.
func splitSuffix(tok string) (name, suffix string) {
	i := len(tok)
	for i > 0 && tok[i-1] >= '0' && tok[i-1] <= '9' {
		i--
	}
	return tok[:i], tok[i:]
}

// Commands' implementations; s.mu held.

func (s *Supply) idn(args []string) (string, *scpiError) {
	if len(args) > 0 {
		return "", &errParamNotAllowed
	}
	name := strings.Map(func(r rune) rune {
		if r == ',' || r == ';' || r < ' ' || r > '~' {
			return '_'
		}
		return r
	}, s.opts.Name)
	if name == "" {
		name = "0"
	}
	return "fudbench,SIM-SUPPLY," + name + ",1.0", nil
}

func (s *Supply) reset(args []string) *scpiError {
	if len(args) > 0 {
		return &errParamNotAllowed
	}
	s.load.SetPower(false)
	s.load.SetVoltage(s.opts.Nominal)
	s.limit = s.opts.CurrentLimit
	s.lastMeas = time.Time{}
	return nil
}

func (s *Supply) nextError(args []string) (string, *scpiError) {
	if len(args) > 0 {
		return "", &errParamNotAllowed
	}
	if len(s.errs) == 0 {
		return `0,"No error"`, nil
	}
	e := s.errs[0]
	s.errs = s.errs[1:]
	return e.String(), nil
}

func (s *Supply) selectNumber(args []string) *scpiError {
	if e := one(args); e != nil {
		return e
	}
	n, err := strconv.ParseFloat(args[0], 64)
	switch {
	case err != nil:
		return &errDataType
	case n != 1:
		return &errOutOfRange
	}
	return nil
}

func (s *Supply) selectName(args []string) *scpiError {
	if e := one(args); e != nil {
		return e
	}
	switch strings.ToUpper(args[0]) {
	case "CH1", "OUT1", "OUTP1", "OUTPUT1", "1":
		return nil
	}
	return &errIllegalParam
}

func one(args []string) *scpiError {
	switch len(args) {
	case 0:
		return &errMissingParam
	case 1:
		return nil
	}
	return &errParamNotAllowed
}

func (s *Supply) setVoltage(args []string) *scpiError {
	if e := one(args); e != nil {
		return e
	}
	v, e := number(args[0], volts, 0, s.opts.MaxVoltage, s.opts.Nominal)
	if e != nil {
		return e
	}
	s.load.SetVoltage(v)
	return nil
}

func (s *Supply) voltage(args []string) (string, *scpiError) {
	v, e := limitQuery(args, s.load.Voltage(), 0, s.opts.MaxVoltage, s.opts.Nominal)
	return format(v), e
}

func (s *Supply) setCurrent(args []string) *scpiError {
	if e := one(args); e != nil {
		return e
	}
	a, e := number(args[0], amps, 0, s.opts.MaxCurrent, s.opts.CurrentLimit)
	if e != nil {
		return e
	}
	s.limit = a
	return nil
}

func (s *Supply) current(args []string) (string, *scpiError) {
	a, e := limitQuery(args, s.limit, 0, s.opts.MaxCurrent, s.opts.CurrentLimit)
	return format(a), e
}

// limitQuery answers VOLT? and CURR?, or with MIN, MAX or DEF the bound.
func limitQuery(args []string, cur, lo, hi, def float64) (float64, *scpiError) {
	switch len(args) {
	case 0:
		return cur, nil
	case 1:
		switch strings.ToUpper(args[0]) {
		case "MIN", "MINIMUM":
			return lo, nil
		case "MAX", "MAXIMUM":
			return hi, nil
		case "DEF", "DEFAULT":
			return def, nil
		}
		return 0, &errIllegalParam
	}
	return 0, &errParamNotAllowed
}

func (s *Supply) apply(args []string) *scpiError {
	if len(args) == 0 {
		return &errMissingParam
	}
	if len(args) > 2 {
		return &errParamNotAllowed
	}
	v, e := number(args[0], volts, 0, s.opts.MaxVoltage, s.opts.Nominal)
	if e != nil {
		return e
	}
	a := s.limit
	if len(args) == 2 {
		if a, e = number(args[1], amps, 0, s.opts.MaxCurrent, s.opts.CurrentLimit); e != nil {
			return e
		}
	}
	s.load.SetVoltage(v)
	s.limit = a
	return nil
}

func (s *Supply) applied(args []string) (string, *scpiError) {
	if len(args) > 0 {
		return "", &errParamNotAllowed
	}
	return format(s.load.Voltage()) + "," + format(s.limit), nil
}

func (s *Supply) setOutput(args []string) *scpiError {
	if e := one(args); e != nil {
		return e
	}
	var on bool
	switch strings.ToUpper(args[0]) {
	case "ON", "1":
		on = true
	case "OFF", "0":
	default:
		return &errIllegalParam
	}
	if on && !s.load.PowerInput() {
		s.lastMeas = time.Now() // the meter's window starts with the output
	}
	s.load.SetPower(on)
	return nil
}

func (s *Supply) output(args []string) (string, *scpiError) {
	if len(args) > 0 {
		return "", &errParamNotAllowed
	}
	if s.load.PowerInput() {
		return "1", nil
	}
	return "0", nil
}

func (s *Supply) measVoltage(args []string) (string, *scpiError) {
	if len(args) > 0 {
		return "", &errParamNotAllowed
	}
	return format(s.outputVoltage()), nil
}

func (s *Supply) outputVoltage() float64 {
	if !s.load.PowerInput() {
		return 0
	}
	return s.load.Voltage()
}

func (s *Supply) measCurrent(args []string) (string, *scpiError) {
	if len(args) > 0 {
		return "", &errParamNotAllowed
	}
	return format(s.meanCurrent()), nil
}

func (s *Supply) measPower(args []string) (string, *scpiError) {
	if len(args) > 0 {
		return "", &errParamNotAllowed
	}
	return format(s.outputVoltage() * s.meanCurrent()), nil
}

// meanCurrent integrates the load's current since the previous
// measurement, over MinAperture to MaxAperture, clamped to the current
// limit; 0 with the output off.
func (s *Supply) meanCurrent() float64 {
	now := time.Now()
	from := s.lastMeas
	if !s.load.PowerInput() {
		s.lastMeas = now
		return 0
	}
	if from.IsZero() || now.Sub(from) > MaxAperture {
		from = now.Add(-MaxAperture)
	}
	if d := MinAperture - now.Sub(from); d > 0 {
		time.Sleep(d)
		now = time.Now()
	}
	i := (s.load.ChargeAt(now) - s.load.ChargeAt(from)) / now.Sub(from).Seconds()
	s.lastMeas = now
	return max(0, min(i, s.limit))
}

// format prints a level with six decimals (µV, µA, µW).
func format(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }

// units of a numeric parameter: suffixes and their multipliers, longest
// first.
type unit []struct {
	suffix string
	mult   float64
}

var (
	volts = unit{{"MV", 1e-3}, {"UV", 1e-6}, {"V", 1}}
	amps  = unit{{"MA", 1e-3}, {"UA", 1e-6}, {"A", 1}}
)

// number reads a numeric parameter: a decimal number with an optional
// unit (3.3, 3300mV, 0.1A, 100 mA), or MIN, MAX or DEF; it must lie in
// [lo, hi].
func number(arg string, u unit, lo, hi, def float64) (float64, *scpiError) {
	a := strings.ToUpper(strings.ReplaceAll(arg, " ", ""))
	switch a {
	case "MIN", "MINIMUM":
		return lo, nil
	case "MAX", "MAXIMUM":
		return hi, nil
	case "DEF", "DEFAULT":
		return def, nil
	}
	mult := 1.0
	for _, x := range u {
		if t, ok := strings.CutSuffix(a, x.suffix); ok {
			a, mult = t, x.mult
			break
		}
	}
	if a == "" || strings.Trim(a, "+-.0123456789E") != "" {
		return 0, &errDataType // no hex, no words: ParseFloat takes more than SCPI's decimal form
	}
	v, err := strconv.ParseFloat(a, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, &errDataType
	}
	v *= mult
	if v < lo || v > hi {
		return 0, &errOutOfRange
	}
	return v, nil
}

// String describes the supply's settings, for logs.
func (s *Supply) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("supply %s: %s V, limit %s A, output %v", s.opts.Name, format(s.load.Voltage()), format(s.limit), s.load.PowerInput())
}
