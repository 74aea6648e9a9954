package stm32uart_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/stm32uart"
	"github.com/fudbench/fudbench/sim/an3155"
)

const flashBase = an3155.FlashBase

func newDevice(t *testing.T, opts an3155.Options) *an3155.Device {
	t.Helper()
	d, err := an3155.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func newProbe(t *testing.T, cfg stm32uart.Config) *stm32uart.Probe {
	t.Helper()
	if cfg.Parity == "" {
		cfg.Parity = stm32uart.ParityNone // a pty cannot keep parity
	}
	p, err := stm32uart.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func image(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// seen returns the device's commands other than reads and writes, as text.
func seen(d *an3155.Device, codes ...byte) []string {
	var out []string
	for _, c := range d.Commands() {
		if slices.Contains(codes, c.Code) {
			out = append(out, c.String())
		}
	}
	return out
}

func TestFlash(t *testing.T) {
	tests := []struct {
		name      string
		ext       bool
		erase     string
		parity    string
		addr      uint32
		size      int
		wantErase []string
		wantDirty []uint32 // page offsets from flash base left programmed
	}{
		{
			name: "erase 0x43, unaligned start and end", addr: flashBase + 0x402, size: 3001,
			wantErase: []string{"0x43 pages [1 2 3]"}, wantDirty: []uint32{0, 4 << 10},
		},
		{
			name: "extended erase 0x44", ext: true, addr: flashBase + 0x400, size: 3072,
			wantErase: []string{"0x44 pages [1 2 3]"}, wantDirty: []uint32{0, 4 << 10},
		},
		{
			name: "forced 0x43", erase: stm32uart.EraseStandard, addr: flashBase, size: 100,
			wantErase: []string{"0x43 pages [0]"}, wantDirty: []uint32{1 << 10},
		},
		{
			name: "forced 0x44", ext: true, erase: stm32uart.EraseExtended, addr: flashBase + 0x7FE, size: 4,
			wantErase: []string{"0x44 pages [1 2]"}, wantDirty: []uint32{0, 3 << 10},
		},
		{
			name: "whole flash", ext: true, addr: flashBase, size: an3155.FlashSize,
			wantErase: []string{"0x44 pages " + fmt.Sprint(seq(0, 127))},
		},
		{
			// go.bug.st/serial does not read the modes back, so even parity
			// opens on a pty too.
			name: "parity even", parity: stm32uart.ParityEven, addr: flashBase, size: 300,
			wantErase: []string{"0x43 pages [0]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDevice(t, an3155.Options{ExtendedErase: tt.ext})
			d.Load(flashBase, make([]byte, 8<<10)) // programmed before
			p := newProbe(t, stm32uart.Config{Port: d.Path(), Erase: tt.erase, Parity: tt.parity})
			img := image(tt.size, uint64(tt.size))
			var calls [][2]int
			err := p.Flash(t.Context(), tt.addr, img, func(done, total int) { calls = append(calls, [2]int{done, total}) })
			if err != nil {
				t.Fatal(err)
			}
			flash := d.Flash()
			off := tt.addr - flashBase
			if !bytes.Equal(flash[off:off+uint32(len(img))], img) {
				t.Error("flash differs from the image")
			}
			// Pages written were erased first: what lies around the image
			// in them is 0xFF.
			pageStart := off &^ (an3155.PageSize - 1)
			for i := pageStart; i < off; i++ {
				if flash[i] != 0xFF {
					t.Fatalf("flash at %#x = %#x before the image, want erased", i, flash[i])
				}
			}
			for _, dirty := range tt.wantDirty {
				if flash[dirty] != 0 {
					t.Errorf("page at %#x erased, want it untouched", dirty)
				}
			}
			if got := seen(d, an3155.CmdErase, an3155.CmdExtendedErase); !slices.Equal(got, tt.wantErase) {
				t.Errorf("erases %q, want %q", got, tt.wantErase)
			}
			if len(calls) == 0 || calls[len(calls)-1] != [2]int{len(img), len(img)} {
				t.Fatalf("progress %v, want it to end at %d/%d", calls, len(img), len(img))
			}
			for i := 1; i < len(calls); i++ {
				if calls[i][0] <= calls[i-1][0] {
					t.Fatalf("progress not increasing: %v", calls)
				}
			}
			writes := seen(d, an3155.CmdWrite)
			if len(writes) != len(calls) {
				t.Errorf("%d writes, %d progress calls", len(writes), len(calls))
			}
			for _, w := range writes {
				var a uint32
				var n int
				if _, err := fmt.Sscanf(w, "0x31 at %v len %d", &a, &n); err != nil || a%4 != 0 || n%4 != 0 || n > 256 {
					t.Errorf("write %q: want word-aligned blocks of at most 256 bytes", w)
				}
			}
			// Verification read everything back.
			if reads := seen(d, an3155.CmdRead); len(reads) < len(writes) {
				t.Errorf("%d reads for %d writes: not verified", len(reads), len(writes))
			}
			back := make([]byte, len(img))
			if err := p.Read(t.Context(), tt.addr, back); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, img) {
				t.Error("Read returned other bytes than flashed")
			}
		})
	}
}

func TestReadAreas(t *testing.T) {
	d := newDevice(t, an3155.Options{})
	pattern := image(700, 3)
	d.Load(flashBase+0x10, pattern)
	p := newProbe(t, stm32uart.Config{Port: d.Path()})
	tests := []struct {
		name string
		addr uint32
		want []byte
	}{
		{"flash across blocks", flashBase + 0x10, pattern},
		{"one byte", flashBase + 0x11, pattern[1:2]},
		{"option bytes", an3155.OptionBase, []byte{0xA5, 0x5A, 0xFF, 0x00}},
		{"flash size register", 0x1FFFF7E0, []byte{128, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make([]byte, len(tt.want))
			if err := p.Read(t.Context(), tt.addr, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got % x, want % x", got[:min(len(got), 16)], tt.want[:min(len(tt.want), 16)])
			}
		})
	}
	t.Run("unmapped", func(t *testing.T) {
		err := p.Read(t.Context(), 0x40000000, make([]byte, 4))
		want := fmt.Sprintf("stm32uart:%s: read at 0x40000000: NACK", d.Path())
		if err == nil || err.Error() != want || !errors.Is(err, stm32uart.ErrNACK) {
			t.Fatalf("err %v, want %q", err, want)
		}
	})
	if pid, err := p.ProductID(t.Context()); err != nil || pid != an3155.PID {
		t.Errorf("ProductID() = %#x, %v; want %#x", pid, err, an3155.PID)
	}
	if id, err := p.Identify(t.Context()); err != nil || id != fmt.Sprintf("STM32 PID %#04x", an3155.PID) {
		t.Errorf("Identify() = %q, %v", id, err)
	}
}

func TestErase(t *testing.T) {
	d := newDevice(t, an3155.Options{ExtendedErase: true})
	d.Load(flashBase, make([]byte, 4<<10))
	p := newProbe(t, stm32uart.Config{Port: d.Path()})
	if err := p.Erase(t.Context(), flashBase+1<<10, 2<<10); err != nil {
		t.Fatal(err)
	}
	flash := d.Flash()
	if flash[0x3FF] != 0 || flash[0x400] != 0xFF || flash[0xBFF] != 0xFF || flash[0xC00] != 0 {
		t.Error("Erase did not erase exactly pages 1 and 2")
	}
	for _, bad := range []struct{ addr, n uint32 }{{flashBase + 1, 1 << 10}, {flashBase, 100}, {0x20000000, 1 << 10}} {
		err := p.Erase(t.Context(), bad.addr, bad.n)
		if err == nil || !strings.Contains(err.Error(), "not whole 1024-byte flash pages") {
			t.Errorf("Erase(%#x, %#x) = %v, want a page alignment error", bad.addr, bad.n, err)
		}
	}
	err := p.Erase(t.Context(), flashBase+126<<10, 4<<10)
	if err == nil || !strings.Contains(err.Error(), "past the end of STM32F10xxx medium-density flash (128 KiB)") {
		t.Errorf("erase past the end: %v", err)
	}
}

func TestEraseNotOffered(t *testing.T) {
	d := newDevice(t, an3155.Options{})
	p := newProbe(t, stm32uart.Config{Port: d.Path(), Erase: stm32uart.EraseExtended})
	err := p.Flash(t.Context(), flashBase, make([]byte, 4), nil)
	if err == nil || !strings.Contains(err.Error(), "offers no erase command 0x44") || !errors.Is(err, probes.ErrProbe) {
		t.Fatalf("err %v, want the missing 0x44 named", err)
	}
}

func TestReset(t *testing.T) {
	d := newDevice(t, an3155.Options{})
	p := newProbe(t, stm32uart.Config{Port: d.Path(), Timeout: time.Second})
	img := image(512, 9)
	if err := p.Flash(t.Context(), flashBase, img, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Reset(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := seen(d, an3155.CmdGo); !slices.Equal(got, []string{"0x21 at 0x08000000"}) {
		t.Errorf("Go commands %q", got)
	}
	if !d.Running() {
		t.Error("firmware not started")
	}
	// Out of the bootloader: nothing answers until the board is reset
	// into it again.
	start := time.Now()
	err := p.Flash(t.Context(), flashBase, img, nil)
	if err == nil || !strings.Contains(err.Error(), "no answer to the sync byte 0x7F") || !errors.Is(err, probes.ErrTimeout) {
		t.Fatalf("flash after reset: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("sync gave up after %v", took)
	}
	d.Reboot()
	if err := p.Flash(t.Context(), flashBase, img, nil); err != nil {
		t.Fatalf("flash after reboot into the bootloader: %v", err)
	}
}

func TestNACK(t *testing.T) {
	d := newDevice(t, an3155.Options{NACK: func(c an3155.Command) bool {
		return c.Code == an3155.CmdWrite && c.Addr == flashBase+0x400
	}})
	p := newProbe(t, stm32uart.Config{Port: d.Path()})
	err := p.Flash(t.Context(), flashBase, image(2048, 1), nil)
	want := fmt.Sprintf("stm32uart:%s: write at 0x08000400: NACK", d.Path())
	if err == nil || err.Error() != want {
		t.Fatalf("err %v\nwant %s", err, want)
	}
	if !errors.Is(err, stm32uart.ErrNACK) || !errors.Is(err, probes.ErrProbe) {
		t.Errorf("%v is not ErrNACK and ErrProbe", err)
	}
	// A NACK ends the command cleanly: the next operation needs no sync.
	syncs := len(seen(d, an3155.Sync))
	if err := p.Flash(t.Context(), flashBase+0x800, image(64, 2), nil); err != nil {
		t.Fatal(err)
	}
	if n := len(seen(d, an3155.Sync)); n != syncs {
		t.Errorf("%d syncs after a NACK, want %d", n, syncs)
	}
}

func TestPortVanishes(t *testing.T) {
	d := newDevice(t, an3155.Options{})
	p := newProbe(t, stm32uart.Config{Port: d.Path(), Timeout: 2 * time.Second})
	start := time.Now()
	err := p.Flash(t.Context(), flashBase, image(4096, 5), func(done, total int) {
		if done == 256 {
			d.Close() // unplugged after the first block
		}
	})
	prefix := fmt.Sprintf("stm32uart:%s: write at 0x08000100: port failed", d.Path())
	if err == nil || !strings.HasPrefix(err.Error(), prefix) || !errors.Is(err, probes.ErrProbe) {
		t.Fatalf("err %v\nwant one starting %q", err, prefix)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("noticed after %v", took)
	}
	err = p.Flash(t.Context(), flashBase, image(4, 5), nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("stm32uart:%s: open", d.Path())) {
		t.Fatalf("flash with the port gone: %v", err)
	}
}

func TestMisbehavingDevice(t *testing.T) {
	garbage := func(r []byte) []byte { return bytes.Repeat([]byte{0x55}, len(r)) }
	// afterSync lets the sync's ACK through and then applies f.
	afterSync := func(f func([]byte) []byte) func([]byte) []byte {
		first := true
		return func(r []byte) []byte {
			if first {
				first = false
				return r
			}
			return f(r)
		}
	}
	tests := []struct {
		name    string
		tamper  func([]byte) []byte
		want    string
		timeout bool
	}{
		{name: "only garbage", tamper: garbage, want: "sync: the device sent 55 55"},
		{name: "garbage instead of ack", tamper: afterSync(garbage), want: "get: the device sent 0x55 instead of ACK or NACK"},
		{name: "silent after sync", tamper: afterSync(func([]byte) []byte { return nil }), want: "get: no reply within 300ms", timeout: true},
		{
			name:   "short get frame",
			tamper: afterSync(func(r []byte) []byte { return r[:min(len(r), 3)] }), // ACK, N, version: commands missing
			want:   "get: no reply within 300ms", timeout: true,
		},
		{
			name:   "garbage reply to read",
			tamper: func(r []byte) []byte { return bytes.ReplaceAll(r, []byte{0xFF, 0xFF}, []byte{0x1F, 0x79}) },
			want:   "verify at 0x08000000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDevice(t, an3155.Options{Tamper: tt.tamper})
			p := newProbe(t, stm32uart.Config{Port: d.Path(), Timeout: 300 * time.Millisecond})
			start := time.Now()
			// Flash 0xFF words: verification reads back erased flash.
			err := p.Flash(t.Context(), flashBase, bytes.Repeat([]byte{0xFF}, 64), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "stm32uart:"+d.Path()+": ") {
				t.Errorf("err %q does not name the probe and port", err)
			}
			if tt.timeout != errors.Is(err, probes.ErrTimeout) {
				t.Errorf("errors.Is(err, ErrTimeout) = %v, want %v", !tt.timeout, tt.timeout)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
}

// TestResync: a bootloader left inside a command (a tool died halfway
// through a Write Memory) is brought back by the sync bursts.
func TestResync(t *testing.T) {
	d := newDevice(t, an3155.Options{})
	port, err := serial.Open(d.Path(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	// Sync, Write Memory at 0x08000000, and N = 255: the device now waits
	// for 257 more bytes.
	port.Write([]byte{0x7F, 0x31, 0xCE, 0x08, 0, 0, 0, 0x08, 0xFF})
	time.Sleep(50 * time.Millisecond)
	port.Close()

	p := newProbe(t, stm32uart.Config{Port: d.Path()})
	start := time.Now()
	img := image(1024, 4)
	if err := p.Flash(t.Context(), flashBase, img, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Flash()[:len(img)], img) {
		t.Error("flash differs after resync")
	}
	t.Logf("resync and flash took %v", time.Since(start))
}

func TestContextDeadline(t *testing.T) {
	d := newDevice(t, an3155.Options{Tamper: func([]byte) []byte { return nil }})
	p := newProbe(t, stm32uart.Config{Port: d.Path(), Timeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Flash(ctx, flashBase, make([]byte, 4), nil)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, probes.ErrTimeout) {
		t.Fatalf("err %v, want a deadline", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("returned after %v", took)
	}
}
