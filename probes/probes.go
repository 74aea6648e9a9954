// Package probes is the bench's flashing layer: the small interfaces a job
// depends on when it needs "something that can put an image on a board",
// the sentinel errors callers test with errors.Is, and a registry of
// drivers chosen by name in the bench inventory.
//
// Drivers live in subpackages (probes/gdbrsp, later openocd, stm32uart and
// cli wrappers) and register themselves in init(), as database/sql drivers
// do: the main package's import list is the driver set. Each driver also
// keeps a direct constructor for tests. probes/probetest holds a fake
// Flasher.
//
// The base interface is Flasher; Eraser, Reader, Halter and Identifier are optional
// abilities found by type assertion. Flash verifies what it wrote (read-back
// or CRC, whichever the probe offers) before it returns nil.
//
// After an error from Flash or Erase the target's flash content is unknown:
// part of it may have been erased or written. Callers flash again rather
// than assume it is unchanged.
package probes

import (
	"context"
	"errors"
)

// Flasher writes an image at an address and resets the target. Calls take
// ctx and must honour its deadline.
type Flasher interface {
	// Flash erases what the write needs (whole erase blocks of flash
	// regions), writes data at addr, verifies it and returns nil only if
	// the target holds data there. progress, if not nil, is called after
	// each chunk written with the bytes written so far and len(data).
	Flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error
	// Reset resets the target so that it runs its firmware.
	Reset(ctx context.Context) error
	// String names the probe for logs, e.g. "gdbrsp:127.0.0.1:3333".
	String() string
	// Close releases the probe (connection, port). It does not reset the
	// target.
	Close() error
}

// Eraser is a Flasher that can erase a range of flash on its own.
type Eraser interface {
	Erase(ctx context.Context, addr, length uint32) error
}

// Reader is a Flasher that can read target memory back.
type Reader interface {
	Read(ctx context.Context, addr uint32, p []byte) error
}

// Halter is a Flasher that can reset the target and keep it halted, so
// that nothing runs until the next Reset.
type Halter interface {
	Halt(ctx context.Context) error
}

// Identifier is a Flasher that can prove it talks to the target: Identify
// connects if needed and returns what the probe reads of the target (its
// ID, memory map or first words of flash), for a wiring check.
type Identifier interface {
	Identify(ctx context.Context) (string, error)
}

// Sentinel errors. Drivers wrap them together with the probe's name, the
// address and the cause, so errors.Is finds both the sentinel and the
// cause.
var (
	// ErrProbe: the probe or its server failed or refused a command, or
	// the connection to it broke.
	ErrProbe = errors.New("probes: probe failed")
	// ErrVerify: what the target holds after a write differs from what
	// was written.
	ErrVerify = errors.New("probes: verify failed")
	// ErrTimeout: a command did not finish before its deadline. It may
	// have reached the target.
	ErrTimeout = errors.New("probes: timeout")
	// ErrUnknownDriver: Open was asked for a driver nobody registered.
	ErrUnknownDriver = errors.New("probes: unknown driver")
)
