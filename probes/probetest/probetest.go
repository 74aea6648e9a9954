// Package probetest holds a fake probes.Flasher for tests of code that
// flashes boards: it keeps an in-memory flash with erase blocks, records
// every call, and can be made to fail, to corrupt what it writes, or to
// take time.
package probetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fudbench/fudbench/probes"
)

var (
	_ probes.Flasher = (*Flasher)(nil)
	_ probes.Eraser  = (*Flasher)(nil)
	_ probes.Reader  = (*Flasher)(nil)
	_ probes.Halter  = (*Flasher)(nil)
)

// Defaults of the zero Flasher.
const (
	DefaultSize      = 64 << 10
	DefaultBlockSize = 4 << 10
	DefaultChunk     = 1 << 10
)

// Call is one recorded call.
type Call struct {
	Op   string // "flash", "erase", "read", "reset", "halt" or "close"
	Addr uint32
	Len  int
	Err  error // what the call returned
}

// Flasher is a fake probes.Flasher (and Eraser, Reader, Halter) over an
// in-memory flash of Size bytes at Base, erased to 0xFF (0x00 with
// ErasedZero) in blocks of BlockSize. Its zero value is a working 64 KiB
// flash at address 0. Set the knobs before sharing it between goroutines;
// read results through its methods.
type Flasher struct {
	// Name is what String returns after "fake:"; "" gives "fake".
	Name       string
	Base       uint32
	Size       int    // 0 is DefaultSize
	BlockSize  uint32 // 0 is DefaultBlockSize
	ErasedZero bool
	// Chunk is how many bytes Flash writes between progress calls; 0 is
	// DefaultChunk.
	Chunk int

	// FlashErr, EraseErr, ReadErr, ResetErr, HaltErr and CloseErr are
	// returned by the matching call; FlashErr and EraseErr before
	// anything is changed.
	FlashErr, EraseErr, ReadErr, ResetErr, HaltErr, CloseErr error
	// FailAfter, when > 0, makes Flash stop with an error wrapping
	// probes.ErrProbe once that many bytes are written (the blocks are
	// already erased), as a probe that dies mid-write.
	FailAfter int
	// Corrupt makes Flash flip the lowest bit of the first byte it writes
	// and then fail verification with probes.ErrVerify.
	Corrupt bool
	// Delay is how long each chunk (and each other call) takes. A ctx
	// ending first makes the call return an error wrapping
	// probes.ErrTimeout (deadline) or the ctx's error (cancel).
	Delay time.Duration

	mu     sync.Mutex
	mem    []byte
	calls  []Call
	halted bool
}

// String names the fake.
func (f *Flasher) String() string {
	if f.Name == "" {
		return "fake"
	}
	return "fake:" + f.Name
}

func (f *Flasher) size() int {
	if f.Size <= 0 {
		return DefaultSize
	}
	return f.Size
}

func (f *Flasher) blockSize() uint32 {
	if f.BlockSize == 0 {
		return DefaultBlockSize
	}
	return f.BlockSize
}

func (f *Flasher) erased() byte {
	if f.ErasedZero {
		return 0x00
	}
	return 0xff
}

// memLocked allocates the flash on first use, erased.
func (f *Flasher) memLocked() []byte {
	if f.mem == nil {
		f.mem = make([]byte, f.size())
		for i := range f.mem {
			f.mem[i] = f.erased()
		}
	}
	return f.mem
}

func (f *Flasher) record(op string, addr uint32, n int, err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, Call{Op: op, Addr: addr, Len: n, Err: err})
	return err
}

func (f *Flasher) wait(ctx context.Context, op string) error {
	if f.Delay <= 0 {
		if err := ctx.Err(); err != nil {
			return f.ctxErr(op, err)
		}
		return nil
	}
	t := time.NewTimer(f.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return f.ctxErr(op, ctx.Err())
	}
}

func (f *Flasher) ctxErr(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w: %w", f, op, probes.ErrTimeout, err)
	}
	return fmt.Errorf("%s: %s: %w", f, op, err)
}

// offset maps [addr, addr+n) into the flash.
func (f *Flasher) offset(op string, addr uint32, n int) (int, error) {
	if addr < f.Base || uint64(addr-f.Base)+uint64(n) > uint64(f.size()) {
		return 0, fmt.Errorf("%s: %s at %#08x (%d bytes): outside flash %#08x+%#x: %w", f, op, addr, n, f.Base, f.size(), probes.ErrProbe)
	}
	return int(addr - f.Base), nil
}

