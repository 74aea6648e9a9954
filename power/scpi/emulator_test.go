package scpi_test

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/power/scpi"
	"github.com/fudbench/fudbench/sim/supply"
)

// load is a resistive load: 660 Ω, 5 mA at 3.3 V, its charge exact.
type load struct {
	mu     sync.Mutex
	on     bool
	volts  float64
	charge float64
	since  time.Time
}

func (l *load) settle(now time.Time) {
	if l.on && !l.since.IsZero() {
		l.charge += l.volts / 660 * now.Sub(l.since).Seconds()
	}
	l.since = now
}

func (l *load) SetPower(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settle(time.Now())
	l.on = on
}

func (l *load) PowerInput() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.on
}

func (l *load) SetVoltage(v float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settle(time.Now())
	l.volts = v
}

func (l *load) Voltage() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.volts
}

func (l *load) ChargeAt(t time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.charge
	if l.on && t.After(l.since) {
		c += l.volts / 660 * t.Sub(l.since).Seconds()
	}
	return c
}

// TestAgainstTheSupplyEmulator drives sim/supply's emulated bench supply
// with the driver, over its TCP port and over its serial port (a pty):
// on at the configured voltage, the readings, a brownout level and back,
// off, the safe state.
func TestAgainstTheSupplyEmulator(t *testing.T) {
	l := &load{volts: 3.3}
	em, err := supply.New(l, supply.Options{Name: "bench", Serial: true})
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	for _, st := range []power.MapSettings{
		{"address": em.Addr(), "voltage": "3.3V", "current_limit": "100mA", "check_errors": true},
		{"port": em.SerialPath(), "baud": 115200, "voltage": "3300mV"},
	} {
		sw, err := power.Open(scpi.Driver, st)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := sw.On(ctx); err != nil {
			t.Fatalf("%s: on: %v", sw, err)
		}
		if on, err := sw.(power.StateReader).State(ctx); err != nil || !on || !l.PowerInput() {
			t.Fatalf("%s: state %v, %v; load powered %v", sw, on, err, l.PowerInput())
		}
		time.Sleep(20 * time.Millisecond)
		r, err := sw.(power.Meter).Measure(ctx)
		if err != nil || r.Volts != 3.3 || math.Abs(r.Amps-0.005) > 0.0002 {
			t.Errorf("%s: reading %+v, %v; want 3.3 V and 5 mA", sw, r, err)
		}
		sup := sw.(power.Supply)
		if err := sup.SetVoltage(ctx, 1.5); err != nil || l.Voltage() != 1.5 {
			t.Errorf("%s: brownout level: %v, load at %v V", sw, err, l.Voltage())
		}
		if err := sup.SetVoltage(ctx, sup.Nominal()); err != nil || l.Voltage() != 3.3 {
			t.Errorf("%s: back to %v V: %v, load at %v V", sw, sup.Nominal(), err, l.Voltage())
		}
		if err := sup.SetVoltage(ctx, 5); err == nil {
			t.Errorf("%s: 5 V above max_voltage accepted", sw)
		}
		if err := power.Safe(ctx, sw); err != nil || l.PowerInput() {
			t.Errorf("%s: safe state: %v, load powered %v", sw, err, l.PowerInput())
		}
	}
}
