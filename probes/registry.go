package probes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
)

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

var (
	driversMu sync.RWMutex
	drivers   = map[string]OpenFunc{}
)

// Register makes a driver available to Open under name. It is meant for a
// driver package's init and panics on an empty name, a nil open or a name
// registered twice.
func Register(name string, open OpenFunc) {
	if name == "" {
		panic("probes: Register with an empty driver name")
	}
	if open == nil {
		panic("probes: Register of driver " + name + " with a nil OpenFunc")
	}
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[name]; dup {
		panic("probes: Register called twice for driver " + name)
	}
	drivers[name] = open
}

// Drivers returns the registered driver names, sorted.
func Drivers() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open makes a Flasher with the driver registered as driver. Nil settings
// are empty settings. An unknown driver is an ErrUnknownDriver naming the
// registered ones.
func Open(driver string, s Settings) (Flasher, error) {
	driversMu.RLock()
	open := drivers[driver]
	driversMu.RUnlock()
	if open == nil {
		known := Drivers()
		list := "none; import a driver package"
		if len(known) > 0 {
			list = strings.Join(known, ", ")
		}
		return nil, fmt.Errorf("%w %q (registered: %s)", ErrUnknownDriver, driver, list)
	}
	if s == nil {
		s = MapSettings(nil)
	}
	f, err := open(s)
	if err != nil {
		return nil, fmt.Errorf("probes: open %s: %w", driver, err)
	}
	return f, nil
}

// MapSettings is Settings held in a map, for tests and for callers that
// build settings in code. Decode goes through encoding/json, so values
// are what JSON would carry (strings, numbers, bools, lists, maps), and
// keys must match the target's json field names exactly, case included.
type MapSettings map[string]any

// Decode decodes m into v strictly: a key that is no field of v, a key
// differing only in case, or a value of the wrong kind is an error.
func (m MapSettings) Decode(v any) error {
	if known, ok := jsonFields(v); ok {
		for k := range m {
			if !slices.Contains(known, k) {
				return fmt.Errorf("probes: settings: unknown key %q (known: %s)", k, strings.Join(known, ", "))
			}
		}
	}
	b, err := json.Marshal(map[string]any(m))
	if err != nil {
		return fmt.Errorf("probes: settings: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("probes: settings: %w", err)
	}
	return nil
}

// jsonFields lists the json names of the fields of the struct v points
// to, because encoding/json matches keys case-insensitively and strict
// settings must not.
func jsonFields(v any) ([]string, bool) {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil, false
	}
	var names []string
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for f := range t.Fields() {
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			names = append(names, name)
		}
	}
	walk(t.Elem())
	sort.Strings(names)
	return names, true
}
