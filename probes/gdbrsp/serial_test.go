package gdbrsp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fudbench/fudbench/internal/ptytest"

	"github.com/creack/pty"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/sim/gdbstub"
)

// These tests run the client over a real pseudo-terminal, opened with
// go.bug.st/serial as a Black Magic Probe's port would be, with the
// simulated board's GDB stub serving the master side.

// Layout of memTarget: 64 KiB of flash in 1 KiB blocks, then 2 KiB more
// in one 2 KiB block, and 16 KiB of RAM.
const (
	memFlash      = 0x08000000
	memFlashSize  = 64 << 10
	memFlash2Size = 2 << 10
	memRAM        = 0x20000000
	memRAMSize    = 16 << 10
)

// memTarget is an in-memory gdbstub.Target with NOR rules: flash is
// written only where erased, and plain writes to flash are refused.
type memTarget struct {
	mu     sync.Mutex
	flash  []byte
	ram    []byte
	erased []bool // per byte: erased since the last write
	resets []bool
	ops    []string
	// onWrite, if set, runs before each FlashWrite.
	onWrite func()
}

var _ gdbstub.Target = (*memTarget)(nil)

func newMemTarget() *memTarget {
	n := memFlashSize + memFlash2Size
	m := &memTarget{flash: bytes.Repeat([]byte{0xa5}, n), ram: make([]byte, memRAMSize), erased: make([]bool, n)}
	return m
}

func (m *memTarget) MemoryMap() []gdbstub.Region {
	return []gdbstub.Region{
		{Kind: gdbstub.KindFlash, Start: memFlash, Length: memFlashSize, BlockSize: 1 << 10},
		{Kind: gdbstub.KindFlash, Start: memFlash + memFlashSize, Length: memFlash2Size, BlockSize: memFlash2Size},
		{Kind: gdbstub.KindRAM, Start: memRAM, Length: memRAMSize},
	}
}

func (m *memTarget) span(addr uint32, n int) ([]byte, int, bool) {
	a, end := uint64(addr), uint64(addr)+uint64(n)
	switch {
	case a >= memFlash && end <= memFlash+uint64(len(m.flash)):
		return m.flash[a-memFlash : end-memFlash], int(a - memFlash), true
	case a >= memRAM && end <= memRAM+memRAMSize:
		return m.ram[a-memRAM : end-memRAM], 0, false
	}
	return nil, 0, false
}

func (m *memTarget) ReadMemory(addr uint32, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, _, _ := m.span(addr, len(p))
	if b == nil {
		return fmt.Errorf("%#x+%#x unmapped", addr, len(p))
	}
	copy(p, b)
	return nil
}

func (m *memTarget) WriteMemory(addr uint32, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, _, flash := m.span(addr, len(p))
	if b == nil || flash {
		return fmt.Errorf("%#x+%#x: not writable with a plain write", addr, len(p))
	}
	copy(b, p)
	return nil
}

func (m *memTarget) FlashErase(addr, length uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops = append(m.ops, fmt.Sprintf("erase %#x+%#x", addr, length))
	b, off, flash := m.span(addr, int(length))
	if !flash {
		return fmt.Errorf("%#x+%#x is not flash", addr, length)
	}
	for i := range b {
		b[i] = 0xff
		m.erased[off+i] = true
	}
	return nil
}

func (m *memTarget) FlashWrite(addr uint32, p []byte) error {
	if m.onWrite != nil {
		m.onWrite()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, off, flash := m.span(addr, len(p))
	if !flash {
		return fmt.Errorf("%#x+%#x is not flash", addr, len(p))
	}
	for i := range p {
		if !m.erased[off+i] {
			return fmt.Errorf("write to %#x, which was not erased", addr+uint32(i))
		}
		m.erased[off+i] = false
		b[i] = p[i]
	}
	return nil
}

func (m *memTarget) FlashDone() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops = append(m.ops, "done")
	return nil
}

func (m *memTarget) Reset(halt bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resets = append(m.resets, halt)
	return nil
}

// serveStub serves target's GDB stub on master until the test ends or
// the client detaches. It returns a stop function and a channel closed
// when the stub has stopped.
func serveStub(t *testing.T, target gdbstub.Target, master io.ReadWriteCloser) (context.CancelFunc, <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	srv := gdbstub.New(target, gdbstub.Options{Name: "pty-board"})
	go func() {
		defer close(stopped)
		srv.ServeConn(ctx, master)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Error("stub did not stop")
		}
	})
	return cancel, stopped
}

