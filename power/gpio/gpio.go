// Package gpio is the power driver "gpio": a relay or load switch on a
// GPIO line, through periph.io. Importing it registers the driver.
//
// Settings (the board's power section in the inventory):
//
//	pin: GPIO17            # a name periph.io registered (gpioreg.ByName), or
//	chip: gpiochip0        # a character-device chip (name, label or path)
//	line: 17               #   and line offset, for lines the kernel left unnamed
//	active_low: true       # the relay is energised by a Low level
//	exit: off              # level left on Halt: off (default), on or keep
//
// The level written is High for on unless active_low. On Linux, periph's
// character-device lines switch to an input when read, which would drop a
// relay, so for them State reports the level this Switch last drove
// instead of reading the line back.
package gpio

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"periph.io/x/conn/v3/gpio"

	"github.com/fudbench/fudbench/internal/gpiopin"
	"github.com/fudbench/fudbench/power"
)

// Driver is the name the driver registers under.
const Driver = "gpio"

func init() {
	power.Register(Driver, open)
}

var (
	_ power.Switch      = (*Switch)(nil)
	_ power.StateReader = (*Switch)(nil)
	_ power.Halter      = (*Switch)(nil)
)

// Exit is the state Halt leaves the supply in.
type Exit string

// Exit states.
const (
	ExitOff  Exit = "off" // the default: a halted bench leaves boards unpowered
	ExitOn   Exit = "on"
	ExitKeep Exit = "keep" // leave the line as it is
)

// Options configure a Switch.
type Options struct {
	// ActiveLow: the supply is on while the line is Low.
	ActiveLow bool
	// Exit is the state Halt leaves; "" is ExitOff.
	Exit Exit
	// NoReadBack makes State report the level last driven rather than
	// read the pin, for pins where a read disturbs an output.
	NoReadBack bool
}

// Switch drives a board's supply through one GPIO line.
type Switch struct {
	pin  gpio.PinIO
	opts Options

	mu     sync.Mutex // serialises level changes; guards driven
	driven *gpio.Level
}

// New returns a Switch on p. It does not touch the pin.
func New(p gpio.PinIO, opts Options) *Switch {
	if opts.Exit == "" {
		opts.Exit = ExitOff
	}
	return &Switch{pin: p, opts: opts}
}

// String names the switch after its pin, e.g. "gpio:SIM-SAFE-PWR".
func (s *Switch) String() string { return Driver + ":" + s.pin.Name() }

// On powers the board.
func (s *Switch) On(ctx context.Context) error { return s.set(ctx, "on", true) }

// Off cuts the board's power.
func (s *Switch) Off(ctx context.Context) error { return s.set(ctx, "off", false) }

var _ power.Bounded = (*Switch)(nil)

// Bounded reports that the switch never blocks: driving a line is one
// ioctl or register write.
func (s *Switch) Bounded() bool { return true }

// State reads the line back and reports whether the supply is on.
func (s *Switch) State(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, s.ctxErr("state", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var l gpio.Level
	if s.opts.NoReadBack {
		if s.driven == nil {
			return false, fmt.Errorf("%s: state: %w: not driven by this process yet, and the line cannot be read back safely", s, power.ErrDriver)
		}
		l = *s.driven
	} else {
		l = s.pin.Read()
	}
	return bool(l) != s.opts.ActiveLow, nil
}

// Halt leaves the supply in the configured exit state. The line stays
// driven; the kernel releases it when the process exits.
func (s *Switch) Halt(ctx context.Context) error {
	switch s.opts.Exit {
	case ExitOn:
		return s.set(ctx, "halt", true)
	case ExitKeep:
		return nil
	default:
		return s.set(ctx, "halt", false)
	}
}

func (s *Switch) set(ctx context.Context, op string, on bool) error {
	// Driving a line takes microseconds and cannot be interrupted, so the
	// deadline is checked before it.
	if err := ctx.Err(); err != nil {
		return s.ctxErr(op, err)
	}
	l := gpio.Level(on != s.opts.ActiveLow)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.pin.Out(l); err != nil {
		return fmt.Errorf("%s: %s: drive %s: %w: %w", s, op, l, power.ErrDriver, err)
	}
	s.driven = &l
	return nil
}

func (s *Switch) ctxErr(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w: %w", s, op, power.ErrTimeout, err)
	}
	return fmt.Errorf("%s: %s: %w", s, op, err)
}

// settings is the driver's part of the inventory.
type settings struct {
	gpiopin.Settings `yaml:",inline"`
	ActiveLow        bool   `json:"active_low" yaml:"active_low"`
	Exit             string `json:"exit" yaml:"exit"`
}

func (c *settings) validate() (Options, error) {
	opts := Options{ActiveLow: c.ActiveLow, Exit: Exit(c.Exit)}
	switch opts.Exit {
	case "", ExitOff, ExitOn, ExitKeep:
	default:
		return opts, fmt.Errorf("exit: %q is not off, on or keep", c.Exit)
	}
	return opts, c.Settings.Validate()
}

func open(st power.Settings) (power.Switch, error) {
	var c settings
	if err := st.Decode(&c); err != nil {
		return nil, err
	}
	opts, err := c.validate()
	if err != nil {
		return nil, err
	}
	p, err := gpiopin.Open(c.Settings)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", power.ErrDriver, err)
	}
	if gpiopin.UnsafeRead(p) {
		opts.NoReadBack = true
	}
	return New(p, opts), nil
}
