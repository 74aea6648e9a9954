// Package gpiopin finds the GPIO line a bench file names, for the drivers
// that drive or watch one (the gpio power driver, the gpio trigger input).
// A line is named either as periph.io registered it (gpioreg: "GPIO17",
// or a pin a simulated board registered) or by character-device chip and
// line offset, because the Linux driver registers only lines the kernel
// named and leaves the rest reachable by number alone. "gpiochip0:17" is
// accepted as a pin name and means chip gpiochip0, line 17.
package gpiopin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"
	"periph.io/x/host/v3/gpioioctl"
)

// ErrNotFound marks a line that is not on this host: no such name, chip
// or line.
var ErrNotFound = errors.New("gpio line not found")

// Settings name a line: Pin, or Chip and Line.
type Settings struct {
	Pin  string `json:"pin" yaml:"pin"`
	Chip string `json:"chip" yaml:"chip"`
	Line *int   `json:"line" yaml:"line"`
}

// Validate checks that exactly one way of naming the line is used. A pin
// of the form CHIP:LINE is turned into Chip and Line.
func (s *Settings) Validate() error {
	if chip, line, ok := strings.Cut(s.Pin, ":"); ok && s.Chip == "" && s.Line == nil {
		n, err := strconv.Atoi(line)
		if err != nil || chip == "" {
			return fmt.Errorf("pin: %q: want a pin name such as GPIO17, or CHIP:LINE such as gpiochip0:17", s.Pin)
		}
		s.Pin, s.Chip, s.Line = "", chip, &n
	}
	switch {
	case s.Pin != "" && (s.Chip != "" || s.Line != nil):
		return errors.New("pin: give either pin, or chip and line, not both")
	case s.Pin != "":
	case s.Chip == "" && s.Line == nil:
		return errors.New("pin: required (or chip and line)")
	case s.Chip == "":
		return errors.New("chip: required with line")
	case s.Line == nil:
		return errors.New("line: required with chip")
	case *s.Line < 0:
		return fmt.Errorf("line: %d is negative", *s.Line)
	}
	return nil
}

// String names the line as the settings do.
func (s Settings) String() string {
	if s.Pin != "" {
		return s.Pin
	}
	if s.Line != nil {
		return fmt.Sprintf("%s:%d", s.Chip, *s.Line)
	}
	return s.Chip
}

var (
	hostOnce sync.Once
	hostErr  error
)

// initHost loads periph's host drivers once per process. A driver that
// failed (rather than one skipped for want of hardware) is an error only
// if the line is then not found, so its message goes into that error.
func initHost() error {
	hostOnce.Do(func() {
		state, err := host.Init()
		if err != nil {
			hostErr = fmt.Errorf("periph host init: %w", err)
			return
		}
		var errs []error
		for _, f := range state.Failed {
			errs = append(errs, fmt.Errorf("periph driver %s: %w", f.D, f.Err))
		}
		hostErr = errors.Join(errs...)
	})
	return hostErr
}

// Open finds the line named by validated settings. It does not configure
// the line.
func Open(s Settings) (gpio.PinIO, error) {
	he := initHost()
	if s.Pin != "" {
		p := gpioreg.ByName(s.Pin)
		if p == nil {
			return nil, notFound(fmt.Sprintf("no GPIO pin %q", s.Pin), he)
		}
		return p, nil
	}
	chip := findChip(s.Chip)
	if chip == nil {
		return nil, notFound(fmt.Sprintf("no GPIO chip %q", s.Chip), he)
	}
	if *s.Line >= chip.LineCount() {
		return nil, fmt.Errorf("line: %d out of range: chip %s has %d lines: %w", *s.Line, chip.Name(), chip.LineCount(), ErrNotFound)
	}
	return chip.ByNumber(*s.Line), nil
}

func notFound(msg string, hostErr error) error {
	if hostErr != nil {
		return fmt.Errorf("%s: %w (%w)", msg, ErrNotFound, hostErr)
	}
	return fmt.Errorf("%s: %w", msg, ErrNotFound)
}

func findChip(name string) *gpioioctl.GPIOChip {
	for _, c := range gpioioctl.Chips {
		if c.Name() == name || c.Label() == name || c.Path() == name {
			return c
		}
	}
	return nil
}

// UnsafeRead reports lines whose Read reconfigures an output as an input
// (the Linux character-device lines), which would drop a relay.
func UnsafeRead(p gpio.PinIO) bool {
	for {
		if _, ok := p.(*gpioioctl.GPIOLine); ok {
			return true
		}
		r, ok := p.(gpio.RealPin)
		if !ok {
			return false
		}
		next := r.Real()
		if next == nil || next == p {
			return false
		}
		p = next
	}
}
