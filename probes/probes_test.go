package probes_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/probetest"
)

// Registered once for the package, so that the tests below also pass with
// -count above 1.
func init() {
	probes.Register("test-register-dup", openFake)
	probes.Register("test-open", openTest)
}

func openFake(probes.Settings) (probes.Flasher, error) { return &probetest.Flasher{}, nil }

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name   string
		driver string
		open   probes.OpenFunc
		want   string
	}{
		{"duplicate", "test-register-dup", openFake, "twice"},
		{"nil open", "test-register-nil", nil, "nil"},
		{"empty name", "", openFake, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tt.want) {
					t.Errorf("panic %v, want one mentioning %q", r, tt.want)
				}
			}()
			probes.Register(tt.driver, tt.open)
		})
	}
	if d := probes.Drivers(); !slices.Contains(d, "test-register-dup") || slices.Contains(d, "test-register-nil") || !slices.IsSorted(d) {
		t.Errorf("Drivers() = %v", d)
	}
}

func openTest(s probes.Settings) (probes.Flasher, error) {
	var c struct {
		Name string `json:"name"`
		Base uint32 `json:"base"`
	}
	if err := s.Decode(&c); err != nil {
		return nil, err
	}
	if c.Name == "" {
		return nil, errors.New("name: required")
	}
	return &probetest.Flasher{Name: c.Name, Base: c.Base}, nil
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name     string
		driver   string
		settings probes.Settings
		wantErr  string
		wantIs   error
		wantName string
	}{
		{name: "ok", driver: "test-open", settings: probes.MapSettings{"name": "a", "base": 0x08000000}, wantName: "fake:a"},
		{name: "nil settings reach the driver", driver: "test-open", wantErr: "probes: open test-open: name: required"},
		{name: "unknown key", driver: "test-open", settings: probes.MapSettings{"name": "a", "bsae": 1}, wantErr: `unknown key "bsae" (known: base, name)`},
		{name: "case differs", driver: "test-open", settings: probes.MapSettings{"Name": "a"}, wantErr: `unknown key "Name"`},
		{name: "wrong kind", driver: "test-open", settings: probes.MapSettings{"name": "a", "base": "0x0800"}, wantErr: "cannot unmarshal string"},
		{name: "unknown driver", driver: "no-such", wantIs: probes.ErrUnknownDriver, wantErr: `"no-such" (registered: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := probes.Open(tt.driver, tt.settings)
			if tt.wantErr == "" && tt.wantIs == nil {
				if err != nil {
					t.Fatal(err)
				}
				if f.String() != tt.wantName {
					t.Errorf("String() = %q, want %q", f, tt.wantName)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
	if _, err := probes.Open("no-such", nil); err == nil || !strings.Contains(err.Error(), "test-open") {
		t.Errorf("unknown-driver error %v does not list the registered drivers", err)
	}
}

func TestMapSettingsNonStruct(t *testing.T) {
	var m map[string]any
	if err := (probes.MapSettings{"Any": 1}).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m["Any"] != float64(1) {
		t.Errorf("decoded %v", m)
	}
}
