package gpio_test

import (
	"context"
	"testing"
	"time"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/power"
	_ "github.com/fudbench/fudbench/power/gpio"
	"github.com/fudbench/fudbench/sim"
)

// TestSimBoard drives a simulated board's power input through the same
// path the bench takes: the registered driver, opened by pin name.
func TestSimBoard(t *testing.T) {
	board, err := sim.New(sim.Config{Name: "pwrtest", Pins: true, DTLSAddr: "-", GDBAddr: "-", UDPAddrs: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { board.Close() })
	img, err := fwimage.Build(sim.BaselineSpec, fwimage.DevKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := board.FactoryProgram(img); err != nil {
		t.Fatal(err)
	}
	pwr, _ := sim.PinNames("pwrtest")
	if pwr != "PWRTEST-PWR" {
		t.Fatalf("power pin is %q", pwr)
	}

	sw, err := power.Open("gpio", power.MapSettings{"pin": pwr})
	if err != nil {
		t.Fatal(err)
	}
	if sw.String() != "gpio:PWRTEST-PWR" {
		t.Errorf("String() = %q", sw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := sw.On(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := board.WaitMode(ctx, sim.ModeApp); err != nil {
		t.Fatal(err)
	}
	if on, err := sw.(power.StateReader).State(ctx); err != nil || !on {
		t.Errorf("State() = %v, %v after On; want on", on, err)
	}

	if err := sw.Off(ctx); err != nil {
		t.Fatal(err)
	}
	if board.Powered() {
		t.Error("board still powered after Off")
	}
	if cuts := board.Cuts(); len(cuts) != 1 || cuts[0].Cause != "power-input" {
		t.Errorf("cuts = %+v, want one from the power input", cuts)
	}
	if on, err := sw.(power.StateReader).State(ctx); err != nil || on {
		t.Errorf("State() = %v, %v after Off; want off", on, err)
	}

	// A cycle is a second boot; Safe (Halt, exit off) is a second cut.
	boots := board.Boots()
	if err := power.Cycle(ctx, sw, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := board.WaitBoot(ctx, boots); err != nil {
		t.Fatal(err)
	}
	if err := power.Safe(ctx, sw); err != nil {
		t.Fatal(err)
	}
	if board.Powered() || len(board.Cuts()) != 2 {
		t.Errorf("after Safe: powered %v, %d cuts; want off and 2 cuts", board.Powered(), len(board.Cuts()))
	}
}
