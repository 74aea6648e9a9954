package gpio

import (
	"github.com/fudbench/fudbench/internal/gpiopin"

	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/host/v3/gpioioctl"

	"github.com/fudbench/fudbench/power"
)

func TestLevels(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		start     gpio.Level
		onLevel   gpio.Level
		offLevel  gpio.Level
		haltLevel gpio.Level // after On then Halt
	}{
		{name: "active high, exit off", opts: Options{}, onLevel: gpio.High, offLevel: gpio.Low, haltLevel: gpio.Low},
		{name: "active high, exit on", opts: Options{Exit: ExitOn}, onLevel: gpio.High, offLevel: gpio.Low, haltLevel: gpio.High},
		{name: "active high, exit keep", opts: Options{Exit: ExitKeep}, onLevel: gpio.High, offLevel: gpio.Low, haltLevel: gpio.High},
		{name: "active low, exit off", opts: Options{ActiveLow: true}, start: gpio.High, onLevel: gpio.Low, offLevel: gpio.High, haltLevel: gpio.High},
		{name: "active low, exit on", opts: Options{ActiveLow: true, Exit: ExitOn}, start: gpio.High, onLevel: gpio.Low, offLevel: gpio.High, haltLevel: gpio.Low},
		{name: "active low, exit keep", opts: Options{ActiveLow: true, Exit: ExitKeep}, start: gpio.High, onLevel: gpio.Low, offLevel: gpio.High, haltLevel: gpio.Low},
		{name: "no read-back", opts: Options{NoReadBack: true}, onLevel: gpio.High, offLevel: gpio.Low, haltLevel: gpio.Low},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &gpiotest.Pin{N: "RELAY", L: tt.start}
			s := New(p, tt.opts)
			if s.String() != "gpio:RELAY" {
				t.Errorf("String() = %q", s)
			}
			check := func(step string, wantLevel gpio.Level, wantOn bool) {
				t.Helper()
				if got := p.Read(); got != wantLevel {
					t.Errorf("after %s: pin %s, want %s", step, got, wantLevel)
				}
				on, err := s.State(ctx)
				if err != nil {
					t.Fatalf("after %s: State: %v", step, err)
				}
				if on != wantOn {
					t.Errorf("after %s: State() = %v, want %v", step, on, wantOn)
				}
			}
			if err := s.On(ctx); err != nil {
				t.Fatal(err)
			}
			check("On", tt.onLevel, true)
			if err := s.Off(ctx); err != nil {
				t.Fatal(err)
			}
			check("Off", tt.offLevel, false)
			if err := s.On(ctx); err != nil {
				t.Fatal(err)
			}
			if err := power.Safe(ctx, s); err != nil {
				t.Fatal(err)
			}
			check("Halt", tt.haltLevel, tt.haltLevel == tt.onLevel)
		})
	}
}

func TestStateReadsThePin(t *testing.T) {
	// Someone else drove the line: read-back must see it.
	p := &gpiotest.Pin{N: "RELAY"}
	s := New(p, Options{ActiveLow: true})
	on, err := s.State(context.Background())
	if err != nil || !on {
		t.Errorf("State() = %v, %v; want on (line Low, active low)", on, err)
	}

	s = New(&gpiotest.Pin{N: "RELAY"}, Options{NoReadBack: true})
	if _, err := s.State(context.Background()); !errors.Is(err, power.ErrDriver) {
		t.Errorf("State() before any drive without read-back: err %v, want ErrDriver", err)
	}
}

// failPin fails every Out, as a line taken by another process does.
type failPin struct{ gpiotest.Pin }

var errBusy = errors.New("device or resource busy")

func (p *failPin) Out(gpio.Level) error { return errBusy }

