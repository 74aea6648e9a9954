package sim

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/physic"
)

// PowerPin is the board's power input as a GPIO pin: driving it High
// powers the board, Low (or releasing it to an input, as a relay with a
// pull-down drops out) cuts power at that instant. It is registered in
// gpioreg so the bench's production gpio power driver drives it.
type PowerPin struct {
	name  string
	board *Board
	mu    sync.Mutex
	level gpio.Level
}

var _ gpio.PinIO = (*PowerPin)(nil)

func (p *PowerPin) String() string   { return p.name }
func (p *PowerPin) Name() string     { return p.name }
func (p *PowerPin) Number() int      { return -1 }
func (p *PowerPin) Function() string { return "Out/" + p.Read().String() }

// Halt cuts power: the safe state of a relay.
func (p *PowerPin) Halt() error { return p.Out(gpio.Low) }

// In releases the line; the relay drops out and the board loses power.
func (p *PowerPin) In(pull gpio.Pull, edge gpio.Edge) error {
	if edge != gpio.NoEdge {
		return fmt.Errorf("sim: %s: edge detection on a power input is not wired", p.name)
	}
	return p.Out(gpio.Low)
}

// Read returns the level last driven.
func (p *PowerPin) Read() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.level
}

// WaitForEdge is not wired on a power input.
func (p *PowerPin) WaitForEdge(time.Duration) bool { return false }
func (p *PowerPin) Pull() gpio.Pull                { return gpio.PullDown }
func (p *PowerPin) DefaultPull() gpio.Pull         { return gpio.PullDown }

// Out switches the board's power.
func (p *PowerPin) Out(l gpio.Level) error {
	p.mu.Lock()
	p.level = l
	p.mu.Unlock()
	p.board.SetPower(bool(l))
	return nil
}

// PWM is refused: nobody should chop a board's supply.
func (p *PowerPin) PWM(gpio.Duty, physic.Frequency) error {
	return fmt.Errorf("sim: %s: PWM on a power input", p.name)
}

// BusyPin is the board's "flash busy" output, raised while the firmware
// erases or programs flash, as on power-cut test jigs. A bench reads it
// as an input with edge detection.
type BusyPin struct {
	name  string
	mu    sync.Mutex
	level gpio.Level
	edge  gpio.Edge
	edges chan struct{} // one pending edge, like the kernel's line event
}

var _ gpio.PinIO = (*BusyPin)(nil)

func (p *BusyPin) String() string   { return p.name }
func (p *BusyPin) Name() string     { return p.name }
func (p *BusyPin) Number() int      { return -1 }
func (p *BusyPin) Function() string { return "In/" + p.Read().String() }
func (p *BusyPin) Halt() error      { return p.In(gpio.Float, gpio.NoEdge) }

// In arms edge detection; pending edges from before are dropped.
func (p *BusyPin) In(pull gpio.Pull, edge gpio.Edge) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.edge = edge
	select {
	case <-p.edges:
	default:
	}
	return nil
}

func (p *BusyPin) Read() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.level
}

// WaitForEdge waits for an armed edge; a negative timeout waits forever.
func (p *BusyPin) WaitForEdge(timeout time.Duration) bool {
	if timeout < 0 {
		// Wake up now and then so a waiter never outlives the board by long.
		timeout = time.Second
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.edges:
		return true
	case <-t.C:
		return false
	}
}

func (p *BusyPin) Pull() gpio.Pull        { return gpio.Float }
func (p *BusyPin) DefaultPull() gpio.Pull { return gpio.Float }

// Out is refused: the line is driven by the board.
func (p *BusyPin) Out(gpio.Level) error {
	return fmt.Errorf("sim: %s: the busy line is an output of the board", p.name)
}

func (p *BusyPin) PWM(gpio.Duty, physic.Frequency) error {
	return fmt.Errorf("sim: %s: the busy line is an output of the board", p.name)
}

func (p *BusyPin) set(on bool) {
	p.mu.Lock()
	l := gpio.Level(on)
	changed := l != p.level
	p.level = l
	fire := changed && (p.edge == gpio.BothEdges || p.edge == gpio.RisingEdge && on || p.edge == gpio.FallingEdge && !on)
	p.mu.Unlock()
	if fire {
		select {
		case p.edges <- struct{}{}:
		default:
		}
	}
}

// PinNames returns the gpioreg names of a board's power and busy pins.
func PinNames(board string) (power, busy string) {
	n := strings.ToUpper(board)
	return n + "-PWR", n + "-BUSY"
}

// PowerPin returns the board's power input pin (nil unless Config.Pins).
func (b *Board) PowerPin() *PowerPin { return b.powerPin }

// BusyPin returns the board's busy output pin (nil unless Config.Pins).
func (b *Board) BusyPin() *BusyPin { return b.busyPin }

func (b *Board) registerPins() error {
	pw, busy := PinNames(b.cfg.Name)
	b.powerPin = &PowerPin{name: pw, board: b}
	b.busyPin = &BusyPin{name: busy, edges: make(chan struct{}, 1)}
	if err := gpioreg.Register(b.powerPin); err != nil {
		b.powerPin, b.busyPin = nil, nil
		return fmt.Errorf("sim: board %s: register %s: %w", b.cfg.Name, pw, err)
	}
	if err := gpioreg.Register(b.busyPin); err != nil {
		gpioreg.Unregister(pw)
		b.powerPin, b.busyPin = nil, nil
		return fmt.Errorf("sim: board %s: register %s: %w", b.cfg.Name, busy, err)
	}
	return nil
}

func (b *Board) unregisterPins() {
	if b.powerPin == nil {
		return
	}
	pw, busy := PinNames(b.cfg.Name)
	errors.Join(gpioreg.Unregister(pw), gpioreg.Unregister(busy))
}
