// Package scpi is the power driver "scpi": a programmable bench supply,
// over a raw TCP socket (port 5025 of a Rigol DP800, Keysight E36xx or
// R&S HMC/NGE) or a serial port (USB-serial supplies). Importing it
// registers the driver.
//
// Settings:
//
//	address: 192.168.1.50:5025   # TCP; port 5025 when only a host is given, or
//	port: /dev/ttyUSB0           # a serial port (exactly one of the two)
//	baud: 9600                   #   serial only (default 9600)
//	parity: none                 #   serial only: none (default), even or odd
//	channel: 1                   # optional: the output of a multi-output supply
//	voltage: 3.3V                # required: the nominal level (V or mV)
//	current_limit: 0.5A          # optional, set with the voltage (A or mA)
//	max_voltage: 3.3V            # optional: SetVoltage refuses more (default: voltage)
//	timeout: 2s                  # per command and reply (default 2s)
//	dialect: scpi                # scpi (default) or korad
//	check_errors: true           # scpi: read SYST:ERR? after setting commands
//	line_end: "\n"               # what ends a command (scpi default "\n";
//	                             #   korad default none)
//
// The scpi dialect sends OUTP ON and OUTP OFF, VOLT x and CURR x, and reads
// OUTP?, MEAS:VOLT? and MEAS:CURR?; with a channel, every call starts with
// INST:NSEL n. A call that sets something ends with *OPC?, so that it
// returns once the instrument has carried the commands out (not when
// the output has settled), and a command lost on a dead connection is
// an error. With check_errors, SYST:ERR? takes the place of *OPC?: it is
// read until the instrument reports 0, and an error in the queue fails
// the call with the instrument's text; a connection then starts with
// *CLS, so that errors from before it do not count.
//
// The korad dialect is the one of the Korad KA3005P and its clones (Tenma
// 72-2540, RND 320-KA3005P, Velleman PS3005D): VSETn:x, ISETn:x, OUT1 and
// OUT0, VOUTn? and IOUTn?, and STATUS?, whose bit 6 is the output. It has
// no line ends and no error queue: the supply takes a pause in the stream
// for the end of a command, so the driver leaves 80 ms between commands,
// and a reply ends when its expected length has arrived or the line goes
// quiet.
//
// On sets the voltage (and current limit), then switches the output on;
// Off switches it off; Halt switches it off and closes the connection.
// Measure reads the output's voltage and current, one round trip each;
// SetVoltage changes the voltage and leaves the output as it is.
//
// Opening the driver checks the settings and does no I/O: the connection
// is made on the first call, kept between calls, and made again, once,
// when it fails under a call (the supply closed an idle socket). A call
// that times out drops the connection, so that a late reply is never
// taken for the next one. Calls run one at a time.
package scpi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fudbench/fudbench/internal/driverreg"
	"github.com/fudbench/fudbench/power"
)

// Driver is the name the driver registers under.
const Driver = "scpi"

// Defaults.
const (
	DefaultPort    = 5025 // the SCPI raw socket port
	DefaultBaud    = 9600
	DefaultTimeout = 2 * time.Second
)

// Levels the settings accept.
const (
	maxVolts = 1000.0
	maxAmps  = 1000.0
)

func init() {
	power.Register(Driver, open)
}

var (
	_ power.Switch      = (*Supply)(nil)
	_ power.StateReader = (*Supply)(nil)
	_ power.Meter       = (*Supply)(nil)
	_ power.Supply      = (*Supply)(nil)
	_ power.Halter      = (*Supply)(nil)
)

// Dialect is the command set a supply speaks.
type Dialect string

// Dialects.
const (
	DialectSCPI  Dialect = "scpi"  // SCPI-99 sources: OUTP, VOLT, CURR, MEAS
	DialectKorad Dialect = "korad" // Korad KA3005P and its clones
)

// Parity of a serial port.
const (
	ParityNone = "none"
	ParityEven = "even"
	ParityOdd  = "odd"
)

