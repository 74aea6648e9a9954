// Package inputs is the bench's trigger-input layer: digital signals of a
// board that a power cut can be timed to, such as a flash-busy line that
// rises while the device programs its flash. Inputs are wiring: a bench
// file declares them per board (inputs: {busy: {driver: gpio, pin: GPIO27}}),
// the bench opens them when it binds the board, before anything is
// powered, and a job names them (on_gpio: {input: busy}).
//
// As with power and probes, drivers live in subpackages (inputs/gpio) and
// register themselves in init(); the main package's import list is the
// driver set. Each driver keeps a direct constructor for tests.
package inputs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fudbench/fudbench/internal/driverreg"
)

// Edge is the level change an armed input reports.
type Edge string

// Edges.
const (
	Rising  Edge = "rising"
	Falling Edge = "falling"
	Both    Edge = "both"
)

// ParseEdge reads an edge name.
func ParseEdge(s string) (Edge, error) {
	switch e := Edge(s); e {
	case Rising, Falling, Both:
		return e, nil
	}
	return "", fmt.Errorf("edge %q: want rising, falling or both", s)
}

// Input is a board's signal that the bench watches for edges.
type Input interface {
	// Arm sets the input up to report edge from now on; edges seen before
	// are forgotten. An input that cannot be set up says so: a cut timed
	// to it could never fire.
	Arm(ctx context.Context, edge Edge) error
	// Wait returns the instant of the next armed edge, or ctx's error.
	Wait(ctx context.Context) (time.Time, error)
	// String names the input for logs, e.g. "gpio:SIM-SAFE-BUSY".
	String() string
}

// Halter is an Input that can release its line (back to an inert input).
type Halter interface {
	Halt() error
}

// Sentinel errors.
var (
	// ErrDriver: the driver or the hardware behind it failed.
	ErrDriver = errors.New("inputs: driver failed")
	// ErrUnknownDriver: Open was asked for a driver nobody registered.
	ErrUnknownDriver = errors.New("inputs: unknown driver")
)

// Settings is a driver's part of the inventory; Decode decodes it
// strictly into v.
type Settings interface {
	Decode(v any) error
}

// OpenFunc makes an Input from its settings, validating everything it can
// before touching hardware.
type OpenFunc func(s Settings) (Input, error)

var registry = driverreg.New[Input]("inputs", ErrUnknownDriver)

// Register makes a driver available to Open under name; for a driver
// package's init. It panics on an empty name, a nil open or a name
// registered twice.
func Register(name string, open OpenFunc) {
	if open == nil {
		registry.Register(name, nil)
		return
	}
	registry.Register(name, func(s driverreg.S) (Input, error) { return open(s) })
}

// Drivers returns the registered driver names, sorted.
func Drivers() []string { return registry.Drivers() }

// Open makes an Input with the driver registered as driver.
func Open(driver string, s Settings) (Input, error) {
	if s == nil {
		return registry.Open(driver, nil)
	}
	return registry.Open(driver, s)
}

// MapSettings is Settings held in a map, for tests and callers that build
// settings in code; keys match the target's json field names exactly.
type MapSettings map[string]any

// Decode decodes m into v strictly.
func (m MapSettings) Decode(v any) error { return driverreg.NewMap("inputs", m).Decode(v) }
