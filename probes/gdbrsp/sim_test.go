package gdbrsp_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/gdbrsp"
	"github.com/fudbench/fudbench/sim"
)

// The simulated board's GDB server is a real peer for the vFlash path: its
// packet sequence is pinned by a test in which gdb-multiarch loads into it.

const flashBase = 0x08000000

func newSimBoard(t *testing.T, cfg sim.Config) *sim.Board {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "probe-x"
	}
	cfg.GDBAddr, cfg.DTLSAddr, cfg.UDPAddrs, cfg.FlashBase = "127.0.0.1:0", "-", []string{"127.0.0.1:0"}, flashBase
	b, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func newProbe(t *testing.T, cfg gdbrsp.Config) *gdbrsp.Probe {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	p, err := gdbrsp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSimFlashAndBoot flashes a signed image into a board with no application
// over its probe port, resets it and sees it boot the image.
func TestSimFlashAndBoot(t *testing.T) {
	for _, verify := range []string{gdbrsp.VerifyCRC, gdbrsp.VerifyRead, gdbrsp.VerifyNone} {
		t.Run(verify, func(t *testing.T) {
			ctx := testCtx(t)
			b := newSimBoard(t, sim.Config{})
			b.SetPower(true)
			if m, err := b.WaitMode(ctx, sim.ModeHalted, sim.ModeRecovery); err != nil {
				t.Fatalf("empty board: mode %s: %v", m, err)
			}
			img, err := fwimage.Build(fwimage.Spec{Version: "2.0.0", Seq: 2, Size: 20<<10 + 5, Seed: 3}, fwimage.DevKey())
			if err != nil {
				t.Fatal(err)
			}
			p := newProbe(t, gdbrsp.Config{Address: b.GDBAddr(), Verify: verify})
			var calls, last, lastTotal int
			progress := func(done, total int) {
				if done <= last {
					t.Errorf("progress went from %d to %d", last, done)
				}
				calls, last, lastTotal = calls+1, done, total
			}
			addr := uint32(flashBase + b.Layout().AppStart)
			if err := p.Flash(ctx, addr, img, progress); err != nil {
				t.Fatalf("Flash: %v", err)
			}
			if last != len(img) || lastTotal != len(img) || calls < 2 {
				t.Errorf("progress: %d calls, last %d/%d, want the end at %d over several chunks", calls, last, lastTotal, len(img))
			}
			boots := b.Boots()
			if err := p.Reset(ctx); err != nil {
				t.Fatalf("Reset: %v", err)
			}
			if !strings.Contains(p.Output(), "reset") {
				t.Errorf("monitor output %q does not mention the reset", p.Output())
			}
			if m, err := b.WaitBoot(ctx, boots); err != nil || m != sim.ModeApp {
				t.Fatalf("after reset: mode %q, %v; want %s", m, err, sim.ModeApp)
			}
			got := make([]byte, len(img))
			if err := b.Flash().Read(b.Layout().AppStart, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, img) {
				t.Fatal("board flash differs from the image")
			}
			// Read back through the probe as well.
			back := make([]byte, 300)
			if err := p.Read(ctx, addr+100, back); err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !bytes.Equal(back, img[100:400]) {
				t.Error("Read through the probe differs from the image")
			}
		})
	}
}

// TestSimEraseAndRefusals: erasing records, journal and counter works; the
// bootloader is write-protected and the error names the address; an
// unpowered board is a clear error.
func TestSimEraseAndRefusals(t *testing.T) {
	ctx := testCtx(t)
	b := newSimBoard(t, sim.Config{})
	lay := b.Layout()
	size := b.Flash().Size()

	p := newProbe(t, gdbrsp.Config{Address: b.GDBAddr()})
	// Unpowered: the probe can be opened and even connect, but the target
	// refuses flash commands.
	err := p.Flash(ctx, flashBase+uint32(lay.AppStart), []byte("hello"), nil)
	var re *gdbrsp.ReplyError
	if !errors.Is(err, probes.ErrProbe) || !errors.As(err, &re) || re.Reply != "E03" {
		t.Fatalf("unpowered Flash: %v, want a ReplyError E03", err)
	}
	if !strings.Contains(err.Error(), "0x08") || !strings.Contains(err.Error(), p.String()) || !strings.Contains(err.Error(), "unpowered") {
		t.Errorf("unpowered error %q does not name the probe, the address and the likely cause", err)
	}

	b.SetPower(true)
	// Program something in the records area first, through the probe.
	junk := bytes.Repeat([]byte{0x5a}, 100)
	if err := p.Flash(ctx, flashBase+uint32(lay.BootEnd)+10, junk, nil); err != nil {
		t.Fatalf("Flash into records: %v", err)
	}
	if err := p.Erase(ctx, flashBase+uint32(lay.BootEnd), uint32(size-lay.BootEnd)); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	rest := make([]byte, size-lay.BootEnd)
	if err := b.Flash().Read(lay.BootEnd, rest); err != nil {
		t.Fatal(err)
	}
	for i, c := range rest {
		if c != 0xff {
			t.Fatalf("byte at %#x is %#02x after Erase, want 0xff", lay.BootEnd+i, c)
		}
	}

	tests := []struct {
		name     string
		run      func() error
		wantAddr string
	}{
		{"flash into bootloader", func() error { return p.Flash(ctx, flashBase+0x100, []byte("evil"), nil) }, "0x08000000+0x1000: the server answered \"E03\" (the target answers reads: flash protected"},
		{"erase bootloader", func() error { return p.Erase(ctx, flashBase, uint32(lay.BootEnd)) }, "0x08000000"},
		{"erase misaligned", func() error { return p.Erase(ctx, flashBase+uint32(lay.BootEnd)+1, 4096) }, "0x08004001"},
		{"erase outside flash", func() error { return p.Erase(ctx, flashBase+uint32(size), 4096) }, "0x08080000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if !errors.Is(err, probes.ErrProbe) {
				t.Fatalf("err %v, want ErrProbe", err)
			}
			if !strings.Contains(err.Error(), tt.wantAddr) {
				t.Errorf("error %q does not name %s", err, tt.wantAddr)
			}
		})
	}
	boot := make([]byte, 16)
	if err := p.Read(ctx, flashBase, boot); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(boot, []byte("fudbench-sim")) {
		t.Errorf("bootloader damaged: %q", boot)
	}
}