// Config configures a Supply.
type Config struct {
	// Address is the supply's TCP address, host or host:port (port
	// DefaultPort when left out). Exactly one of Address and Port.
	Address string
	// Port is the supply's serial port.
	Port string
	// Baud is the serial port's rate; 0 is DefaultBaud.
	Baud int
	// Parity is the serial port's parity: ParityNone ("" too),
	// ParityEven or ParityOdd. Eight data bits, one stop bit.
	Parity string
	// Channel selects an output of a multi-output supply; 0 leaves the
	// selection to the supply (scpi) or is channel 1 (korad).
	Channel int
	// Voltage is the nominal level On sets; required.
	Voltage float64
	// MaxVoltage bounds SetVoltage; 0 is Voltage.
	MaxVoltage float64
	// CurrentLimit is set with the voltage when more than 0.
	CurrentLimit float64
	// Timeout bounds each command and its reply; 0 is DefaultTimeout. A
	// caller's earlier deadline wins.
	Timeout time.Duration
	// Dialect is the command set; "" is DialectSCPI.
	Dialect Dialect
	// CheckErrors reads SYST:ERR? after setting commands (scpi only).
	CheckErrors bool
	// LineEnd ends each command: "\n", "\r\n" or "\r"; "" is the
	// dialect's ("\n" for scpi, nothing for korad).
	LineEnd string
}

// Supply is a bench supply driven over SCPI or the Korad protocol. Its
// methods are safe for concurrent use; they run one at a time.
type Supply struct {
	cfg     Config
	name    string
	addr    string // host:port, for TCP
	lineEnd string

	sem  chan struct{} // one call at a time; guards the fields below
	link *link         // nil until first use and after a failure
	last time.Time     // korad: when the last command or reply went
}

// New checks c and returns a Supply. It does no I/O.
func New(c Config) (*Supply, error) {
	s := &Supply{sem: make(chan struct{}, 1)}
	switch {
	case c.Address != "" && c.Port != "":
		return nil, errors.New("address and port: give one of them, not both")
	case c.Address != "":
		a, err := hostPort(c.Address)
		if err != nil {
			return nil, fmt.Errorf("address: %w", err)
		}
		if c.Baud != 0 || c.Parity != "" {
			return nil, errors.New("baud and parity: only with port (a serial supply)")
		}
		c.Address, s.addr, s.name = a, a, Driver+":"+a
	case c.Port != "":
		switch {
		case c.Baud == 0:
			c.Baud = DefaultBaud
		case c.Baud < 0:
			return nil, fmt.Errorf("baud: %d is negative", c.Baud)
		}
		switch c.Parity {
		case "":
			c.Parity = ParityNone
		case ParityNone, ParityEven, ParityOdd:
		default:
			return nil, fmt.Errorf("parity: %q is not none, even or odd", c.Parity)
		}
		s.name = Driver + ":" + c.Port
	default:
		return nil, errors.New("address or port: required (the supply's TCP address, or its serial port)")
	}
	switch c.Dialect {
	case "":
		c.Dialect = DialectSCPI
	case DialectSCPI, DialectKorad:
	default:
		return nil, fmt.Errorf("dialect: %q is not scpi or korad", c.Dialect)
	}
	maxChannel := 99
	if c.Dialect == DialectKorad {
		maxChannel = 9
	}
	if c.Channel < 0 || c.Channel > maxChannel {
		return nil, fmt.Errorf("channel: %d out of range (1 to %d)", c.Channel, maxChannel)
	}
	if err := checkLevel("voltage", c.Voltage, "V", maxVolts); err != nil {
		return nil, err
	}
	if c.Voltage == 0 {
		return nil, errors.New("voltage: required (the level On sets, such as 3.3V)")
	}
	if err := checkLevel("max_voltage", c.MaxVoltage, "V", maxVolts); err != nil {
		return nil, err
	}
	switch {
	case c.MaxVoltage == 0:
		c.MaxVoltage = c.Voltage
	case c.MaxVoltage < c.Voltage:
		return nil, fmt.Errorf("max_voltage: %gV is below the voltage %gV", c.MaxVoltage, c.Voltage)
	}
	if err := checkLevel("current_limit", c.CurrentLimit, "A", maxAmps); err != nil {
		return nil, err
	}
	switch {
	case c.Timeout == 0:
		c.Timeout = DefaultTimeout
	case c.Timeout < 0:
		return nil, fmt.Errorf("timeout: %v is negative", c.Timeout)
	}
	if c.CheckErrors && c.Dialect == DialectKorad {
		return nil, errors.New("check_errors: the korad dialect has no error queue")
	}
	switch c.LineEnd {
	case "":
		if c.Dialect == DialectSCPI {
			s.lineEnd = "\n"
		}
	case "\n", "\r\n", "\r":
		s.lineEnd = c.LineEnd
	default:
		return nil, fmt.Errorf("line_end: %q is not \"\\n\", \"\\r\\n\" or \"\\r\"", c.LineEnd)
	}
	s.cfg = c
	return s, nil
}

