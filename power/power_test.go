package power_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/power/powertest"
)

func TestCycle(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		sw      *powertest.Switch
		off     time.Duration
		ctx     func() (context.Context, context.CancelFunc)
		wantOps []string
		wantOn  bool
		wantErr error
	}{
		{name: "ok", sw: &powertest.Switch{}, off: 30 * time.Millisecond, wantOps: []string{"off", "on"}, wantOn: true},
		{name: "zero off time", sw: &powertest.Switch{}, wantOps: []string{"off", "on"}, wantOn: true},
		{name: "negative off time", sw: &powertest.Switch{}, off: -time.Second, wantOps: []string{"off", "on"}, wantOn: true},
		{name: "off fails, no on", sw: &powertest.Switch{OffErr: boom}, off: time.Millisecond, wantOps: []string{"off"}, wantOn: true, wantErr: boom},
		{name: "on fails, left off", sw: &powertest.Switch{OnErr: boom}, wantOps: []string{"off", "on"}, wantErr: boom},
		{
			name: "ctx ends while off", sw: &powertest.Switch{}, off: time.Hour,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 20*time.Millisecond)
			},
			wantOps: []string{"off"}, wantErr: context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			tt.sw.SetOn(true)
			start := time.Now()
			err := power.Cycle(ctx, tt.sw, tt.off)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("Cycle: err %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "fake") {
				t.Errorf("error %q does not name the switch", err)
			}
			if got := tt.sw.Ops(); !slices.Equal(got, tt.wantOps) {
				t.Errorf("ops %v, want %v", got, tt.wantOps)
			}
			if tt.sw.IsOn() != tt.wantOn {
				t.Errorf("on = %v, want %v", tt.sw.IsOn(), tt.wantOn)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("Cycle took %v", time.Since(start))
			}
			if calls := tt.sw.Calls(); len(calls) == 2 && tt.off > 0 {
				if gap := calls[1].At.Sub(calls[0].At); gap < tt.off {
					t.Errorf("off for %v, want at least %v", gap, tt.off)
				}
			}
		})
	}
}

func TestSafe(t *testing.T) {
	plain := &powertest.Switch{}
	plain.SetOn(true)
	if err := power.Safe(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	if got := plain.Ops(); !slices.Equal(got, []string{"off"}) || plain.IsOn() {
		t.Errorf("plain switch: ops %v on %v, want [off] and off", got, plain.IsOn())
	}

	h := &powertest.Halting{ExitOn: true}
	if err := power.Safe(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if got := h.Ops(); !slices.Equal(got, []string{"halt"}) || !h.IsOn() {
		t.Errorf("halter: ops %v on %v, want [halt] and on (its exit state)", got, h.IsOn())
	}

	boom := errors.New("boom")
	h = &powertest.Halting{HaltErr: boom}
	if err := power.Safe(context.Background(), h); !errors.Is(err, boom) {
		t.Errorf("Safe: err %v, want %v", err, boom)
	}
}

// Drivers register once per test binary, as from a driver's init, so
// the tests below also pass with -count above 1.
func init() {
	power.Register("test-register-dup", openFake)
	power.Register("test-open", openTest)
}

func openFake(power.Settings) (power.Switch, error) { return &powertest.Switch{}, nil }

func TestRegisterPanics(t *testing.T) {
	open := openFake
	tests := []struct {
		name   string
		driver string
		open   power.OpenFunc
		want   string
	}{
		{"duplicate", "test-register-dup", open, "twice"},
		{"nil open", "test-register-nil", nil, "nil"},
		{"empty name", "", open, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tt.want) {
					t.Errorf("panic %v, want one mentioning %q", r, tt.want)
				}
			}()
			power.Register(tt.driver, tt.open)
		})
	}
	if !slices.Contains(power.Drivers(), "test-register-dup") || slices.Contains(power.Drivers(), "test-register-nil") {
		t.Errorf("Drivers() = %v", power.Drivers())
	}
	if !slices.IsSorted(power.Drivers()) {
		t.Errorf("Drivers() not sorted: %v", power.Drivers())
	}
}

type fakeSettings struct {
	Name  string `json:"name"`
	Delay string `json:"delay"`
}

