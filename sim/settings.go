package sim

import (
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/internal/config"
)

// A bench file describes a simulated board in its sim: section. The
// inventory keeps that section undecoded and hands it here, so that the
// simulator alone knows its keys and rules.

// Section is a board's sim: section as the bench inventory hands it over.
type Section interface {
	// Decode decodes the section strictly into v, a struct with yaml
	// tags; errors are *config.Error with file:line:column.
	Decode(v any) error
	// Errorf makes a *config.Error at the section's position.
	Errorf(format string, a ...any) error
	// Dir is the bench file's directory, against which relative paths
	// are read.
	Dir() string
}

// Settings are the keys of a sim: section. Each validated value has its
// own type whose UnmarshalYAML checks it, so that a bad value is reported
// at its own line and column.
type Settings struct {
	Strategy    Strategy      `yaml:"strategy"`
	Flash       FlashSettings `yaml:"flash"`
	TimeScale   TimeScale     `yaml:"time_scale"`
	BootDelay   Duration      `yaml:"boot_delay"`
	NetDelay    Duration      `yaml:"net_delay"`
	CoAP        []ListenAddr  `yaml:"coap"`
	CoAPS       OptionalAddr  `yaml:"coaps"`
	PSKIdentity PSKIdentity   `yaml:"psk_identity"`
	PSKFile     PSKFile       `yaml:"psk_file"`
	GDB         OptionalAddr  `yaml:"gdb"`
	ConsoleLink string        `yaml:"console_link"`
	Reenumerate bool          `yaml:"reenumerate"`
	// The cached security context (docs/protocol.md).
	OSCORE           OptionalAddr `yaml:"oscore"`
	OSCORESecretFile PSKFile      `yaml:"oscore_secret_file"`
	DTLSCache        Choice       `yaml:"dtls_cache"`
	SSNPersist       Choice       `yaml:"ssn_persist"`
	SSNWindow        int          `yaml:"ssn_window"`
	ReplayAfterBoot  Choice       `yaml:"replay_after_boot"`
	// What an image booted in test mode does (ab-swap, ab-direct).
	Confirm Choice `yaml:"confirm"`
	// When the bootloader serves MCUmgr SMP on the console.
	SerialRecovery SerialRecoverySetting `yaml:"serial_recovery"`
	// Q-Block1 (RFC 9177): MAX_PAYLOADS and NON_RECEIVE_TIMEOUT.
	MaxPayloads       MaxPayloads `yaml:"max_payloads"`
	NonReceiveTimeout Duration    `yaml:"non_receive_timeout"`
	// The electrical model (electrical.go) and the bench supply.
	NominalV    Volts           `yaml:"nominal_v"`
	BOR         Volts           `yaml:"bor"`
	FlashMin    Volts           `yaml:"flash_min"`
	WeakProgram Probability     `yaml:"weak_program"`
	Current     CurrentSettings `yaml:"current"`
	Supply      SupplySetting   `yaml:"supply"`
}

// CurrentSettings are the keys of a sim: section's current: mapping, the
// board's CurrentModel.
type CurrentSettings struct {
	Boot     Amps `yaml:"boot"`
	App      Amps `yaml:"app"`
	Recovery Amps `yaml:"recovery"`
	Halted   Amps `yaml:"halted"`
	Erase    Amps `yaml:"erase"`
	Program  Amps `yaml:"program"`
}

