package sim

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
)

// newPinBoard makes an unpowered board with its pins in gpioreg.
func newPinBoard(t *testing.T, name string) *Board {
	t.Helper()
	b, err := New(Config{Name: name, Pins: true, DTLSAddr: "-", GDBAddr: "-", UDPAddrs: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.FactoryProgram(buildImage(t, "1.0.0", 1, 4<<10, 1)); err != nil {
		t.Fatal(err)
	}
	return b
}

func pinByName(t *testing.T, name string) gpio.PinIO {
	t.Helper()
	p := gpioreg.ByName(name)
	if p == nil {
		t.Fatalf("gpioreg has no pin %q", name)
	}
	return p
}

// TestPowerPin drives the board's power input through gpioreg, as the
// bench's gpio power driver does.
func TestPowerPin(t *testing.T) {
	b := newPinBoard(t, "pins-power")
	pwName, busyName := PinNames("pins-power")
	if pwName != "PINS-POWER-PWR" || busyName != "PINS-POWER-BUSY" {
		t.Fatalf("pin names %q %q", pwName, busyName)
	}
	pw := pinByName(t, pwName)
	if pw != gpio.PinIO(b.PowerPin()) {
		t.Fatal("gpioreg holds another pin than the board's")
	}
	if in := b.Info(); in.PowerPin != pwName || in.BusyPin != busyName {
		t.Errorf("Info pins %q %q", in.PowerPin, in.BusyPin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	steps := []struct {
		name    string
		drive   func() error
		powered bool
		cuts    int
	}{
		{"out high powers", func() error { return pw.Out(gpio.High) }, true, 0},
		{"out low cuts", func() error { return pw.Out(gpio.Low) }, false, 1},
		{"out high again", func() error { return pw.Out(gpio.High) }, true, 1},
		{"in releases and cuts", func() error { return pw.In(gpio.PullNoChange, gpio.NoEdge) }, false, 2},
		{"out high after release", func() error { return pw.Out(gpio.High) }, true, 2},
		{"halt cuts", pw.Halt, false, 3},
	}
	for _, st := range steps {
		boots := b.Boots()
		if err := st.drive(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if b.Powered() != st.powered || pw.Read() != gpio.Level(st.powered) {
			t.Fatalf("%s: powered %v pin %v, want %v", st.name, b.Powered(), pw.Read(), st.powered)
		}
		if st.powered {
			if m, err := b.WaitBoot(ctx, boots); err != nil || m != ModeApp {
				t.Fatalf("%s: %s %v", st.name, m, err)
			}
		} else if b.Mode() != ModeOff {
			t.Fatalf("%s: mode %s", st.name, b.Mode())
		}
		cuts := b.Cuts()
		if len(cuts) != st.cuts {
			t.Fatalf("%s: %d cuts, want %d", st.name, len(cuts), st.cuts)
		}
		if st.cuts > 0 && cuts[st.cuts-1].Cause != "power-input" {
			t.Errorf("%s: cut cause %q", st.name, cuts[st.cuts-1].Cause)
		}
	}
	if err := pw.In(gpio.PullDown, gpio.RisingEdge); err == nil {
		t.Error("edge detection on the power input accepted")
	}
	if err := pw.PWM(gpio.DutyHalf, 0); err == nil {
		t.Error("PWM on the power input accepted")
	}
}

// TestBusyPin watches the flash busy line while an update runs: it rises
// with the first erase or program, and the bench cannot drive it.
func TestBusyPin(t *testing.T) {
	b := newPinBoard(t, "pins-busy")
	_, busyName := PinNames("pins-busy")
	busy := pinByName(t, busyName)
	if err := b.PowerPin().Out(gpio.High); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.WaitMode(ctx, ModeApp); err != nil {
		t.Fatal(err)
	}
	// Arming drops the edges of the first boot's counter write.
	if err := busy.In(gpio.PullNoChange, gpio.RisingEdge); err != nil {
		t.Fatal(err)
	}
	if busy.WaitForEdge(20 * time.Millisecond) {
		t.Fatal("busy edge from an idle board")
	}
	if err := busy.Out(gpio.High); err == nil {
		t.Error("Out on the busy line accepted")
	}
	if err := busy.PWM(gpio.DutyHalf, 0); err == nil {
		t.Error("PWM on the busy line accepted")
	}

	// The watcher runs beside the update, as a cut trigger does; the
	// update stays on the test goroutine, which may call t.Fatal.
	img := buildImage(t, "2.0.0", 2, 8<<10, 2)
	edge := make(chan time.Time, 1)
	go func() {
		if busy.WaitForEdge(5 * time.Second) {
			edge <- time.Now()
		}
		close(edge)
	}()
	if _, err := resumable(t, b, img, 6, []byte{1}); err != nil {
		t.Fatal(err)
	}
	// The board was idle (no edge) until the update began; the watcher's
	// own clock is not compared with the update's end, as its goroutine
	// may be scheduled only after a fast update has finished.
	if _, ok := <-edge; !ok {
		t.Fatal("no busy edge during an update")
	}
	if runningDigest(t, b) != sha256.Sum256(img) {
		t.Fatal("update did not boot")
	}
	if busy.Read() != gpio.Low {
		t.Error("busy line still high on an idle board")
	}
}

func TestPinsUnregisteredOnClose(t *testing.T) {
	b := newPinBoard(t, "pins-close")
	pwName, busyName := PinNames("pins-close")
	pinByName(t, pwName)
	pinByName(t, busyName)

	// A second board of the same name cannot take the pins, and its
	// failure leaves the first board's pins registered.
	if b2, err := New(Config{Name: "pins-close", Pins: true, DTLSAddr: "-", GDBAddr: "-"}); err == nil {
		b2.Close()
		t.Fatal("two boards registered the same pins")
	}
	if gpioreg.ByName(pwName) != gpio.PinIO(b.PowerPin()) || gpioreg.ByName(busyName) != gpio.PinIO(b.BusyPin()) {
		t.Fatal("a failed New unregistered another board's pins")
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{pwName, busyName} {
		if p := gpioreg.ByName(n); p != nil {
			t.Errorf("%s still registered after Close: %v", n, p)
		}
	}
	// The name is free again.
	b3 := newPinBoard(t, "pins-close")
	if gpioreg.ByName(pwName) != gpio.PinIO(b3.PowerPin()) {
		t.Error("a new board could not register the freed pins")
	}
}
