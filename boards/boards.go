// Package boards is the bench inventory: a YAML file that lists boards and
// how each is wired. Decoding is strict — an unknown key, a wrong type or
// a bad value is an error naming the file, line and column — and happens
// before anything is powered.
//
// Today a board entry carries its name, its tags and, for simulated
// boards, a sim section that `fudbench sim` serves. See docs/bench.md.
package boards

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/fudbench/fudbench/power"
)

// ErrConfig marks every configuration error (exit code 2 in the CLI).
var ErrConfig = errors.New("configuration error")

// ConfigError is a configuration error at a place in a file.
type ConfigError struct {
	File         string
	Line, Column int // 0 when unknown
	Msg          string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

func (e *ConfigError) Unwrap() error { return ErrConfig }

// Bench is a decoded bench file.
type Bench struct {
	File   string  `yaml:"-"`
	Boards []Board `yaml:"boards"`
}

// Board is one board of the bench: passive data on what is wired where.
// Drivers act on it; their own settings are decoded strictly by the
// driver through a DriverConfig.
type Board struct {
	Name    string        `yaml:"name"`
	Tags    []string      `yaml:"tags"`
	Power   *DriverConfig `yaml:"power"`
	Probe   *DriverConfig `yaml:"probe"`
	Console *Console      `yaml:"console"`
	CoAP    *CoAP         `yaml:"coap"`
	Flash   *Flash        `yaml:"flash"`
	Sim     *Sim          `yaml:"sim"`
}

// Console is how a board's serial console is reached.
type Console struct {
	Port     string    `yaml:"port"` // path or stable symlink
	USB      *USBMatch `yaml:"usb"`  // or a USB adapter's identity
	Baud     int       `yaml:"baud"`
	Patterns Patterns  `yaml:"patterns"`
}

// USBMatch finds a USB serial adapter again after it re-enumerates.
type USBMatch struct {
	VID    string `yaml:"vid"`
	PID    string `yaml:"pid"`
	Serial string `yaml:"serial"`
}

// Patterns are regular expressions for console lines.
type Patterns struct {
	Boot     string `yaml:"boot"`
	App      string `yaml:"app"`
	Recovery string `yaml:"recovery"`
}

// CoAP is a board's update endpoint.
type CoAP struct {
	Address string `yaml:"address"` // host:port; IPv6 as [addr]:port
	Profile string `yaml:"profile"` // resumable (default) | block1
	Path    string `yaml:"path"`    // block1 resource, default /fw
	DTLS    *DTLS  `yaml:"dtls"`
}

// DTLS is a pre-shared key identity and where its key is kept. The key
// itself never appears in a bench file, a log or a result.
type DTLS struct {
	Identity string `yaml:"identity"`
	KeyFile  string `yaml:"key_file"` // or
	KeyEnv   string `yaml:"key_env"`  // the name of an environment variable
}

// Flash describes a board's flash as the bench needs it.
type Flash struct {
	Size     Size  `yaml:"size"`
	SlotSize Size  `yaml:"slot_size"` // room for an update image
	Base     Hex32 `yaml:"base"`
	AppAddr  Hex32 `yaml:"app_address"` // where a probe writes the app image
	// EraseFrom starts the range a baseline flash over the probe erases
	// first, up to the end of flash: records, journals and counters as
	// well as the app slot (a mass erase that keeps the bootloader).
	EraseFrom Hex32 `yaml:"erase_from"`
}

// DriverConfig is a driver name and the driver's own settings, kept as a
// YAML node so the driver decodes them strictly with positions.
type DriverConfig struct {
	Driver string
	file   string
	node   *ast.MappingNode
	pos    [2]int
}

// UnmarshalYAML keeps the node.
func (d *DriverConfig) UnmarshalYAML(n ast.Node) error {
	m, ok := n.(*ast.MappingNode)
	if !ok {
		return fmt.Errorf("want a mapping with a driver: key")
	}
	d.node = m
	d.pos = nodePos(n)
	for _, v := range m.Values {
		if v.Key.String() == "driver" {
			d.Driver = strings.Trim(v.Value.String(), `"'`)
		}
	}
	return nil
}

// Decode implements power.Settings and the probe drivers' settings: the
// mapping without its driver key, decoded strictly into v.
func (d *DriverConfig) Decode(v any) error {
	if d.node == nil {
		return nil
	}
	rest := *d.node
	rest.Values = nil
	for _, mv := range d.node.Values {
		if mv.Key.String() != "driver" {
			rest.Values = append(rest.Values, mv)
		}
	}
	if len(rest.Values) == 0 {
		return nil
	}
	if err := yaml.NodeToValue(&rest, v, yaml.DisallowUnknownField()); err != nil {
		return yamlError(d.file, err)
	}
	return nil
}

// Pos is the driver entry's line and column.
func (d *DriverConfig) Pos() (line, col int) { return d.pos[0], d.pos[1] }

// Errorf makes a ConfigError at the driver entry.
func (d *DriverConfig) Errorf(format string, a ...any) error {
	return &ConfigError{File: d.file, Line: d.pos[0], Column: d.pos[1], Msg: fmt.Sprintf(format, a...)}
}

// Sim configures a simulated board (boards/sim).
type Sim struct {
	Strategy    string   `yaml:"strategy"` // inplace-recovery | naive-inplace
	Flash       SimFlash `yaml:"flash"`
	TimeScale   *float64 `yaml:"time_scale"`
	BootDelay   Duration `yaml:"boot_delay"`
	CoAP        []string `yaml:"coap"`
	CoAPS       string   `yaml:"coaps"`
	PSKIdentity string   `yaml:"psk_identity"`
	PSKFile     string   `yaml:"psk_file"`
	GDB         string   `yaml:"gdb"`
	ConsoleLink string   `yaml:"console_link"`
	Reenumerate bool     `yaml:"reenumerate"`
}

// SimFlash is the flash of a simulated board.
type SimFlash struct {
	Size        Size     `yaml:"size"`
	Sector      Size     `yaml:"sector"`
	Layout      string   `yaml:"layout"` // uniform | stm32f4
	WriteAlign  int      `yaml:"write_align"`
	Erased      *Hex8    `yaml:"erased"`
	ProgramTime Duration `yaml:"program_time"`
	EraseTime   Duration `yaml:"erase_time"`
	Base        Hex32    `yaml:"base"`
}

// Size is a byte count written as 524288, 512KiB or 1MiB.
type Size int

var sizeRE = regexp.MustCompile(`^\s*(\d+)\s*(|B|KiB|K|k|KB|MiB|M|MB)\s*$`)

// ParseSize reads a Size.
func ParseSize(s string) (Size, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with KiB or MiB", s)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	switch m[2] {
	case "KiB", "K", "k", "KB":
		n <<= 10
	case "MiB", "M", "MB":
		n <<= 20
	}
	return Size(n), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	*s = v
	return err
}

