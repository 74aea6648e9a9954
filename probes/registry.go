package probes

import "github.com/fudbench/fudbench/internal/driverreg"

// Settings is a driver's part of the bench inventory. Decode decodes it
// strictly into v: an unknown key or a value of the wrong kind is an error.
// The inventory loader implements it over YAML with file:line:col errors;
// MapSettings implements it over a map.
type Settings interface {
	Decode(v any) error
}

// OpenFunc makes a Flasher from its settings. It should validate everything
// it can before touching hardware, and release what it took on failure.
type OpenFunc func(s Settings) (Flasher, error)

var registry = driverreg.New[Flasher]("probes", ErrUnknownDriver)

// Register makes a driver available to Open under name. It is meant for a
// driver package's init and panics on an empty name, a nil open or a name
// registered twice.
func Register(name string, open OpenFunc) {
	if open == nil {
		registry.Register(name, nil)
		return
	}
	registry.Register(name, func(s driverreg.S) (Flasher, error) { return open(s) })
}

// Drivers returns the registered driver names, sorted.
func Drivers() []string { return registry.Drivers() }

// Open makes a Flasher with the driver registered as driver. Nil settings
// are empty settings. An unknown driver is an ErrUnknownDriver naming the
// registered ones.
func Open(driver string, s Settings) (Flasher, error) {
	if s == nil {
		return registry.Open(driver, nil)
	}
	return registry.Open(driver, s)
}

// MapSettings is Settings held in a map, for tests and for callers that
// build settings in code. Values are what JSON would carry (strings,
// numbers, bools, lists, maps), and keys must match the target's json
// field names exactly, case included.
type MapSettings map[string]any

// Decode decodes m into v strictly: a key that is no field of v, a key
// differing only in case, or a value of the wrong kind is an error.
func (m MapSettings) Decode(v any) error { return driverreg.NewMap("probes", m).Decode(v) }
