package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/sim/flash"
)

// scpiConn is a SCPI client over raw TCP, as the bench's driver is.
type scpiConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialSupply(t *testing.T, b *Board) *scpiConn {
	t.Helper()
	addr := b.SupplyAddr()
	if addr == "" || b.Info().Supply != addr {
		t.Fatalf("no supply address: %q, Info %q", addr, b.Info().Supply)
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &scpiConn{t: t, c: c, r: bufio.NewReader(c)}
}

// send sends a setting and checks that the error queue stayed empty.
func (s *scpiConn) send(cmd string) {
	s.t.Helper()
	if got := s.ask(cmd + ";:SYST:ERR?"); got != `0,"No error"` {
		s.t.Fatalf("%s: %s", cmd, got)
	}
}

func (s *scpiConn) ask(q string) string {
	s.t.Helper()
	s.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(s.c, "%s\n", q); err != nil {
		s.t.Fatal(err)
	}
	line, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return strings.TrimSuffix(line, "\n")
}

func (s *scpiConn) float(q string) float64 {
	s.t.Helper()
	a := s.ask(q)
	v, err := strconv.ParseFloat(a, 64)
	if err != nil {
		s.t.Fatalf("%s: %q", q, a)
	}
	return v
}

// near checks got against want within a relative tolerance.
func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol*want {
		t.Errorf("%s = %.6f, want %.6f ± %.0f %%", what, got, want, tol*100)
	}
}

