package sim

// The board's electrical model: the level of its supply, with a
// brownout-reset threshold and a window in which the CPU runs but flash
// programming is unreliable, and the current it draws by what it does,
// integrated into the charge drawn at every change of state.
//
// Thresholds (Config.BOR, Config.FlashMin):
//
//	v ≥ FlashMin          normal
//	BOR ≤ v < FlashMin    the CPU runs; every flash program may leave bits
//	                      erased while it reports success (flash.SetMarginal)
//	v < BOR               brownout reset: a power cut at that instant (cause
//	                      "brownout"); the board boots again once the supply
//	                      is back at BOR + 50 mV with the power input still on
//
// Current (Config.Current): a base by mode, plus the erase or program
// current while the flash's busy line is high. The charge is exact: the
// current is constant between two changes of mode or flash activity, and
// each change closes a segment. Times are wall-clock times, so at a
// time_scale other than 1 the flash and boot phases, and the charge they
// draw, shrink or grow with it.

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/sim/flash"
)

// Electrical defaults: a 3.3 V MCU with a brownout reset at 1.8 V and a
// flash that programs reliably from 2.4 V.
const (
	DefaultNominalVoltage = 3.3
	DefaultBOR            = 1.8
	DefaultFlashMin       = 2.4
	// DefaultWeakProgram is the probability that a bit to be programmed
	// stays erased while the supply is between BOR and FlashMin.
	DefaultWeakProgram = 0.2
	// BORHysteresis is how far above BOR the supply must come back before
	// a board held in brownout reset boots again.
	BORHysteresis = 0.05
	// maxVolts bounds the voltages a configuration may name.
	maxVolts = 20.0
)

// ResetBrownout is the reset cause a board prints on its console
// (reset=brownout) when it boots after a brownout reset, and the cause of
// the cut recorded when the supply fell below BOR. The update protocol's
// GET /boot keeps its two causes: a brownout reset answers "power" there.
const ResetBrownout = "brownout"

// CurrentModel is the current a board draws, in amperes: a base by what it
// does, plus Erase or Program while its flash busy line is high. A zero
// field takes DefaultCurrent's.
type CurrentModel struct {
	Boot     float64 // the bootloader: verifying images, serial recovery, until the network is up
	App      float64 // the application, idle with its radio listening
	Recovery float64 // the recovery bootloader, radio listening
	Halted   float64 // no bootable image: the bootloader idles
	Erase    float64 // added during a sector erase
	Program  float64 // added while programming
}

// DefaultCurrent is an MCU with an 802.15.4/BLE radio at 3 V, in round
// figures of the order of an nRF52840's (CPU from flash ≈ 3 mA, radio
// receive ≈ 5 mA with the DC/DC converter) and of the few milliamperes an
// STM32's or nRF52's flash controller adds while it erases or programs.
// Illustrative, not a datasheet's.
var DefaultCurrent = CurrentModel{Boot: 6e-3, App: 5e-3, Recovery: 4.5e-3, Halted: 1e-3, Erase: 4e-3, Program: 3e-3}

func (m *CurrentModel) defaults() {
	d := DefaultCurrent
	for _, f := range []struct {
		v *float64
		d float64
	}{
		{&m.Boot, d.Boot}, {&m.App, d.App}, {&m.Recovery, d.Recovery},
		{&m.Halted, d.Halted}, {&m.Erase, d.Erase}, {&m.Program, d.Program},
	} {
		if *f.v == 0 {
			*f.v = f.d
		}
	}
}

func (m CurrentModel) check() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"boot", m.Boot}, {"app", m.App}, {"recovery", m.Recovery}, {"halted", m.Halted}, {"erase", m.Erase}, {"program", m.Program}} {
		if math.IsNaN(f.v) || f.v < 0 || f.v > 10 {
			return fmt.Errorf("current %s %gA: want 0 to 10A", f.name, f.v)
		}
	}
	return nil
}

// electricalDefaults fills in and checks the electrical settings.
func (c *Config) electricalDefaults() error {
	if c.NominalVoltage == 0 {
		c.NominalVoltage = DefaultNominalVoltage
	}
	if c.BOR == 0 {
		c.BOR = DefaultBOR
	}
	if c.FlashMin == 0 {
		c.FlashMin = DefaultFlashMin
	}
	if c.WeakProgram == 0 {
		c.WeakProgram = DefaultWeakProgram
	}
	c.Current.defaults()
	for _, v := range []struct {
		name string
		v    float64
	}{{"nominal voltage", c.NominalVoltage}, {"bor", c.BOR}, {"flash_min", c.FlashMin}} {
		if math.IsNaN(v.v) || v.v < 0 || v.v > maxVolts {
			return fmt.Errorf("sim: board %s: %s %gV: want above 0 and at most %gV", c.Name, v.name, v.v, maxVolts)
		}
	}
	switch {
	case c.BOR >= c.FlashMin:
		return fmt.Errorf("sim: board %s: bor %gV must be below flash_min %gV (the flash stops programming reliably before the CPU resets)", c.Name, c.BOR, c.FlashMin)
	case c.NominalVoltage < c.FlashMin:
		return fmt.Errorf("sim: board %s: nominal voltage %gV is below flash_min %gV: the board could never program its flash reliably", c.Name, c.NominalVoltage, c.FlashMin)
	case math.IsNaN(c.WeakProgram) || c.WeakProgram < 0 || c.WeakProgram > 1:
		return fmt.Errorf("sim: board %s: weak_program %g: want a probability, 0 to 1", c.Name, c.WeakProgram)
	}
	if err := c.Current.check(); err != nil {
		return fmt.Errorf("sim: board %s: %w", c.Name, err)
	}
	return nil
}