func openTest(s power.Settings) (power.Switch, error) {
	var c fakeSettings
	if err := s.Decode(&c); err != nil {
		return nil, err
	}
	if c.Name == "" {
		return nil, errors.New("name: required")
	}
	sw := &powertest.Switch{Name: c.Name}
	if c.Delay != "" {
		d, err := time.ParseDuration(c.Delay)
		if err != nil {
			return nil, fmt.Errorf("delay: %w", err)
		}
		sw.Delay = d
	}
	return sw, nil
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name     string
		driver   string
		settings power.Settings
		wantErr  string
		wantIs   error
		wantName string
	}{
		{name: "ok", driver: "test-open", settings: power.MapSettings{"name": "a", "delay": "1ms"}, wantName: "fake:a"},
		{name: "nil settings reach the driver", driver: "test-open", wantErr: "power: open test-open: name: required"},
		{name: "unknown key", driver: "test-open", settings: power.MapSettings{"name": "a", "nmae": "b"}, wantErr: `unknown key "nmae" (known: delay, name)`},
		{name: "unknown driver", driver: "no-such", wantIs: power.ErrUnknownDriver, wantErr: `"no-such" (registered: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sw, err := power.Open(tt.driver, tt.settings)
			if tt.wantErr == "" && tt.wantIs == nil {
				if err != nil {
					t.Fatal(err)
				}
				if sw.String() != tt.wantName {
					t.Errorf("String() = %q, want %q", sw, tt.wantName)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
	_, err := power.Open("no-such", nil)
	if !strings.Contains(err.Error(), "test-open") {
		t.Errorf("unknown-driver error %q does not list the registered drivers", err)
	}
}

type embedded struct {
	Shared int `json:"shared"`
}

type decodeTarget struct {
	embedded
	Pin       string            `json:"pin"`
	Line      *int              `json:"line"`
	ActiveLow bool              `json:"active_low"`
	Argv      []string          `json:"argv"`
	Env       map[string]string `json:"env"`
	Plain     string
	Skipped   string `json:"-"`
}

func TestMapSettings(t *testing.T) {
	three := 3
	tests := []struct {
		name    string
		m       power.MapSettings
		want    decodeTarget
		wantErr string
	}{
		{name: "empty", m: nil},
		{
			name: "all kinds",
			m: power.MapSettings{
				"pin": "P1", "line": 3, "active_low": true, "argv": []string{"a", "b c"},
				"env": map[string]any{"K": "v"}, "Plain": "x", "shared": 7,
			},
			want: decodeTarget{embedded: embedded{Shared: 7}, Pin: "P1", Line: &three, ActiveLow: true, Argv: []string{"a", "b c"}, Env: map[string]string{"K": "v"}, Plain: "x"},
		},
		{name: "unknown key", m: power.MapSettings{"pins": "P1"}, wantErr: `unknown key "pins"`},
		{name: "case differs", m: power.MapSettings{"PIN": "P1"}, wantErr: `unknown key "PIN"`},
		{name: "ignored field", m: power.MapSettings{"Skipped": "x"}, wantErr: `unknown key "Skipped"`},
		{name: "string for a list", m: power.MapSettings{"argv": "a b"}, wantErr: "cannot unmarshal string"},
		{name: "string for a bool", m: power.MapSettings{"active_low": "yes"}, wantErr: "cannot unmarshal string"},
		{name: "unencodable value", m: power.MapSettings{"pin": func() {}}, wantErr: "power: settings: json: unsupported type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got decodeTarget
			err := tt.m.Decode(&got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", deref(got)) != fmt.Sprintf("%+v", deref(tt.want)) {
				t.Errorf("decoded %+v, want %+v", deref(got), deref(tt.want))
			}
		})
	}
}

// deref makes the pointer field comparable by value in %+v output.
func deref(d decodeTarget) any {
	line := -1
	if d.Line != nil {
		line = *d.Line
	}
	d.Line = nil
	return struct {
		D    decodeTarget
		Line int
	}{d, line}
}

func TestMapSettingsNonStruct(t *testing.T) {
	var m map[string]any
	if err := (power.MapSettings{"Any": 1}).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m["Any"] != float64(1) {
		t.Errorf("decoded %v", m)
	}
}