// Duration is a time.Duration written as "20ms", "1.5s".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want e.g. 20ms or 1.5s", b)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// Hex8 is a byte written as 0xff or 255.
type Hex8 uint8

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hex8) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 0, 8)
	if err != nil {
		return fmt.Errorf("byte %q: want 0x00-0xff", b)
	}
	*h = Hex8(v)
	return nil
}

// Hex32 is an address written as 0x08000000.
type Hex32 uint32

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hex32) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 0, 32)
	if err != nil {
		return fmt.Errorf("address %q: want a 32-bit number such as 0x08000000", b)
	}
	*h = Hex32(v)
	return nil
}

// posError is a value error at a node; yamlError adds the file name.
type posError struct {
	line, col int
	err       error
}

func (e *posError) Error() string { return e.err.Error() }

// scalar feeds a scalar node's text to parse, keeping its position for
// errors (goccy reports none for a custom type's own errors).
func scalar(n ast.Node, parse func([]byte) error) error {
	text := strings.Trim(n.String(), `"'`)
	if err := parse([]byte(text)); err != nil {
		p := nodePos(n)
		return &posError{line: p[0], col: p[1], err: err}
	}
	return nil
}

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (s *Size) UnmarshalYAML(n ast.Node) error { return scalar(n, s.UnmarshalText) }

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (d *Duration) UnmarshalYAML(n ast.Node) error { return scalar(n, d.UnmarshalText) }

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (h *Hex8) UnmarshalYAML(n ast.Node) error { return scalar(n, h.UnmarshalText) }

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (h *Hex32) UnmarshalYAML(n ast.Node) error { return scalar(n, h.UnmarshalText) }

// Load reads and validates a bench file.
func Load(path string) (*Bench, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("cannot read bench file: %v", err)}
	}
	return Parse(path, data)
}

// Parse decodes and validates bench file contents; name is used in errors.
func Parse(name string, data []byte) (*Bench, error) {
	if err := CheckUTF8(name, data); err != nil {
		return nil, err
	}
	var b Bench
	dec := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField(), yaml.UseOrderedMap())
	if err := dec.Decode(&b); err != nil {
		return nil, yamlError(name, err)
	}
	b.File = name
	if err := b.validate(name, data); err != nil {
		return nil, err
	}
	return &b, nil
}

// CheckUTF8 returns a ConfigError at the first byte of data that is not
// valid UTF-8: YAML is Unicode text, and names and patterns end up in
// reports that must stay valid text (JSON, JUnit XML).
func CheckUTF8(file string, data []byte) error {
	if utf8.Valid(data) {
		return nil
	}
	line, col := 1, 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size <= 1 {
			return &ConfigError{File: file, Line: line, Column: col, Msg: "not valid UTF-8 text"}
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		data = data[size:]
	}
	return nil
}