func serialProbe(t *testing.T, cfg Config) *Probe {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func serialCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func patterned(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		// Include the bytes X packets must escape: # $ } *
		b[i] = "#$}*"[i%4] ^ byte(i>>2) ^ seed
	}
	return b
}

// TestSerialFlash flashes over the pty into both flash regions and RAM,
// reads it back, and resets, with each verification method.
func TestSerialFlash(t *testing.T) {
	for _, verify := range []string{VerifyCRC, VerifyRead, VerifyNone} {
		t.Run(verify, func(t *testing.T) {
			ctx := serialCtx(t)
			master, path := ptytest.Open(t)
			target := newMemTarget()
			serveStub(t, target, master)
			p := serialProbe(t, Config{Port: path, Verify: verify, Reset: "reset run"})
			if want := "gdbrsp:" + path; p.String() != want {
				t.Errorf("String() = %q, want %q", p, want)
			}

			// Crosses from the 1 KiB blocks into the 2 KiB block and ends
			// inside it, unaligned.
			img := patterned(memFlashSize-1000+1500, 1)
			addr := uint32(memFlash + 1000)
			var last int
			if err := p.Flash(ctx, addr, img, func(done, total int) {
				if done <= last || total != len(img) {
					t.Errorf("progress %d/%d after %d", done, total, last)
				}
				last = done
			}); err != nil {
				t.Fatalf("Flash: %v", err)
			}
			if last != len(img) {
				t.Errorf("progress ended at %d, want %d", last, len(img))
			}
			got := make([]byte, len(img))
			if err := p.Read(ctx, addr, got); err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !bytes.Equal(got, img) {
				t.Fatal("read back differs from the image")
			}
			target.mu.Lock()
			if !bytes.Equal(target.flash[1000:1000+len(img)], img) {
				t.Error("target flash differs from the image")
			}
			ops := strings.Join(target.ops, ", ")
			target.mu.Unlock()
			if want := "erase 0x8000000+0x10000, erase 0x8010000+0x800, done"; ops != want {
				t.Errorf("flash ops %q, want %q", ops, want)
			}

			// RAM goes by X (or M), not vFlash.
			ram := patterned(3000, 2)
			if err := p.Flash(ctx, memRAM+16, ram, nil); err != nil {
				t.Fatalf("Flash to RAM: %v", err)
			}
			target.mu.Lock()
			ramOK := bytes.Equal(target.ram[16:16+len(ram)], ram)
			target.mu.Unlock()
			if !ramOK {
				t.Error("target RAM differs")
			}

			if err := p.Reset(ctx); err != nil {
				t.Fatalf("Reset: %v", err)
			}
			if err := p.Halt(ctx); err != nil {
				t.Fatalf("Halt: %v", err)
			}
			target.mu.Lock()
			resets := fmt.Sprint(target.resets)
			target.mu.Unlock()
			if resets != "[false true]" {
				t.Errorf("resets %s, want [false true]", resets)
			}
			regions, err := p.MemoryMap(ctx)
			if err != nil || len(regions) != 3 {
				t.Errorf("MemoryMap = %v, %v; want 3 regions", regions, err)
			}
		})
	}
}

// TestSerialOpen: Open through the registry with the port setting.
func TestSerialOpen(t *testing.T) {
	ctx := serialCtx(t)
	master, path := ptytest.Open(t)
	target := newMemTarget()
	serveStub(t, target, master)
	f, err := probes.Open(Driver, probes.MapSettings{"port": path, "timeout": "5s"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img := patterned(5000, 3)
	if err := f.Flash(ctx, memFlash, img, nil); err != nil {
		t.Fatalf("Flash: %v", err)
	}
	got := make([]byte, len(img))
	if err := f.(probes.Reader).Read(ctx, memFlash, got); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("Read: %v (equal %v)", err, bytes.Equal(got, img))
	}
}

func TestSerialSettings(t *testing.T) {
	tests := []struct {
		name     string
		s        probes.MapSettings
		wantErr  string
		wantName string
	}{
		{name: "port", s: probes.MapSettings{"port": "/dev/ttyACM0"}, wantName: "gdbrsp:/dev/ttyACM0"},
		{name: "both", s: probes.MapSettings{"port": "/dev/ttyACM0", "address": "127.0.0.1:3333"}, wantErr: "give one, not both"},
		{name: "neither", s: probes.MapSettings{"reset": "reset"}, wantErr: "or port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := probes.Open(Driver, tt.s)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.String() != tt.wantName {
				t.Errorf("String() = %q, want %q", f, tt.wantName)
			}
		})
	}
}