// chargePoint is the charge drawn up to a change of state.
type chargePoint struct {
	t time.Time
	q float64 // coulombs
}

// Charge history: enough for a meter's longest aperture, bounded.
const (
	chargeKeep      = time.Second
	chargeMaxPoints = 8192
)

// meter integrates a board's current. It has its own lock, taken last:
// the board calls it with b.mu held, the flash with none.
type meter struct {
	mu    sync.Mutex
	model CurrentModel
	mode  string
	op    flash.OpKind
	amps  float64       // the current since the last point
	pts   []chargePoint // pts[len-1] is the latest change
}

func newMeter(model CurrentModel) *meter {
	return &meter{model: model, mode: ModeOff, op: flash.OpNone, pts: []chargePoint{{t: time.Now()}}}
}

// draw is the current for a mode and flash activity.
func (m *meter) draw() float64 {
	var a float64
	switch m.mode {
	case ModeOff:
		return 0
	case ModeApp:
		a = m.model.App
	case ModeRecovery:
		a = m.model.Recovery
	case ModeHalted:
		a = m.model.Halted
	default: // booting, serial recovery: the bootloader at work
		a = m.model.Boot
	}
	switch m.op {
	case flash.OpErase:
		a += m.model.Erase
	case flash.OpProgram:
		a += m.model.Program
	}
	return a
}

// change closes the segment at now and starts one with the new state;
// m.mu held.
func (m *meter) change(set func()) {
	now := time.Now()
	last := m.pts[len(m.pts)-1]
	m.pts = append(m.pts, chargePoint{t: now, q: last.q + m.amps*now.Sub(last.t).Seconds()})
	cut := now.Add(-chargeKeep)
	k := 0
	for k < len(m.pts)-2 && (m.pts[k+1].t.Before(cut) || len(m.pts)-k > chargeMaxPoints) {
		k++
	}
	m.pts = m.pts[k:]
	set()
	m.amps = m.draw()
}

func (m *meter) setMode(mode string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mode != m.mode {
		m.change(func() { m.mode = mode })
	}
}

func (m *meter) setOp(k flash.OpKind) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k != m.op {
		m.change(func() { m.op = k })
	}
}

func (m *meter) current() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.amps
}

// chargeAt is the charge drawn up to t: exact within the history kept
// (the last second, at least), the oldest point's before it.
func (m *meter) chargeAt(t time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	last := m.pts[len(m.pts)-1]
	if !t.Before(last.t) {
		return last.q + m.amps*t.Sub(last.t).Seconds()
	}
	// The first point after t; the segment before it has one current.
	i := sort.Search(len(m.pts), func(i int) bool { return m.pts[i].t.After(t) })
	if i == 0 {
		return m.pts[0].q
	}
	a, b := m.pts[i-1], m.pts[i]
	span := b.t.Sub(a.t)
	if span <= 0 {
		return a.q
	}
	return a.q + (b.q-a.q)*float64(t.Sub(a.t))/float64(span)
}

// Current is the current the board draws now, in amperes: 0 unpowered,
// else its mode's (Config.Current) plus its flash's erase or program
// current while the busy line is high.
func (b *Board) Current() float64 { return b.meter.current() }

// Charge is the charge the board has drawn since it was made, in
// coulombs, integrated exactly at every change of its current.
func (b *Board) Charge() float64 { return b.meter.chargeAt(time.Now()) }

// ChargeAt is the charge the board had drawn at t, in coulombs: exact for
// a t within the last second, as an integrating meter's aperture needs.
// Before that it is the oldest value kept; after now, extrapolated at the
// present current.
func (b *Board) ChargeAt(t time.Time) float64 { return b.meter.chargeAt(t) }

// Voltage is the level of the board's supply while its power input is on
// (Config.NominalVoltage until SetVoltage).
func (b *Board) Voltage() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.volts
}

// PowerInput reports whether the board's power input is on (the power pin,
// the control endpoint or a bench supply's output, whichever drove it
// last). It differs from Powered while a brownout holds the board in reset
// with its input on, and after a cut armed at a flash operation.
func (b *Board) PowerInput() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.input
}

// SetVoltage sets the level of the board's supply (negative and NaN read
// as 0). Below Config.BOR a running board resets at once: a power cut
// recorded with cause "brownout" (the flash operation under way torn, RAM
// lost). From BOR + BORHysteresis up, a board held in that reset with its
// power input on boots again (reset=brownout on its console). Between BOR
// and Config.FlashMin the CPU runs and every flash program may leave bits
// erased (Config.WeakProgram per bit) while it reports success.
func (b *Board) SetVoltage(v float64) {
	if !(v > 0) {
		v = 0
	}
	b.rail.Lock()
	defer b.rail.Unlock()
	if v < b.cfg.FlashMin {
		b.fl.SetMarginal(b.cfg.WeakProgram)
	} else {
		b.fl.SetMarginal(0)
	}
	b.mu.Lock()
	b.volts = v
	powered, input, closed, browned := b.powered, b.input, b.closed, b.browned
	b.mu.Unlock()
	switch {
	case powered && v < b.cfg.BOR:
		b.log.Debug("brownout", "volts", v, "bor", b.cfg.BOR)
		b.cutPower(ResetBrownout, nil)
	case !powered && input && !closed && v >= b.cfg.BOR+BORHysteresis:
		note := ""
		if browned {
			note = ResetBrownout
		}
		b.powerUp(fwproto.ResetPower, note)
	}
}