// yamlError turns a decoder error into a ConfigError with a position.
func yamlError(file string, err error) error {
	var pe *posError
	if errors.As(err, &pe) {
		return &ConfigError{File: file, Line: pe.line, Column: pe.col, Msg: pe.err.Error()}
	}
	var ye yaml.Error
	if errors.As(err, &ye) {
		msg := ye.GetMessage()
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return &ConfigError{File: file, Line: tk.Position.Line, Column: tk.Position.Column, Msg: msg}
		}
		return &ConfigError{File: file, Msg: msg}
	}
	msg := err.Error()
	if msg == "EOF" {
		msg = "empty file: want a boards: list"
	}
	return &ConfigError{File: file, Msg: msg}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// validate checks what the types cannot; errors point at the offending
// node through a YAML path.
func (b *Bench) validate(file string, data []byte) error {
	pos := positions(data)
	at := func(path, format string, a ...any) error {
		p := pos(path)
		return &ConfigError{File: file, Line: p[0], Column: p[1], Msg: fmt.Sprintf(format, a...)}
	}
	if len(b.Boards) == 0 {
		return at("$", "no boards: the file needs a boards: list")
	}
	seen := map[string]int{}
	for i, bd := range b.Boards {
		p := fmt.Sprintf("$.boards[%d]", i)
		if bd.Name == "" {
			return at(p, "board %d has no name", i+1)
		}
		if !nameRE.MatchString(bd.Name) {
			return at(p+".name", "board name %q: use letters, digits, '.', '_' or '-'", bd.Name)
		}
		if j, dup := seen[bd.Name]; dup {
			return at(p+".name", "duplicate board name %q (first at boards[%d])", bd.Name, j)
		}
		seen[bd.Name] = i
		if err := b.validateWiring(at, p, &b.Boards[i], file); err != nil {
			return err
		}
		if s := bd.Sim; s != nil {
			sp := p + ".sim"
			switch s.Strategy {
			case "", "inplace-recovery", "naive-inplace":
			default:
				return at(sp+".strategy", "unknown strategy %q: want inplace-recovery or naive-inplace", s.Strategy)
			}
			switch s.Flash.Layout {
			case "", "uniform", "stm32f4":
			default:
				return at(sp+".flash.layout", "unknown flash layout %q: want uniform or stm32f4", s.Flash.Layout)
			}
			switch s.Flash.WriteAlign {
			case 0, 1, 4, 8:
			default:
				return at(sp+".flash.write_align", "write_align %d: want 1, 4 or 8", s.Flash.WriteAlign)
			}
			if e := s.Flash.Erased; e != nil && *e != 0xFF && *e != 0x00 {
				return at(sp+".flash.erased", "erased value %#x: want 0xff or 0x00", uint8(*e))
			}
			if s.Flash.Size != 0 && (s.Flash.Size < 64<<10 || s.Flash.Size > 64<<20) {
				return at(sp+".flash.size", "flash size %d: want 64KiB to 64MiB", s.Flash.Size)
			}
			if sec := s.Flash.Sector; sec != 0 && (sec < 512 || sec&(sec-1) != 0) {
				return at(sp+".flash.sector", "sector size %d: want a power of two of at least 512", sec)
			}
			if s.TimeScale != nil && (*s.TimeScale < 0 || *s.TimeScale > 1000) {
				return at(sp+".time_scale", "time_scale %v: want 0 (instant) to 1000", *s.TimeScale)
			}
			if s.PSKFile != "" {
				// Made relative to the bench file by validateWiring.
				if _, err := os.Stat(s.PSKFile); err != nil {
					return at(sp+".psk_file", "psk_file: %v", err)
				}
			}
		}
	}
	return nil
}

// ProbeDrivers are the probe drivers the schema accepts.
var ProbeDrivers = []string{"gdbrsp", "openocd", "stm32uart", "probe-rs", "pyocd"}