// TestSerialMissingPort: a port that does not exist is a clear ErrProbe
// at first use.
func TestSerialMissingPort(t *testing.T) {
	p := serialProbe(t, Config{Port: "/dev/nonexistent-bmp"})
	err := p.Reset(serialCtx(t))
	if !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "/dev/nonexistent-bmp") {
		t.Errorf("err %v, want ErrProbe naming the port", err)
	}
}

// TestSerialSilentPeer: a port where nobody answers times out by the
// probe's timeout, the caller's deadline, or the caller's cancel.
func TestSerialSilentPeer(t *testing.T) {
	tests := []struct {
		name        string
		timeout     time.Duration
		deadline    time.Duration
		cancelAfter time.Duration
		want        []error
	}{
		{name: "probe timeout", timeout: 200 * time.Millisecond, want: []error{probes.ErrTimeout}},
		{name: "ctx deadline", timeout: time.Minute, deadline: 200 * time.Millisecond, want: []error{probes.ErrTimeout, context.DeadlineExceeded}},
		{name: "ctx cancel", timeout: time.Minute, cancelAfter: 200 * time.Millisecond, want: []error{context.Canceled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			master, path := ptytest.Open(t)
			// Read and drop what the client sends; never answer.
			go io.Copy(io.Discard, master)
			p := serialProbe(t, Config{Port: path, Timeout: tt.timeout})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.deadline != 0 {
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			if tt.cancelAfter != 0 {
				time.AfterFunc(tt.cancelAfter, cancel)
			}
			start := time.Now()
			err := p.Flash(ctx, memFlash, []byte{1, 2, 3, 4}, nil)
			took := time.Since(start)
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("err %v, want %v", err, w)
				}
			}
			if took > 2*time.Second {
				t.Errorf("took %v; the deadline was not honoured", took)
			}
		})
	}
}

// TestSerialDeviceGone: when the device goes away (the pty master closes
// and its slave path disappears, as on a USB unplug), the next operation
// finds the port dead, tries to open it afresh, and fails with an
// ErrProbe naming the port.
func TestSerialDeviceGone(t *testing.T) {
	ctx := serialCtx(t)
	master, path := ptytest.Open(t)
	stop, stopped := serveStub(t, newMemTarget(), master)
	p := serialProbe(t, Config{Port: path})
	if err := p.Reset(ctx); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	stop()
	<-stopped
	err := p.Reset(ctx)
	if !errors.Is(err, probes.ErrProbe) || errors.Is(err, probes.ErrTimeout) {
		t.Fatalf("err %v, want ErrProbe and no timeout", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("err %q does not name the port", err)
	}
}

// TestSerialDeviceGoneMidFlash: the device going away during a Flash is
// an ErrProbe saying the server closed the connection, naming the port.
func TestSerialDeviceGoneMidFlash(t *testing.T) {
	ctx := serialCtx(t)
	master, path := ptytest.Open(t)
	target := newMemTarget()
	var once sync.Once
	target.onWrite = func() { once.Do(func() { master.Close() }) }
	serveStub(t, target, master)
	p := serialProbe(t, Config{Port: path})
	err := p.Flash(ctx, memFlash, patterned(40<<10, 4), nil)
	if !errors.Is(err, probes.ErrProbe) || errors.Is(err, probes.ErrTimeout) {
		t.Fatalf("err %v, want ErrProbe and no timeout", err)
	}
	if want := "gdb server at " + path + " closed the connection during vFlashWrite"; !strings.Contains(err.Error(), want) {
		t.Errorf("err %q lacks %q", err, want)
	}
	if !errors.Is(err, io.EOF) {
		t.Errorf("err %v does not wrap io.EOF", err)
	}
}

// BenchmarkSerialFlash flashes 64 KiB over a pty into the GDB stub.
func BenchmarkSerialFlash(b *testing.B) {
	m, s, err := pty.Open()
	if err != nil {
		b.Skipf("no pseudo-terminal: %v", err)
	}
	defer s.Close()
	fd, err := syscall.Dup(int(m.Fd()))
	m.Close()
	if err != nil {
		b.Fatal(err)
	}
	syscall.SetNonblock(fd, true)
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	defer master.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gdbstub.New(newMemTarget(), gdbstub.Options{}).ServeConn(ctx, master)
	p, err := New(Config{Port: s.Name(), Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	img := patterned(memFlashSize, 5)
	b.SetBytes(int64(len(img)))
	start := time.Now()
	for b.Loop() {
		if err := p.Flash(ctx, memFlash, img, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(img))*float64(b.N)/1024/time.Since(start).Seconds(), "KiB/s")
}