// SupplySetting is supply: true or false, or a mapping {tcp: ADDRESS,
// serial: BOOL}: a SCPI bench supply whose output powers the board.
type SupplySetting struct {
	On     bool
	TCP    OptionalAddr
	Serial bool
}

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (v *SupplySetting) UnmarshalYAML(n ast.Node) error {
	var pairs []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	default:
		return scalar(n, "supply", func(s string) error {
			b, err := strconv.ParseBool(s)
			if err != nil || s != "true" && s != "false" {
				return fmt.Errorf("supply %q: want true, false or a mapping {tcp: ADDRESS, serial: true}", s)
			}
			*v = SupplySetting{On: b}
			return nil
		})
	}
	*v = SupplySetting{On: true}
	for _, kv := range pairs {
		key, _ := config.ScalarText(kv.Key)
		var err error
		switch key {
		case "tcp":
			err = v.TCP.UnmarshalYAML(kv.Value)
		case "serial":
			err = scalar(kv.Value, "serial", func(s string) error {
				switch s {
				case "true", "false":
					v.Serial = s == "true"
					return nil
				}
				return fmt.Errorf("serial %q: want true or false", s)
			})
		default:
			return &config.PosError{Pos: config.PosOf(kv.Key), Err: fmt.Errorf("unknown field %q in supply: want tcp or serial", key)}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Volts is a voltage above 0 and at most 20 V, written as 1.8V, 1800mV
// or 1.8; it keeps its position for the checks across keys.
type Volts struct {
	V   float64
	pos config.Pos
}

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (v *Volts) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "voltage", func(s string) error {
		f, err := parseUnit(s, "V")
		if err != nil || !(f > 0) || f > maxVolts {
			return fmt.Errorf("voltage %q: want above 0 and at most %gV, such as 1.8V or 1800mV", s, float64(maxVolts))
		}
		v.V, v.pos = f, config.PosOf(n)
		return nil
	})
}

// Amps is a current above 0 and at most 10 A, written as 5mA, 4500uA,
// 0.005A or 0.005.
type Amps float64

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (a *Amps) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "current", func(s string) error {
		f, err := parseUnit(s, "A")
		if err != nil || !(f > 0) || f > 10 {
			return fmt.Errorf("current %q: want above 0 and at most 10A, such as 5mA or 4500uA", s)
		}
		*a = Amps(f)
		return nil
	})
}

// Probability is a number from 0 to 1.
type Probability float64

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (p *Probability) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "probability", func(s string) error {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(f > 0) || f > 1 {
			return fmt.Errorf("weak_program %s: want a probability per bit above 0 and at most 1", s)
		}
		*p = Probability(f)
		return nil
	})
}

// parseUnit reads a decimal number with an optional unit sym ("V", "A")
// and prefix m (milli) or u/µ (micro): "1.8V", "1800mV", "4500uA", "1.8".
func parseUnit(s, sym string) (float64, error) {
	return config.ParseQuantity(s, sym)
}

// SerialRecoverySetting is serial_recovery: halted, off or "wait
// DURATION".
type SerialRecoverySetting string

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (v *SerialRecoverySetting) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "value", func(s string) error {
		if _, err := ParseSerialRecovery(s); err != nil {
			return err
		}
		*v = SerialRecoverySetting(s)
		return nil
	})
}

// Choice is a setting's value from a fixed list, kept with its position
// so that ConfigFromSection can check it against its key's list.
type Choice struct {
	V   string
	pos config.Pos
}

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (c *Choice) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "value", func(v string) error {
		c.V, c.pos = v, config.PosOf(n)
		return nil
	})
}

// FlashSettings are the keys of a sim: section's flash: mapping.
type FlashSettings struct {
	Size        FlashSize    `yaml:"size"`
	Sector      SectorSize   `yaml:"sector"`
	Layout      FlashLayout  `yaml:"layout"`
	WriteAlign  WriteAlign   `yaml:"write_align"`
	Erased      *ErasedValue `yaml:"erased"` // nil: 0xff
	ProgramTime Duration     `yaml:"program_time"`
	EraseTime   Duration     `yaml:"erase_time"`
	Base        Address      `yaml:"base"`
}

