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
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
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

// Board is one board of the bench.
type Board struct {
	Name string   `yaml:"name"`
	Tags []string `yaml:"tags"`
	Sim  *Sim     `yaml:"sim"`
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

// yamlError turns a decoder error into a ConfigError with a position.
func yamlError(file string, err error) error {
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
				if _, err := os.Stat(s.PSKFile); err != nil {
					return at(sp+".psk_file", "psk_file: %v", err)
				}
			}
		}
	}
	return nil
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