func (b *Bench) validateWiring(at func(path, format string, a ...any) error, p string, bd *Board, file string) error {
	dir := filepath.Dir(file)
	rel := func(path string) string {
		if path == "" || filepath.IsAbs(path) {
			return path
		}
		return filepath.Join(dir, path)
	}
	if d := bd.Power; d != nil {
		d.file = file
		if d.Driver == "" {
			return at(p+".power", "power needs a driver: one of %s", strings.Join(power.Drivers(), ", "))
		}
		if !slices.Contains(power.Drivers(), d.Driver) {
			return at(p+".power.driver", "unknown power driver %q (known: %s)", d.Driver, strings.Join(power.Drivers(), ", "))
		}
	}
	if d := bd.Probe; d != nil {
		d.file = file
		if !slices.Contains(ProbeDrivers, d.Driver) {
			return at(p+".probe.driver", "unknown probe driver %q (known: %s)", d.Driver, strings.Join(ProbeDrivers, ", "))
		}
	}
	if c := bd.Console; c != nil {
		if (c.Port == "") == (c.USB == nil) {
			return at(p+".console", "console needs exactly one of port: or usb:")
		}
		if c.USB != nil && (c.USB.VID == "" || c.USB.PID == "") {
			return at(p+".console.usb", "usb match needs vid and pid")
		}
		if c.Baud < 0 || c.Baud > 12_000_000 {
			return at(p+".console.baud", "baud %d out of range", c.Baud)
		}
		for k, re := range map[string]string{"boot": c.Patterns.Boot, "app": c.Patterns.App, "recovery": c.Patterns.Recovery} {
			if _, err := regexp.Compile(re); err != nil {
				return at(p+".console.patterns."+k, "bad pattern: %v", err)
			}
		}
	}
	if c := bd.CoAP; c != nil {
		if _, _, err := net.SplitHostPort(c.Address); err != nil {
			return at(p+".coap.address", "coap address %q: want host:port ([addr]:port for IPv6): %v", c.Address, err)
		}
		switch c.Profile {
		case "", "resumable", "block1":
		default:
			return at(p+".coap.profile", "unknown profile %q: want resumable or block1", c.Profile)
		}
		if d := c.DTLS; d != nil {
			if d.Identity == "" {
				return at(p+".coap.dtls", "dtls needs an identity")
			}
			if (d.KeyFile == "") == (d.KeyEnv == "") {
				return at(p+".coap.dtls", "dtls needs exactly one of key_file or key_env")
			}
			if d.KeyFile != "" {
				d.KeyFile = rel(d.KeyFile)
				if fi, err := os.Stat(d.KeyFile); err != nil {
					return at(p+".coap.dtls.key_file", "key file: %v", err)
				} else if fi.IsDir() {
					return at(p+".coap.dtls.key_file", "key file: %s is a directory", d.KeyFile)
				}
			}
		}
	}
	if s := bd.Sim; s != nil && s.PSKFile != "" {
		s.PSKFile = rel(s.PSKFile)
	}
	return nil
}

// Key reads the DTLS pre-shared key from its file or environment variable.
func (d *DTLS) Key() ([]byte, error) {
	if d.KeyEnv != "" {
		v := os.Getenv(d.KeyEnv)
		if v == "" {
			return nil, fmt.Errorf("dtls key: environment variable %s is empty", d.KeyEnv)
		}
		return []byte(v), nil
	}
	return ReadPSK(d.KeyFile)
}

// Board returns the board called name.
func (b *Bench) Board(name string) (*Board, error) {
	for i := range b.Boards {
		if b.Boards[i].Name == name {
			return &b.Boards[i], nil
		}
	}
	var names []string
	for _, bd := range b.Boards {
		names = append(names, bd.Name)
	}
	return nil, &ConfigError{File: b.File, Msg: fmt.Sprintf("no board %q (boards: %s)", name, strings.Join(names, ", "))}
}

// positions returns a function mapping a YAML path to [line, column],
// falling back to the nearest parent that exists.
func positions(data []byte) func(string) [2]int {
	f, err := parser.ParseBytes(data, 0)
	return func(path string) [2]int {
		if err != nil || len(f.Docs) == 0 {
			return [2]int{0, 0}
		}
		for p := path; p != ""; p = parent(p) {
			yp, perr := yaml.PathString(p)
			if perr != nil {
				continue
			}
			n, ferr := yp.FilterFile(f)
			if ferr == nil && n != nil {
				return nodePos(n)
			}
		}
		return [2]int{1, 1}
	}
}

func nodePos(n ast.Node) [2]int {
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return [2]int{1, 1}
	}
	return [2]int{tk.Position.Line, tk.Position.Column}
}

func parent(p string) string {
	if p == "$" {
		return ""
	}
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return "$"
	}
	return p[:i]
}

// ReadPSK reads a pre-shared key file: the key is the file's bytes with
// surrounding whitespace removed; "hex:" or "0x" prefixes mean hex.
func ReadPSK(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("psk file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		s = "0x" + h
	}
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		out := make([]byte, len(h)/2)
		if _, err := fmt.Sscanf(h, "%x", &out); err != nil || len(h)%2 != 0 {
			return nil, fmt.Errorf("psk file %s: bad hex", path)
		}
		return out, nil
	}
	if s == "" {
		return nil, fmt.Errorf("psk file %s is empty", path)
	}
	return []byte(s), nil
}
