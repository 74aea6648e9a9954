// Package driverreg is the driver registry shared by the power and probes
// interface packages (database/sql style: drivers register in init, the
// importing main package's imports are the driver set) and the strict
// map-backed settings they both offer to tests. It is a leaf: it imports
// nothing of fudbench, so power and probes still depend on nothing else.
package driverreg

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

// Registry maps driver names to constructors of T.
type Registry[T any] struct {
	kind    string // "power", "probes": prefixes messages
	unknown error  // wrapped when a driver is not registered
	mu      sync.RWMutex
	open    map[string]func(S) (T, error)
}

// S is what a constructor receives: the driver's settings, decoded
// strictly into a value by the driver.
type S interface {
	Decode(v any) error
}

// New makes a registry; kind prefixes its messages and unknown is wrapped
// by Open for a driver nobody registered.
func New[T any](kind string, unknown error) *Registry[T] {
	return &Registry[T]{kind: kind, unknown: unknown, open: map[string]func(S) (T, error){}}
}

// Register adds a driver. It panics on an empty name, a nil constructor
// or a name registered twice: these are programming errors in an init.
func (r *Registry[T]) Register(name string, open func(S) (T, error)) {
	if name == "" {
		panic(r.kind + ": Register with an empty driver name")
	}
	if open == nil {
		panic(r.kind + ": Register of driver " + name + " with a nil open function")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.open[name]; dup {
		panic(r.kind + ": Register called twice for driver " + name)
	}
	r.open[name] = open
}

// Drivers returns the registered names, sorted.
func (r *Registry[T]) Drivers() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.open))
	for n := range r.open {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open builds a T with the named driver. Nil settings are empty settings.
func (r *Registry[T]) Open(driver string, s S) (T, error) {
	var zero T
	r.mu.RLock()
	open := r.open[driver]
	r.mu.RUnlock()
	if open == nil {
		list := "none; import a driver package"
		if known := r.Drivers(); len(known) > 0 {
			list = strings.Join(known, ", ")
		}
		return zero, fmt.Errorf("%w %q (registered: %s)", r.unknown, driver, list)
	}
	if s == nil {
		s = Map{kind: r.kind}
	}
	v, err := open(s)
	if err != nil {
		return zero, fmt.Errorf("%s: open %s: %w", r.kind, driver, err)
	}
	return v, nil
}

// Map is settings held in a map. Values are what JSON would carry, and
// keys must match the target's json field names exactly, case included.
type Map struct {
	kind string
	m    map[string]any
}

// NewMap wraps m; kind prefixes error messages.
func NewMap(kind string, m map[string]any) Map { return Map{kind: kind, m: m} }

// Decode decodes the map into v strictly: a key that is no field of v, a
// key differing only in case, or a value of the wrong kind is an error.
func (m Map) Decode(v any) error {
	if known, ok := jsonFields(v); ok {
		for k := range m.m {
			if !slices.Contains(known, k) {
				return fmt.Errorf("%s: settings: unknown key %q (known: %s)", m.kind, k, strings.Join(known, ", "))
			}
		}
	}
	b, err := json.Marshal(m.m)
	if err != nil {
		return fmt.Errorf("%s: settings: %w", m.kind, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: settings: %w", m.kind, err)
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