// ConfigFromSection decodes a board's sim: section strictly and validates
// it into the board's Config; unset keys keep Config's defaults. Every
// error is a *config.Error at the offending value. A relative psk_file is
// read from sec.Dir(). time_scale defaults to 0 (instant), which also
// makes boot_delay and net_delay instant.
func ConfigFromSection(name string, sec Section) (Config, error) {
	if name == "" {
		return Config{}, sec.Errorf("a simulated board needs a name")
	}
	var s Settings
	if err := sec.Decode(&s); err != nil {
		return Config{}, err
	}
	c := Config{
		Name:        name,
		Strategy:    s.Strategy,
		FlashSize:   int(s.Flash.Size),
		SectorSize:  int(s.Flash.Sector),
		Layout:      string(s.Flash.Layout),
		WriteAlign:  int(s.Flash.WriteAlign),
		ErasedZero:  s.Flash.Erased != nil && *s.Flash.Erased == 0x00,
		FlashBase:   uint32(s.Flash.Base),
		ProgramTime: time.Duration(s.Flash.ProgramTime),
		EraseTime:   time.Duration(s.Flash.EraseTime),
		TimeScale:   float64(s.TimeScale),
		BootDelay:   time.Duration(s.BootDelay),
		NetDelay:    time.Duration(s.NetDelay),
		DTLSAddr:    string(s.CoAPS),
		PSKIdentity: string(s.PSKIdentity),
		GDBAddr:     string(s.GDB),
		ConsoleLink: s.ConsoleLink,
		Reenumerate: s.Reenumerate,

		SerialRecovery:    string(s.SerialRecovery),
		MaxPayloads:       int(s.MaxPayloads),
		NonReceiveTimeout: time.Duration(s.NonReceiveTimeout),

		NominalVoltage: s.NominalV.V,
		BOR:            s.BOR.V,
		FlashMin:       s.FlashMin.V,
		WeakProgram:    float64(s.WeakProgram),
		Current: CurrentModel{
			Boot: float64(s.Current.Boot), App: float64(s.Current.App), Recovery: float64(s.Current.Recovery),
			Halted: float64(s.Current.Halted), Erase: float64(s.Current.Erase), Program: float64(s.Current.Program),
		},
		Supply:       s.Supply.On,
		SupplyAddr:   string(s.Supply.TCP),
		SupplySerial: s.Supply.Serial,
	}
	if err := checkVolts(sec, s); err != nil {
		return Config{}, err
	}
	for _, a := range s.CoAP {
		c.UDPAddrs = append(c.UDPAddrs, string(a))
	}
	for _, ch := range []struct {
		key  string
		v    Choice
		want []string
		dst  *string
	}{
		{"dtls_cache", s.DTLSCache, []string{DTLSCacheNone, DTLSCacheSession, DTLSCacheState}, &c.DTLSCache},
		{"ssn_persist", s.SSNPersist, []string{SSNWindow, SSNNone}, &c.SSNPersist},
		{"replay_after_boot", s.ReplayAfterBoot, []string{ReplayChallenge, ReplayAccept}, &c.ReplayAfterBoot},
		{"confirm", s.Confirm, []string{ConfirmBoot, ConfirmNever}, &c.Confirm},
	} {
		if ch.v.V == "" {
			continue
		}
		if !slices.Contains(ch.want, ch.v.V) {
			return Config{}, errAt(sec, ch.v.pos, "%s %q: want %s", ch.key, ch.v.V, strings.Join(ch.want, ", "))
		}
		*ch.dst = ch.v.V
	}
	if s.SSNWindow < 0 || s.SSNWindow > 1<<20 {
		return Config{}, sec.Errorf("ssn_window %d: want 1 to %d", s.SSNWindow, 1<<20)
	}
	c.SSNWindowSize = s.SSNWindow
	if s.OSCORE != "" && s.OSCORE != "-" {
		p := DevOSCORE()
		c.OSCORE, c.OSCOREAddr = &p, string(s.OSCORE)
		if s.OSCORESecretFile.Path != "" {
			path := s.OSCORESecretFile.Path
			if !filepath.IsAbs(path) {
				path = filepath.Join(sec.Dir(), path)
			}
			secret, err := config.ReadPSK(path)
			if err != nil {
				return Config{}, errAt(sec, s.OSCORESecretFile.pos, "oscore_secret_file: %v", err)
			}
			p.MasterSecret = secret
		}
	}
	if s.PSKFile.Path != "" {
		path := s.PSKFile.Path
		if !filepath.IsAbs(path) {
			path = filepath.Join(sec.Dir(), path)
		}
		psk, err := config.ReadPSK(path)
		if err != nil {
			return Config{}, errAt(sec, s.PSKFile.pos, "psk_file: %v", err)
		}
		c.PSK = psk
	}
	return c, nil
}