// eraseLocked erases the blocks covering [off, off+n).
func (f *Flasher) eraseLocked(off, n int) {
	bs := int(f.blockSize())
	mem := f.memLocked()
	start := off / bs * bs
	end := min((off+n+bs-1)/bs*bs, len(mem))
	for i := start; i < end; i++ {
		mem[i] = f.erased()
	}
}

// Flash erases the blocks data covers and writes it chunk by chunk.
func (f *Flasher) Flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	return f.record("flash", addr, len(data), f.flash(ctx, addr, data, progress))
}

func (f *Flasher) flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	if f.FlashErr != nil {
		return f.FlashErr
	}
	off, err := f.offset("flash", addr, len(data))
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.eraseLocked(off, len(data))
	f.mu.Unlock()
	chunk := f.Chunk
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	for done := 0; done < len(data); {
		if err := f.wait(ctx, "flash"); err != nil {
			return err
		}
		n := min(chunk, len(data)-done)
		if f.FailAfter > 0 {
			n = min(n, f.FailAfter-done)
			if n <= 0 {
				return fmt.Errorf("%s: flash write at %#08x: injected failure: %w", f, addr+uint32(done), probes.ErrProbe)
			}
		}
		f.mu.Lock()
		copy(f.memLocked()[off+done:], data[done:done+n])
		if f.Corrupt && done == 0 {
			f.mem[off] ^= 1
		}
		f.mu.Unlock()
		done += n
		if progress != nil {
			progress(done, len(data))
		}
	}
	if f.Corrupt && len(data) > 0 {
		return fmt.Errorf("%s: verify at %#08x: injected corruption: %w", f, addr, probes.ErrVerify)
	}
	return nil
}

// Erase erases the blocks covering [addr, addr+length).
func (f *Flasher) Erase(ctx context.Context, addr, length uint32) error {
	err := f.EraseErr
	if err == nil {
		err = f.wait(ctx, "erase")
	}
	if err == nil {
		var off int
		if off, err = f.offset("erase", addr, int(length)); err == nil {
			f.mu.Lock()
			f.eraseLocked(off, int(length))
			f.mu.Unlock()
		}
	}
	return f.record("erase", addr, int(length), err)
}

// Read copies flash content at addr into p.
func (f *Flasher) Read(ctx context.Context, addr uint32, p []byte) error {
	err := f.ReadErr
	if err == nil {
		err = f.wait(ctx, "read")
	}
	if err == nil {
		var off int
		if off, err = f.offset("read", addr, len(p)); err == nil {
			f.mu.Lock()
			copy(p, f.memLocked()[off:])
			f.mu.Unlock()
		}
	}
	return f.record("read", addr, len(p), err)
}

// Reset lets the target run.
func (f *Flasher) Reset(ctx context.Context) error {
	err := f.ResetErr
	if err == nil {
		err = f.wait(ctx, "reset")
	}
	if err == nil {
		f.mu.Lock()
		f.halted = false
		f.mu.Unlock()
	}
	return f.record("reset", 0, 0, err)
}

// Halt resets the target and keeps it halted.
func (f *Flasher) Halt(ctx context.Context) error {
	err := f.HaltErr
	if err == nil {
		err = f.wait(ctx, "halt")
	}
	if err == nil {
		f.mu.Lock()
		f.halted = true
		f.mu.Unlock()
	}
	return f.record("halt", 0, 0, err)
}

// Close records the call and returns CloseErr.
func (f *Flasher) Close() error { return f.record("close", 0, 0, f.CloseErr) }

// Calls returns the calls so far, in order.
func (f *Flasher) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Ops returns the Op of each call so far, in order.
func (f *Flasher) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ops := make([]string, len(f.calls))
	for i, c := range f.calls {
		ops[i] = c.Op
	}
	return ops
}

// Memory returns a copy of n bytes of flash at addr; out-of-range bytes
// are left out.
func (f *Flasher) Memory(addr uint32, n int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	mem := f.memLocked()
	if addr < f.Base || int(addr-f.Base) >= len(mem) {
		return nil
	}
	off := int(addr - f.Base)
	return append([]byte(nil), mem[off:min(off+n, len(mem))]...)
}

// Halted reports whether the last Reset or Halt left the target halted.
func (f *Flasher) Halted() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.halted
}