func checkLevel(key string, v float64, unit string, most float64) error {
	if math.IsNaN(v) || v < 0 || v > most {
		return fmt.Errorf("%s: %g%s out of range (0 to %g%s)", key, v, unit, most, unit)
	}
	return nil
}

// hostPort checks a TCP address, host or host:port, and adds the default
// port.
func hostPort(a string) (string, error) {
	if strings.ContainsAny(a, "/ ") {
		return "", fmt.Errorf("%q is no host or host:port", a)
	}
	if h, p, err := net.SplitHostPort(a); err == nil {
		if h == "" {
			return "", fmt.Errorf("%q: no host", a)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: port %q is no port number", a, p)
		}
		return net.JoinHostPort(h, p), nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	if h == "" || strings.ContainsAny(h, "[]") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
		return "", fmt.Errorf("%q is no host or host:port", a)
	}
	return net.JoinHostPort(h, strconv.Itoa(DefaultPort)), nil
}

// String names the supply after its address or port, e.g.
// "scpi:192.168.1.50:5025" or "scpi:/dev/ttyUSB0".
func (s *Supply) String() string { return s.name }

// Config returns the configuration with its defaults filled in.
func (s *Supply) Config() Config { return s.cfg }

// Nominal is the voltage On sets.
func (s *Supply) Nominal() float64 { return s.cfg.Voltage }

// On sets the nominal voltage and the current limit, then switches the
// output on.
func (s *Supply) On(ctx context.Context) error {
	var cmds []string
	if s.cfg.Dialect == DialectKorad {
		cmds = append(cmds, s.koradVolts(s.cfg.Voltage))
		if s.cfg.CurrentLimit > 0 {
			cmds = append(cmds, fmt.Sprintf("ISET%d:%.3f", s.koradChannel(), s.cfg.CurrentLimit))
		}
		cmds = append(cmds, "OUT1")
	} else {
		cmds = append(cmds, "VOLT "+formatLevel(s.cfg.Voltage))
		if s.cfg.CurrentLimit > 0 {
			cmds = append(cmds, "CURR "+formatLevel(s.cfg.CurrentLimit))
		}
		cmds = append(cmds, "OUTP ON")
	}
	return s.do(ctx, func(x *exchange) error { return x.set(cmds...) })
}

// Off switches the output off.
func (s *Supply) Off(ctx context.Context) error {
	return s.do(ctx, func(x *exchange) error { return x.set(s.offCmd()) })
}

func (s *Supply) offCmd() string {
	if s.cfg.Dialect == DialectKorad {
		return "OUT0"
	}
	return "OUTP OFF"
}

// Halt switches the output off and closes the connection; a later call
// opens it again.
func (s *Supply) Halt(ctx context.Context) error {
	return s.do(ctx, func(x *exchange) error {
		err := x.set(s.offCmd())
		x.close = true
		return err
	})
}

// Close closes the connection, leaving the output as it is; a later call
// opens it again. It waits for a call under way.
func (s *Supply) Close() error {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	return s.drop()
}