// TestSimMixedBlockSizes writes across flash regions with different erase
// block sizes (an STM32F4-like layout: 16 KiB then 64 KiB sectors).
func TestSimMixedBlockSizes(t *testing.T) {
	ctx := testCtx(t)
	b := newSimBoard(t, sim.Config{Layout: "stm32f4"})
	b.SetPower(true)
	p := newProbe(t, gdbrsp.Config{Address: b.GDBAddr()})
	regions, err := p.MemoryMap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(regions) < 3 || regions[0].BlockSize != 16<<10 || regions[1].BlockSize != 64<<10 {
		t.Fatalf("memory map %v, want 16 KiB then 64 KiB blocks", regions)
	}
	// Neighbours in the same blocks are erased too, as GDB's load does;
	// a neighbour in an untouched block survives.
	keep := []byte("keep me")
	if err := p.Flash(ctx, flashBase+(32<<10), keep, nil); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 16<<10)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	addr := uint32(flashBase + 56<<10) // 48–64 KiB block, then 64–128 KiB
	if err := p.Flash(ctx, addr, data, nil); err != nil {
		t.Fatalf("Flash across regions: %v", err)
	}
	got := make([]byte, len(data))
	if err := b.Flash().Read(56<<10, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("flash differs after a write across regions")
	}
	got = make([]byte, len(keep))
	if err := b.Flash().Read(32<<10, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, keep) {
		t.Errorf("data in an untouched block changed: %q", got)
	}
}

// TestSimOneClient: the board's server serves one client at a time, so a
// second probe times out until the first is closed.
func TestSimOneClient(t *testing.T) {
	ctx := testCtx(t)
	b := newSimBoard(t, sim.Config{})
	b.SetPower(true)
	p1 := newProbe(t, gdbrsp.Config{Address: b.GDBAddr()})
	buf := make([]byte, 8)
	if err := p1.Read(ctx, flashBase, buf); err != nil {
		t.Fatal(err)
	}
	// The stub serves one client at a time: p2 waits until p1 lets go.
	p2 := newProbe(t, gdbrsp.Config{Address: b.GDBAddr(), Timeout: 300 * time.Millisecond})
	if err := p2.Read(ctx, flashBase, buf); !errors.Is(err, probes.ErrTimeout) {
		t.Fatalf("second client while the first holds the server: %v, want ErrTimeout", err)
	}
	p1.Close()
	p2b := newProbe(t, gdbrsp.Config{Address: b.GDBAddr()})
	if err := p2b.Read(ctx, flashBase, buf); err != nil {
		t.Fatalf("after the first client left: %v", err)
	}
	if err := p1.Read(ctx, flashBase, buf); !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Read on a closed probe: %v", err)
	}
}
