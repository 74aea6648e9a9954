package smp

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/sim"
)

func simImage(t *testing.T, version string, seq uint32, size int) []byte {
	t.Helper()
	img, err := fwimage.Build(fwimage.Spec{Version: version, Seq: seq, Size: size, Seed: int64(seq)}, fwimage.DevKey())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// haltedSim is a naive-inplace simulated board with a torn app slot: its
// bootloader finds no bootable image and serves SMP serial recovery.
func haltedSim(t *testing.T, reenumerate bool) *sim.Board {
	t.Helper()
	b, err := sim.New(sim.Config{
		Name: "smp-" + t.Name(), Strategy: sim.NaiveInplace, DTLSAddr: "-", GDBAddr: "-", UDPAddrs: []string{"127.0.0.1:0"},
		TimeScale: 0.05, StateDir: t.TempDir(), Reenumerate: reenumerate,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	torn := simImage(t, "1.0.0", 1, 8<<10)
	torn[5000] ^= 0xff
	if err := b.FactoryProgram(torn); err != nil {
		t.Fatal(err)
	}
	b.SetPower(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m, err := b.WaitMode(ctx, sim.ModeApp, sim.ModeHalted); m != sim.ModeHalted {
		t.Fatalf("board in %s (%v), want halted", m, err)
	}
	return b
}

// The probe brings a bricked simulated board back over its serial
// recovery; a power cut in the middle of the upload is a clear error
// within the timeout, and leaves the board halted until a full upload.
func TestSMPFlashesBrickedSimBoard(t *testing.T) {
	b := haltedSim(t, false)
	img := simImage(t, "2.0.0", 2, 40<<10)
	p, err := New(Config{Port: b.ConsoleLink(), MTU: 1024, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	if s, err := p.Echo(ctx, "hi"); err != nil || s != "hi" {
		t.Fatalf("echo: %q %v", s, err)
	}

	b.CutAtFlashOp(b.Flash().Ops() + 3000)
	start := time.Now()
	err = p.Flash(ctx, uint32(b.Layout().AppStart), img, nil)
	if !errors.Is(err, probes.ErrTimeout) {
		t.Fatalf("flash cut by a power loss: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the failed flash took %v", d)
	}
	t.Logf("cut mid-upload: %v", err)
	b.SetPower(true)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if m, _ := b.WaitMode(wctx, sim.ModeApp, sim.ModeHalted); m != sim.ModeHalted {
		t.Fatalf("after a cut mid-upload the board is %s, want halted", m)
	}

	start = time.Now()
	if err := p.Flash(ctx, uint32(b.Layout().AppStart), img, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes flashed over SMP in %v", len(img), time.Since(start).Round(time.Millisecond))
	list, err := p.ImageList(ctx)
	if err != nil || len(list) != 1 || list[0].Version != "2.0.0" {
		t.Fatalf("image list: %+v %v", list, err)
	}
	if _, err := p.ImageConfirm(ctx, list[0].Hash); err != nil {
		t.Fatal(err)
	}
	boots := b.Boots()
	if err := p.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := b.WaitBoot(wctx, boots); m != sim.ModeApp {
		t.Fatalf("after reset: %s %v", m, err)
	}
	got := make([]byte, len(img))
	if err := b.Flash().Read(b.Layout().AppStart, got); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("app slot differs from the image (%v)", err)
	}
	// The app does not speak SMP: silence, then a timeout.
	if _, err := p.Echo(ctx, "app"); !errors.Is(err, probes.ErrTimeout) {
		t.Fatalf("echo to the app: %v", err)
	}
}

// A board whose USB-serial adapter it powers: a cut mid-upload takes the
// port away, which is an error at once (not a timeout), and the probe
// opens the new port behind the same link for the next flash.
func TestSMPPortVanishesMidUpload(t *testing.T) {
	b := haltedSim(t, true)
	img := simImage(t, "2.0.0", 2, 40<<10)
	p, err := New(Config{Port: b.ConsoleLink(), MTU: 1024, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.CutAtFlashOp(b.Flash().Ops() + 3000)
	start := time.Now()
	err = p.Flash(ctx, 0, img, nil)
	if !errors.Is(err, probes.ErrProbe) || errors.Is(err, probes.ErrTimeout) {
		t.Fatalf("flash as the port vanished: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("the failed flash took %v: the vanished port was waited for", d)
	}
	t.Logf("port gone mid-upload, after %v: %v", time.Since(start).Round(time.Millisecond), err)
	b.SetPower(true)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if m, _ := b.WaitMode(wctx, sim.ModeApp, sim.ModeHalted); m != sim.ModeHalted {
		t.Fatalf("after the cut the board is %s, want halted", m)
	}
	if err := p.Flash(ctx, 0, img, nil); err != nil {
		t.Fatal(err)
	}
	boots := b.Boots()
	if err := p.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := b.WaitBoot(wctx, boots); m != sim.ModeApp {
		t.Fatalf("after reset: %s %v", m, err)
	}
}