// State reads whether the output is on.
func (s *Supply) State(ctx context.Context) (bool, error) {
	var on bool
	err := s.do(ctx, func(x *exchange) error {
		if s.cfg.Dialect == DialectKorad {
			r, err := x.query("STATUS?", 1)
			if err != nil {
				return err
			}
			on, err = parsed(x, "STATUS?", r, ParseKoradStatus)
			return err
		}
		r, err := x.query("OUTP?", 0)
		if err != nil {
			return err
		}
		on, err = parsed(x, "OUTP?", r, ParseState)
		return err
	})
	return on, err
}

// Measure reads the output's voltage and current.
func (s *Supply) Measure(ctx context.Context) (power.Reading, error) {
	qv, qa, want := "MEAS:VOLT?", "MEAS:CURR?", 0
	if s.cfg.Dialect == DialectKorad {
		qv, qa, want = fmt.Sprintf("VOUT%d?", s.koradChannel()), fmt.Sprintf("IOUT%d?", s.koradChannel()), 5
	}
	var rd power.Reading
	err := s.do(ctx, func(x *exchange) error {
		var err error
		if rd.Volts, err = x.number(qv, want); err != nil {
			return err
		}
		rd.Amps, err = x.number(qa, want)
		return err
	})
	return rd, err
}

// SetVoltage sets the output's voltage, from 0 to the configured
// max_voltage; the output stays on or off.
func (s *Supply) SetVoltage(ctx context.Context, volts float64) error {
	if math.IsNaN(volts) || volts < 0 || volts > s.cfg.MaxVoltage {
		return fmt.Errorf("%s: set voltage: %gV out of range (0 to max_voltage %gV): %w", s, volts, s.cfg.MaxVoltage, power.ErrDriver)
	}
	cmd := "VOLT " + formatLevel(volts)
	if s.cfg.Dialect == DialectKorad {
		cmd = s.koradVolts(volts)
	}
	return s.do(ctx, func(x *exchange) error { return x.set(cmd) })
}

func (s *Supply) koradChannel() int { return max(s.cfg.Channel, 1) }

func (s *Supply) koradVolts(v float64) string {
	return fmt.Sprintf("VSET%d:%.2f", s.koradChannel(), v)
}

// settings is the driver's part of the inventory.
type settings struct {
	Address      string  `json:"address" yaml:"address"`
	Port         string  `json:"port" yaml:"port"`
	Baud         int     `json:"baud" yaml:"baud"`
	Parity       string  `json:"parity" yaml:"parity"`
	Channel      *int    `json:"channel" yaml:"channel"`
	Voltage      volts   `json:"voltage" yaml:"voltage"`
	MaxVoltage   volts   `json:"max_voltage" yaml:"max_voltage"`
	CurrentLimit amps    `json:"current_limit" yaml:"current_limit"`
	Timeout      string  `json:"timeout" yaml:"timeout"`
	Dialect      string  `json:"dialect" yaml:"dialect"`
	CheckErrors  bool    `json:"check_errors" yaml:"check_errors"`
	LineEnd      *string `json:"line_end" yaml:"line_end"`
}

func open(st power.Settings) (power.Switch, error) {
	var c settings
	if err := st.Decode(&c); err != nil {
		return nil, err
	}
	cfg := Config{Address: c.Address, Port: driverreg.Path(st, c.Port), Baud: c.Baud, Parity: c.Parity, Voltage: float64(c.Voltage),
		MaxVoltage: float64(c.MaxVoltage), CurrentLimit: float64(c.CurrentLimit), Dialect: Dialect(c.Dialect), CheckErrors: c.CheckErrors}
	if c.Channel != nil {
		if *c.Channel < 1 {
			return nil, fmt.Errorf("channel: %d: outputs count from 1", *c.Channel)
		}
		cfg.Channel = *c.Channel
	}
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		if d <= 0 {
			return nil, fmt.Errorf("timeout: %v is not positive", d)
		}
		cfg.Timeout = d
	}
	if c.LineEnd != nil {
		if *c.LineEnd == "" && cfg.Dialect != DialectKorad {
			return nil, errors.New(`line_end: "" leaves scpi commands unended; give "\n", "\r\n" or "\r"`)
		}
		cfg.LineEnd = *c.LineEnd
	}
	return New(cfg)
}