// checkVolts checks the thresholds against each other, defaults filled
// in: bor below flash_min, flash_min at most nominal_v. The error stands
// at the first of the two that the section sets.
func checkVolts(sec Section, s Settings) error {
	val := func(v Volts, def float64) float64 {
		if v.V == 0 {
			return def
		}
		return v.V
	}
	at := func(a, b Volts) config.Pos {
		if a.pos.Line > 0 {
			return a.pos
		}
		return b.pos
	}
	bor, fmin, nom := val(s.BOR, DefaultBOR), val(s.FlashMin, DefaultFlashMin), val(s.NominalV, DefaultNominalVoltage)
	switch {
	case bor >= fmin:
		return errAt(sec, at(s.BOR, s.FlashMin), "bor %gV must be below flash_min %gV (flash programming fails before the CPU resets)", bor, fmin)
	case fmin > nom:
		return errAt(sec, at(s.FlashMin, s.NominalV), "flash_min %gV is above nominal_v %gV: the board could never program its flash reliably", fmin, nom)
	}
	return nil
}

// errAt makes a *config.Error at p in the section's file: Section knows
// the file, the caller knows the position.
func errAt(sec Section, p config.Pos, format string, a ...any) error {
	err := sec.Errorf(format, a...)
	var ce *config.Error
	if p.Line > 0 && errors.As(err, &ce) {
		at := *ce
		at.Line, at.Column = p.Line, p.Column
		return &at
	}
	return err
}

// scalar feeds a scalar value's text to parse through config.Scalar, so
// that an error keeps the value's position; a list or a mapping is an
// error of its own.
func scalar(n ast.Node, what string, parse func(string) error) error {
	switch n.Type() {
	case ast.MappingType, ast.MappingValueType, ast.SequenceType:
		return &config.PosError{Pos: config.PosOf(n), Err: fmt.Errorf("%s: want a single value, got %s", what, config.KindName(n))}
	}
	return config.Scalar(n, parse)
}

// UnmarshalYAML reads a strategy: inplace-recovery, naive-inplace,
// ab-overwrite, ab-swap or ab-direct.
func (s *Strategy) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "strategy", func(v string) error {
		if slices.Contains(Strategies, Strategy(v)) {
			*s = Strategy(v)
			return nil
		}
		return fmt.Errorf("unknown strategy %q: want %s", v, strategyList())
	})
}

// FlashSize is a flash size from 64 KiB to 64 MiB, written as 524288,
// 512KiB or 1MiB; 0 means the default.
type FlashSize int

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (z *FlashSize) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "flash size", func(v string) error {
		b, err := config.ParseSize(v)
		if err != nil {
			return err
		}
		if b != 0 && (b < 64<<10 || b > 64<<20) {
			return fmt.Errorf("flash size %d: want 64KiB to 64MiB", b)
		}
		*z = FlashSize(b)
		return nil
	})
}

// SectorSize is a sector size, a power of two of at least 512 bytes; 0
// means the default.
type SectorSize int

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (z *SectorSize) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "sector size", func(v string) error {
		b, err := config.ParseSize(v)
		if err != nil {
			return err
		}
		if b != 0 && (b < 512 || b&(b-1) != 0) {
			return fmt.Errorf("sector size %d: want a power of two of at least 512", b)
		}
		*z = SectorSize(b)
		return nil
	})
}

// FlashLayout is a sector layout: uniform or stm32f4.
type FlashLayout string

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (l *FlashLayout) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "flash layout", func(v string) error {
		switch v {
		case "uniform", "stm32f4":
			*l = FlashLayout(v)
			return nil
		}
		return fmt.Errorf("unknown flash layout %q: want uniform or stm32f4", v)
	})
}