func waitMode(t *testing.T, b *Board, modes ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := b.WaitMode(ctx, modes...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCurrentAndCharge: the board draws its mode's current, plus the
// flash's while it erases or programs, and the charge integrates it
// exactly between changes.
func TestCurrentAndCharge(t *testing.T) {
	b := newBoard(t, Config{TimeScale: 1}, buildImage(t, "1.0.0", 1, 4<<10, 1))
	if b.Current() != DefaultCurrent.App {
		t.Errorf("app current %v, want %v", b.Current(), DefaultCurrent.App)
	}
	t0 := time.Now()
	time.Sleep(20 * time.Millisecond)
	t1 := time.Now()
	if q := b.ChargeAt(t1) - b.ChargeAt(t0); math.Abs(q-DefaultCurrent.App*t1.Sub(t0).Seconds()) > 1e-12 {
		t.Errorf("charge over %v idle: %g C, want %g", t1.Sub(t0), q, DefaultCurrent.App*t1.Sub(t0).Seconds())
	}
	// A sector erase (85 ms): app + erase while the busy line is high.
	var during float64
	b.Flash().OnBusy(func(on bool) {
		if on {
			during = b.Current()
		}
	})
	q0, e0 := b.Charge(), time.Now()
	if err := b.Flash().EraseSector(b.Flash().NumSectors() - 1); err != nil {
		t.Fatal(err)
	}
	q1, e1 := b.Charge(), time.Now()
	b.Flash().OnBusy(nil)
	if want := DefaultCurrent.App + DefaultCurrent.Erase; during != want {
		t.Errorf("current during an erase %v, want %v", during, want)
	}
	extra := (q1 - q0) - DefaultCurrent.App*e1.Sub(e0).Seconds()
	near(t, "erase charge above idle", extra, DefaultCurrent.Erase*0.085, 0.25)
	if b.Current() != DefaultCurrent.App {
		t.Errorf("after the erase: %v", b.Current())
	}
	b.SetPower(false)
	if b.Current() != 0 {
		t.Errorf("unpowered: %v A", b.Current())
	}
	q := b.Charge()
	time.Sleep(5 * time.Millisecond)
	if b.Charge() != q {
		t.Error("an unpowered board draws charge")
	}
	b.SetPower(true)
	if b.Current() != DefaultCurrent.Boot {
		t.Errorf("booting: %v", b.Current())
	}
	waitMode(t, b, ModeApp)

	// A board with its own figures.
	own := CurrentModel{Boot: 10e-3, App: 2e-3, Recovery: 3e-3, Halted: 0.5e-3, Erase: 7e-3, Program: 6e-3}
	b2 := newBoard(t, Config{Current: own}, buildImage(t, "1.0.0", 1, 4<<10, 1))
	if b2.Current() != own.App || b2.Config().Current != own {
		t.Errorf("configured model: %v A, %+v", b2.Current(), b2.Config().Current)
	}
}

// TestMeterHistory: the charge at a past instant is exact within the
// history, which stays bounded.
func TestMeterHistory(t *testing.T) {
	m := newMeter(DefaultCurrent)
	m.setMode(ModeApp)
	t0 := time.Now()
	for i := range 3 * chargeMaxPoints {
		m.setOp([]flash.OpKind{flash.OpProgram, flash.OpNone}[i%2])
	}
	if len(m.pts) > chargeMaxPoints {
		t.Errorf("%d points kept", len(m.pts))
	}
	time.Sleep(2 * time.Millisecond)
	m.setMode(ModeOff)
	t1 := time.Now()
	q1 := m.chargeAt(t1)
	time.Sleep(2 * time.Millisecond)
	if m.chargeAt(time.Now()) != q1 {
		t.Error("charge grows while off")
	}
	if q := m.chargeAt(t1.Add(-time.Millisecond)); !(q < q1 && q > q1-DefaultCurrent.App*2e-3) {
		t.Errorf("charge 1 ms before switching off: %g of %g", q, q1)
	}
	if m.chargeAt(t0.Add(-time.Hour)) > m.chargeAt(t0) {
		t.Error("charge before the history is above a later one")
	}
}

// TestBrownout: below bor the board resets at once, like a cut with
// cause brownout; it boots again once the supply is back above bor plus
// the hysteresis with its input still on, and says so on its console.
func TestBrownout(t *testing.T) {
	b := newConsoleBoard(t, Config{Name: "brown", TimeScale: 1})
	r := openConsole(t, b, b.ConsoleLink())
	b.SetPower(true)
	r.expect(t, "APP ")
	waitMode(t, b, ModeApp)

	b.SetVoltage(2.0) // marginal: the CPU runs on
	if !b.Powered() || b.Flash().Marginal() != DefaultWeakProgram {
		t.Fatalf("at 2.0 V: powered %v, flash marginal %v", b.Powered(), b.Flash().Marginal())
	}
	boots := b.Boots()
	// A brownout in the middle of an erase tears it.
	done := make(chan error, 1)
	go func() { done <- b.Flash().EraseSector(b.Flash().NumSectors() - 1) }()
	time.Sleep(20 * time.Millisecond)
	b.SetVoltage(1.7)
	if err := <-done; err == nil {
		t.Error("the erase finished through a brownout")
	}
	rec, n := b.LastCut()
	if n != 1 || rec.Cause != ResetBrownout || rec.Mode != ModeApp || rec.Flash.Kind != flash.OpErase {
		t.Fatalf("cut record %d %+v", n, rec)
	}
	if b.Powered() || !b.PowerInput() || b.Mode() != ModeOff || b.Current() != 0 {
		t.Fatalf("in brownout: powered %v input %v mode %s current %v", b.Powered(), b.PowerInput(), b.Mode(), b.Current())
	}
	b.SetVoltage(DefaultBOR + BORHysteresis/2) // above bor, not above the hysteresis
	time.Sleep(50 * time.Millisecond)
	if b.Powered() || b.Boots() != boots {
		t.Fatal("released from reset inside the hysteresis")
	}
	b.SetVoltage(3.3)
	if b.Flash().Marginal() != 0 {
		t.Error("still marginal at 3.3 V")
	}
	got := r.expect(t, "BL ", "APP ")
	if want := fmt.Sprintf("BL fudbench-sim bootloader v1 board=brown reset=brownout boots=%d", boots+1); got[0] != want || !strings.Contains(got[1], "reset=brownout") {
		t.Errorf("banner %q, want %q", got, want)
	}
	waitMode(t, b, ModeApp)
	// The update protocol keeps its two causes: a brownout is a power reset.
	c := dial(t, b)
	boot, err := c.Boot(context.Background())
	c.Close()
	if err != nil || boot.ResetCause != fwproto.ResetPower {
		t.Errorf("GET /boot after a brownout: %+v %v", boot, err)
	}

	// Switched off while held in reset: it stays off when the supply comes back.
	b.SetVoltage(1.0)
	b.SetPower(false)
	b.SetVoltage(3.3)
	time.Sleep(50 * time.Millisecond)
	if b.Powered() || b.PowerInput() {
		t.Fatal("booted with its power input off")
	}
	if _, n := b.LastCut(); n != 2 {
		t.Errorf("%d cuts, want 2: the off in brownout is not a cut", n)
	}
	// Switched on below bor: held in reset, then a power-on reset.
	b.SetVoltage(1.5)
	b.SetPower(true)
	time.Sleep(50 * time.Millisecond)
	if b.Powered() || !b.PowerInput() {
		t.Fatal("booted below bor")
	}
	b.SetVoltage(3.3)
	got = r.expect(t, "BL ")
	if !strings.Contains(got[0], "reset=power") {
		t.Errorf("power-on below bor then raised: %q", got[0])
	}
	waitMode(t, b, ModeApp)
}

// TestSupplyDrivesBoard: the SCPI supply over TCP switches the board,
// reads its current as it idles and erases, drops it into brownout and
// back, and programs at a marginal voltage leave bits a read-back shows.
func TestSupplyDrivesBoard(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 8<<10, 1)
	b, err := New(Config{Name: "psu", TimeScale: 1, Supply: true, DTLSAddr: "-", GDBAddr: "-", UDPAddrs: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.FactoryProgram(base); err != nil {
		t.Fatal(err)
	}
	s := dialSupply(t, b)
	if got := s.ask("*IDN?"); got != "fudbench,SIM-SUPPLY,psu,1.0" {
		t.Errorf("*IDN? %q", got)
	}
	s.send("VOLT 3.3;CURR 0.1")
	if s.ask("OUTP?") != "0" || s.float("MEAS:VOLT?") != 0 || s.float("MEAS:CURR?") != 0 {
		t.Error("output not off at start")
	}
	s.send("OUTP ON")
	waitMode(t, b, ModeApp)
	if s.ask("OUTP?") != "1" || s.float("MEAS:VOLT?") != 3.3 {
		t.Error("output on: OUTP? or MEAS:VOLT? wrong")
	}
	s.float("MEAS:CURR?") // starts a window
	time.Sleep(50 * time.Millisecond)
	near(t, "MEAS:CURR? idle in app", s.float("MEAS:CURR?"), DefaultCurrent.App, 0.02)
	near(t, "MEAS:POW? idle", s.float("MEAS:POW?"), 3.3*DefaultCurrent.App, 0.02)

	// Erasing twelve sectors takes about a second: measure inside it.
	done := make(chan error, 1)
	go func() { done <- b.Flash().EraseRange(b.Flash().Size()-12*4096, 12*4096) }()
	for deadline := time.Now().Add(5 * time.Second); b.Current() == DefaultCurrent.App; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the erase never started")
		}
	}
	s.float("MEAS:CURR?")
	time.Sleep(60 * time.Millisecond)
	erasing := s.float("MEAS:CURR?")
	select {
	case <-done:
		t.Fatal("the erase ended before the measurement: the machine is too slow for this test")
	default:
	}
	near(t, "MEAS:CURR? during an erase", erasing, DefaultCurrent.App+DefaultCurrent.Erase, 0.05)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The supply's output and the board's other power input are one.
	b.SetPower(false)
	if s.ask("OUTP?") != "0" {
		t.Error("OUTP? after the board was switched off elsewhere")
	}
	s.send("OUTP ON")
	waitMode(t, b, ModeApp)
	s.send("OUTP OFF")
	if b.Powered() || b.Mode() != ModeOff || s.float("MEAS:CURR?") != 0 || s.float("MEAS:VOLT?") != 0 {
		t.Errorf("OUTP OFF: powered %v mode %s", b.Powered(), b.Mode())
	}
	if rec, _ := b.LastCut(); rec.Cause != "power-input" {
		t.Errorf("cut by OUTP OFF recorded as %q", rec.Cause)
	}

	// Brownout through the supply.
	s.send("OUTP ON")
	waitMode(t, b, ModeApp)
	boots := b.Boots()
	s.send("VOLT 1.5")
	if b.Powered() || b.Mode() != ModeOff || s.ask("OUTP?") != "1" || s.float("MEAS:VOLT?") != 1.5 {
		t.Errorf("VOLT 1.5: powered %v mode %s", b.Powered(), b.Mode())
	}
	if rec, _ := b.LastCut(); rec.Cause != ResetBrownout {
		t.Errorf("brownout cut recorded as %q", rec.Cause)
	}
	s.send("VOLT 3.3")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m, err := b.WaitBoot(ctx, boots); err != nil || m != ModeApp {
		t.Fatalf("after the supply came back: %s %v", m, err)
	}
}

// TestMarginalUpdate: an update written at a voltage between bor and
// flash_min is acknowledged block by block, but its read-back differs
// from the image and the bootloader refuses it; the same update at the
// nominal voltage is exact and boots.
func TestMarginalUpdate(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 8<<10, 1)
	img := buildImage(t, "2.0.0", 2, 8<<10, 5)
	for _, tc := range []struct {
		volts float64
		weak  bool
	}{{2.2, true}, {3.3, false}} {
		t.Run(fmt.Sprint(tc.volts, "V"), func(t *testing.T) {
			b := newBoard(t, Config{Strategy: NaiveInplace, Supply: true}, base)
			s := dialSupply(t, b)
			s.send(fmt.Sprintf("VOLT %g", tc.volts))
			if !b.Powered() {
				t.Fatal("not running")
			}
			boots := b.Boots()
			if err := naiveUpload(t, b, img, 6); err != nil {
				t.Fatalf("upload at %g V: %v", tc.volts, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			m, err := b.WaitBoot(ctx, boots)
			if err != nil {
				t.Fatal(err)
			}
			back := make([]byte, len(img))
			b.Flash().Read(b.Layout().AppStart, back)
			info := b.Info()
			if tc.weak {
				wrong := 0
				for i := range back {
					for x := back[i] ^ img[i]; x != 0; x &= x - 1 {
						wrong++
					}
				}
				if wrong == 0 || info.WeakPrograms == 0 || info.WeakBits < uint64(wrong) {
					t.Errorf("read-back: %d wrong bits; Info weak programs %d bits %d", wrong, info.WeakPrograms, info.WeakBits)
				}
				if m != ModeHalted {
					t.Errorf("a weakly written image: %s", m)
				}
				return
			}
			if !bytes.Equal(back, img) || info.WeakPrograms != 0 {
				t.Errorf("at nominal: read-back differs (%v) or weak programs %d", !bytes.Equal(back, img), info.WeakPrograms)
			}
			if m != ModeApp || runningDigest(t, b) != sha256.Sum256(img) {
				t.Errorf("at nominal: %s", m)
			}
		})
	}
}

func TestElectricalConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{BOR: 2.5},
		{FlashMin: 1.5},
		{NominalVoltage: 2.0},
		{WeakProgram: 2},
		{Current: CurrentModel{App: -1}},
		{BOR: math.NaN()},
	} {
		c.Name = "bad"
		if b, err := New(c); err == nil {
			b.Close()
			t.Errorf("%+v accepted", c)
		}
	}
}
