// Package power is the bench's power-switch layer: the small interfaces a
// test depends on when it needs "something that can switch a board's
// supply", the sentinel errors callers test with errors.Is, and a registry
// of drivers chosen by name in the bench inventory.
//
// Drivers live in subpackages (power/gpio, power/exec, power/simctl) and
// register themselves in init(), as database/sql drivers do: the main
// package's import list is the driver set. Each driver also keeps a direct
// constructor for tests. power/powertest holds a fake Switch.
//
// The base interface is Switch; StateReader, Meter, Supply, Halter, Bounded
// and CutWitness are optional
// abilities found by type assertion, and callers fall back when they are
// missing (Safe uses Off when a Switch is no Halter).
//
// After any error from On or Off the supply's state is unknown: the command
// may already have reached the hardware. Callers read it back (StateReader)
// or drive the supply again rather than assume it is unchanged.
package power

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Switch turns a board's supply on and off. Calls take ctx and must honour
// its deadline.
type Switch interface {
	On(ctx context.Context) error
	Off(ctx context.Context) error
	// String names the switch for logs, e.g. "gpio:SIM-SAFE-PWR".
	String() string
}

// StateReader is a Switch that can read back whether the supply is on.
type StateReader interface {
	State(ctx context.Context) (on bool, err error)
}

// Reading is one measurement of a supply's output.
type Reading struct {
	Volts float64
	Amps  float64
}

// Meter is a Switch that can measure its output.
type Meter interface {
	Measure(ctx context.Context) (Reading, error)
}

// Supply is a Switch that sets its output voltage: a bench supply. The
// bench uses it for a brownout cut (the output dropped to a level for a
// while, then back to Nominal) instead of a clean off.
type Supply interface {
	// SetVoltage sets the output's voltage; the output stays on or off.
	SetVoltage(ctx context.Context, volts float64) error
	// Nominal is the voltage the output is set to when the bench switches
	// it on (the bench file's setting).
	Nominal() float64
}

// Bounded is a Switch whose calls finish on their own within
// microseconds and cannot hang (a GPIO line driven by one ioctl or register
// write). Callers that bound every switch call with a watchdog may call it
// directly instead: on the cut path the watchdog's goroutine and timer cost
// more than the switch.
type Bounded interface {
	Bounded() bool
}

// CutRecord is a device's own account of a power cut: where it was when
// its supply went. Block numbers count from 0; -1 means none.
type CutRecord struct {
	// Seq numbers the device's cuts from 1, so a caller can tell a new
	// record from the one it saw before.
	Seq       int       `json:"seq"`
	At        time.Time `json:"at"`
	Writing   int64     `json:"writing"`    // block being written
	LastAcked int64     `json:"last_acked"` // last block acknowledged
	Flash     string    `json:"flash"`      // flash operation under way: program, erase or idle
}

// CutWitness is a Switch that can tell where the device was when its
// power went: a simulated board's power input keeps the board's own record
// of every cut. The bench compares it with the cut it planned. ok is false
// when the device has no cut on record.
type CutWitness interface {
	LastCut(ctx context.Context) (rec CutRecord, ok bool, err error)
}

// FlashMeter is a CutWitness that can also count the device's own flash
// work, as a simulated board does: the bench reads it before and after an
// update that runs without a cut to measure what an update costs the
// flash (bytes programmed and erased, wear per sector, the operations of
// the device's own update work after the last block).
type FlashMeter interface {
	FlashStats(ctx context.Context) (FlashStats, error)
	// UpdateCost describes the device's update strategy and what it needs
	// to update an image of imageSize bytes sent in blockSize blocks.
	UpdateCost(ctx context.Context, imageSize, blockSize int) (UpdateCost, error)
}

// FlashStats are a device's cumulative flash counters.
type FlashStats struct {
	Ops        uint64   `json:"ops"`        // flash operations (word programs and sector erases)
	Programmed int64    `json:"programmed"` // bytes programmed
	Erased     int64    `json:"erased"`     // bytes erased
	Erases     []uint32 `json:"erases"`     // erase count per sector, in address order
}

// UpdateCost is what a device's update strategy needs for one image.
type UpdateCost struct {
	Strategy string `json:"strategy"`
	// Space is the flash, beyond the bootloader, the strategy needs to
	// hold and update the image (slots, scratch, records), in bytes.
	Space int `json:"space"`
	// Cache is what the device keeps in flash so that an interrupted
	// update completes on its own (a recovery record and its journal, a
	// slot trailer and swap status), in bytes.
	Cache int `json:"cache"`
}

// CutArmer is a CutWitness whose device can be made to lose power at one
// of its own flash operations: a simulated board, where the cut is exact
// at any time scale. On real hardware the nearest equivalent is a cut on
// the device's flash-busy line.
type CutArmer interface {
	// ArmCut arms a cut at the device's flash operation afterOps
	// operations from now (1 is the next one). notify is called, from
	// another goroutine, once the device has lost power, with the
	// instant. disarm cancels a cut that has not happened.
	ArmCut(ctx context.Context, afterOps uint64, notify func(at time.Time)) (disarm func(), err error)
}

// Halter is a Switch with a configured safe (exit) state: Halt drives the
// supply to it and releases the hardware. Without it, callers use Off.
type Halter interface {
	Halt(ctx context.Context) error
}

// Sentinel errors. Drivers wrap them together with their name and the
// cause, so errors.Is finds both the sentinel and the cause.
var (
	// ErrTimeout: a call did not finish before its deadline. The command
	// may have reached the hardware.
	ErrTimeout = errors.New("power: timeout")
	// ErrDriver: the driver or the hardware behind it failed.
	ErrDriver = errors.New("power: driver failed")
	// ErrUnknownDriver: Open was asked for a driver nobody registered.
	ErrUnknownDriver = errors.New("power: unknown driver")
)

// Cycle switches s off, keeps it off for offTime and switches it on again.
// The wait honours ctx; if ctx ends during it the supply is left off and
// the error says so.
func Cycle(ctx context.Context, s Switch, offTime time.Duration) error {
	if err := s.Off(ctx); err != nil {
		return fmt.Errorf("power: cycle %s: %w", s, err)
	}
	if offTime > 0 {
		t := time.NewTimer(offTime)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("power: cycle %s: left off while waiting %v: %w", s, offTime, ctx.Err())
		}
	}
	if err := s.On(ctx); err != nil {
		return fmt.Errorf("power: cycle %s: %w", s, err)
	}
	return nil
}

// Safe puts s in its safe state: Halt if s is a Halter, else Off.
func Safe(ctx context.Context, s Switch) error {
	if h, ok := s.(Halter); ok {
		return h.Halt(ctx)
	}
	return s.Off(ctx)
}