func TestErrors(t *testing.T) {
	s := New(&failPin{Pin: gpiotest.Pin{N: "RELAY"}}, Options{})
	err := s.On(context.Background())
	if !errors.Is(err, power.ErrDriver) || !errors.Is(err, errBusy) {
		t.Fatalf("On: err %v, want ErrDriver wrapping the cause", err)
	}
	if !strings.Contains(err.Error(), "gpio:RELAY") {
		t.Errorf("error %q does not name the switch", err)
	}

	p := &gpiotest.Pin{N: "RELAY", L: gpio.High}
	s = New(p, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	if err := s.Off(ctx); !errors.Is(err, power.ErrTimeout) {
		t.Errorf("Off past the deadline: err %v, want ErrTimeout", err)
	}
	if p.Read() != gpio.High {
		t.Errorf("Off past the deadline drove the pin")
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := s.Halt(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, power.ErrTimeout) {
		t.Errorf("Halt on a cancelled ctx: err %v, want context.Canceled", err)
	}
}

func TestSettings(t *testing.T) {
	line := func(n int) *int { return &n }
	tests := []struct {
		name    string
		s       settings
		want    Options
		wantErr string
	}{
		{name: "pin", s: settings{Settings: gpiopin.Settings{Pin: "GPIO17"}}, want: Options{}},
		{name: "chip and line", s: settings{Settings: gpiopin.Settings{Chip: "gpiochip0", Line: line(0)}, ActiveLow: true, Exit: "keep"}, want: Options{ActiveLow: true, Exit: ExitKeep}},
		{name: "exit on", s: settings{Settings: gpiopin.Settings{Pin: "X"}, Exit: "on"}, want: Options{Exit: ExitOn}},
		{name: "bad exit", s: settings{Settings: gpiopin.Settings{Pin: "X"}, Exit: "high"}, wantErr: `exit: "high" is not off, on or keep`},
		{name: "nothing", s: settings{}, wantErr: "pin: required"},
		{name: "both", s: settings{Settings: gpiopin.Settings{Pin: "X", Chip: "gpiochip0"}}, wantErr: "either pin, or chip and line"},
		{name: "line without chip", s: settings{Settings: gpiopin.Settings{Line: line(3)}}, wantErr: "chip: required with line"},
		{name: "chip without line", s: settings{Settings: gpiopin.Settings{Chip: "gpiochip0"}}, wantErr: "line: required with chip"},
		{name: "chip:line pin", s: settings{Settings: gpiopin.Settings{Pin: "gpiochip0:17"}}, want: Options{}},
		{name: "bad chip:line pin", s: settings{Settings: gpiopin.Settings{Pin: "gpiochip0:x"}}, wantErr: "CHIP:LINE"},
		{name: "negative line", s: settings{Settings: gpiopin.Settings{Chip: "gpiochip0", Line: line(-1)}}, wantErr: "line: -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.s.validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("options %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name     string
		settings power.MapSettings
		wantErr  string
		wantIs   error
	}{
		{name: "unknown pin", settings: power.MapSettings{"pin": "NO-SUCH-PIN"}, wantErr: `no GPIO pin "NO-SUCH-PIN"`, wantIs: power.ErrDriver},
		{name: "unknown chip", settings: power.MapSettings{"chip": "gpiochip-none", "line": 2}, wantErr: `no GPIO chip "gpiochip-none"`, wantIs: power.ErrDriver},
		{name: "string for a line", settings: power.MapSettings{"chip": "gpiochip0", "line": "2"}, wantErr: "cannot unmarshal string"},
		{name: "unknown key", settings: power.MapSettings{"pin": "X", "invert": true}, wantErr: `unknown key "invert"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := power.Open(Driver, tt.settings)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}

// alias stands in for a gpioreg alias of a real pin.
type alias struct {
	gpio.PinIO
	real gpio.PinIO
}

func (a alias) Real() gpio.PinIO { return a.real }

func TestUnsafeRead(t *testing.T) {
	line := &gpioioctl.GPIOLine{}
	tests := []struct {
		name string
		p    gpio.PinIO
		want bool
	}{
		{"fake pin", &gpiotest.Pin{}, false},
		{"chardev line", line, true},
		{"alias of a chardev line", alias{PinIO: &gpiotest.Pin{}, real: line}, true},
		{"alias of a fake pin", alias{PinIO: &gpiotest.Pin{}, real: &gpiotest.Pin{}}, false},
	}
	for _, tt := range tests {
		if got := gpiopin.UnsafeRead(tt.p); got != tt.want {
			t.Errorf("%s: unsafeRead = %v, want %v", tt.name, got, tt.want)
		}
	}
}