// WriteAlign is the flash write unit in bytes: 1, 4 or 8.
type WriteAlign int

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (w *WriteAlign) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "write_align", func(v string) error {
		switch v {
		case "1", "4", "8":
			a, _ := strconv.Atoi(v)
			*w = WriteAlign(a)
			return nil
		}
		return fmt.Errorf("write_align %s: want 1, 4 or 8", v)
	})
}

// ErasedValue is the value of erased flash: 0xff or 0x00.
type ErasedValue uint8

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (e *ErasedValue) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "erased", func(v string) error {
		b, err := strconv.ParseUint(v, 0, 8)
		if err != nil {
			return fmt.Errorf("byte %q: want 0x00-0xff", v)
		}
		if b != 0xFF && b != 0x00 {
			return fmt.Errorf("erased value %#x: want 0xff or 0x00", b)
		}
		*e = ErasedValue(b)
		return nil
	})
}

// Address is a 32-bit address written as 0x08000000.
type Address uint32

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (a *Address) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "address", func(v string) error {
		u, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			return fmt.Errorf("address %q: want a 32-bit number such as 0x08000000", v)
		}
		*a = Address(u)
		return nil
	})
}

// maxDuration bounds the simulated times: an hour is past any boot or
// flash time, and keeps a duration scaled by time_scale far from overflow.
const maxDuration = time.Hour

// Duration is a non-negative time written as 20ms or 1.5s.
type Duration time.Duration

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (d *Duration) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "duration", func(v string) error {
		t, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("duration %q: want e.g. 20ms or 1.5s", v)
		}
		if t < 0 {
			return fmt.Errorf("duration %q is negative", v)
		}
		if t > maxDuration {
			return fmt.Errorf("duration %q is more than %v", v, maxDuration)
		}
		*d = Duration(t)
		return nil
	})
}

// TimeScale multiplies the simulated times: 0 (instant) to 1000.
type TimeScale float64

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (t *TimeScale) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "time_scale", func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || f < 0 || f > 1000 {
			return fmt.Errorf("time_scale %s: want 0 (instant) to 1000", v)
		}
		*t = TimeScale(f)
		return nil
	})
}

// MaxPayloads is the Q-Block1 MAX_PAYLOADS, 1 to 64.
type MaxPayloads int

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (m *MaxPayloads) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "max_payloads", func(v string) error {
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 || i > 64 {
			return fmt.Errorf("max_payloads %s: want 1 to 64 blocks", v)
		}
		*m = MaxPayloads(i)
		return nil
	})
}

// ListenAddr is a UDP address to serve on: host:port, [addr]:port for
// IPv6, port 0 for any free port.
type ListenAddr string

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (a *ListenAddr) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "address", func(v string) error {
		if err := checkHostPort(v); err != nil {
			return err
		}
		*a = ListenAddr(v)
		return nil
	})
}

// OptionalAddr is a ListenAddr, or "-" to leave the interface out.
type OptionalAddr string

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (a *OptionalAddr) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "address", func(v string) error {
		if v != "-" {
			if err := checkHostPort(v); err != nil {
				return fmt.Errorf("%w, or - to leave it out", err)
			}
		}
		*a = OptionalAddr(v)
		return nil
	})
}

func checkHostPort(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("address %q: want host:port ([addr]:port for IPv6)", v)
	}
	return nil
}

// PSKIdentity is a DTLS PSK identity of 1 to 32 bytes.
type PSKIdentity string

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (p *PSKIdentity) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "psk_identity", func(v string) error {
		if v == "" || len(v) > maxPSKIdentity {
			return fmt.Errorf("psk_identity %q: want 1 to %d bytes (the recovery record caches it)", v, maxPSKIdentity)
		}
		*p = PSKIdentity(v)
		return nil
	})
}

// PSKFile is the path of a pre-shared key file, relative to the bench
// file's directory unless absolute. It keeps its position: the file is
// read only once the section is decoded.
type PSKFile struct {
	Path string
	pos  config.Pos
}

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (p *PSKFile) UnmarshalYAML(n ast.Node) error {
	return scalar(n, "psk_file", func(v string) error {
		p.Path, p.pos = v, config.PosOf(n)
		return nil
	})
}
