package gpio

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/fudbench/fudbench/inputs"
)

// edgePin records the edge it was last configured for.
type edgePin struct {
	gpiotest.Pin
	E gpio.Edge
}

func (p *edgePin) In(pull gpio.Pull, e gpio.Edge) error {
	p.E = e
	return p.Pin.In(pull, e)
}

func TestArmAndWait(t *testing.T) {
	p := &edgePin{Pin: gpiotest.Pin{N: "BUSY", EdgesChan: make(chan gpio.Level, 1)}}
	in := New(p, gpio.PullDown)
	if err := in.Arm(context.Background(), inputs.Rising); err != nil {
		t.Fatal(err)
	}
	if p.E != gpio.RisingEdge || p.P != gpio.PullDown {
		t.Errorf("pin configured edge %v pull %v", p.E, p.P)
	}
	before := time.Now()
	p.EdgesChan <- gpio.High
	at, err := in.Wait(context.Background())
	if err != nil || at.Before(before) {
		t.Errorf("Wait: %v at %v (edge after %v)", err, at, before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := in.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with no edge: %v", err)
	}
	if err := in.Arm(context.Background(), "sideways"); err == nil {
		t.Error("unknown edge armed")
	}
	if err := in.Halt(); err != nil || p.E != gpio.NoEdge {
		t.Errorf("Halt: %v, edge %v", err, p.E)
	}
}

// failingPin refuses to be configured, as a line claimed by another
// process does.
type failingPin struct{ gpiotest.Pin }

func (f *failingPin) In(gpio.Pull, gpio.Edge) error { return errors.New("device or resource busy") }

func TestArmFailureIsReported(t *testing.T) {
	in := New(&failingPin{gpiotest.Pin{N: "X"}}, gpio.Float)
	err := in.Arm(context.Background(), inputs.Both)
	if !errors.Is(err, inputs.ErrDriver) || !strings.Contains(err.Error(), "busy") {
		t.Errorf("Arm on a busy line: %v", err)
	}
}

func TestOpenSettings(t *testing.T) {
	p := &gpiotest.Pin{N: "INPUTS-TEST-BUSY", EdgesChan: make(chan gpio.Level, 1)}
	if err := gpioreg.Register(p); err != nil {
		t.Fatal(err)
	}
	defer gpioreg.Unregister(p.N)
	in, err := inputs.Open(Driver, inputs.MapSettings{"pin": "INPUTS-TEST-BUSY", "pull": "up"})
	if err != nil || in.String() != "gpio:INPUTS-TEST-BUSY" {
		t.Fatalf("open: %v %v", in, err)
	}
	for _, tc := range []struct {
		s    inputs.MapSettings
		want string
	}{
		{inputs.MapSettings{"pin": "NO-SUCH-PIN"}, `no GPIO pin "NO-SUCH-PIN"`},
		{inputs.MapSettings{"pin": "gpiochip99:1"}, `no GPIO chip "gpiochip99"`},
		{inputs.MapSettings{"pin": "X", "pull": "sideways"}, "pull:"},
		{inputs.MapSettings{}, "pin: required"},
		{inputs.MapSettings{"pn": "X"}, "pn"},
	} {
		if _, err := inputs.Open(Driver, tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("open %v: %v, want %q", tc.s, err, tc.want)
		}
	}
}
