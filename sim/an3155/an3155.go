// Package an3155 emulates ST's STM32 system bootloader on a USART, as
// described in application note AN3155, behind a pseudo-terminal. It is a
// simulated device for tests of serial flashing tools; production code
// does not import it.
//
// The emulated part is an STM32F10x medium-density device (PID 0x0410,
// bootloader version 2.2): 128 KiB of flash at 0x08000000 in 1 KiB pages,
// 20 KiB of RAM at 0x20000000, system memory (with the flash size and
// unique ID registers) and option bytes readable. It answers the autobaud
// sync 0x7F with ACK 0x79, then commands sent as [cmd, ^cmd]: Get, Get
// Version & Read Protection Status, Get ID, Read Memory, Go, Write Memory,
// one of Erase (0x43) or Extended Erase (0x44) as Options.ExtendedErase
// chooses, Write Unprotect and Readout Unprotect. Bad complements, bad XOR
// checksums, unsupported commands and out-of-range addresses get NACK 0x1F.
// Flash behaves as NOR flash: writes only clear bits and must be whole
// words; erased bytes read 0xFF.
//
// Like the real bootloader, a 0x7F sent after the sync is the first byte
// of a command, so a second 0x7F draws a NACK. After Go the firmware
// "runs" and the device ignores the line until Reboot.
package an3155

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/fudbench/fudbench/internal/rawpty"
)

// Options configures a Device.
type Options struct {
	// ExtendedErase makes the device offer Extended Erase (0x44) instead
	// of Erase (0x43).
	ExtendedErase bool
	// NACK, if set, is asked about every well-formed command before the
	// device carries it out; true makes the device answer NACK instead.
	// For Read, Write, Go and the erases it is asked once the whole
	// command has arrived. It runs with the device locked and must not
	// call the Device's methods.
	NACK func(Command) bool
	// Tamper, if set, replaces every reply (the sync's ACK included)
	// before it is sent; a nil or empty result sends nothing. It runs on
	// the device's goroutine.
	Tamper func(reply []byte) []byte
	// Logger receives a debug record per command; nil discards.
	Logger *slog.Logger
}

// Device is an emulated bootloader behind a pseudo-terminal. Its methods
// are safe for concurrent use.
type Device struct {
	opts   Options
	log    *slog.Logger
	master *os.File
	// slave stays open so that the line does not hang up between the
	// tools that open and close Path.
	slave *os.File
	path  string
	done  chan struct{}

	mu     sync.Mutex
	m      *machine
	closed bool
}

// New starts a device waiting for the autobaud sync.
func New(opts Options) (*Device, error) {
	master, slave, err := rawpty.Open()
	if err != nil {
		return nil, fmt.Errorf("an3155: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{
		opts:   opts,
		log:    log.With("device", "an3155", "pty", slave.Name()),
		master: master,
		slave:  slave,
		path:   slave.Name(),
		done:   make(chan struct{}),
		m:      newMachine(opts.ExtendedErase, opts.NACK),
	}
	go d.serve()
	return d, nil
}

func (d *Device) serve() {
	defer close(d.done)
	buf := make([]byte, 4096)
	for {
		n, err := d.master.Read(buf)
		for _, b := range buf[:n] {
			d.mu.Lock()
			before := d.m.seen
			out := d.m.feed(b)
			for _, c := range d.m.log[len(d.m.log)-int(d.m.seen-before):] {
				d.log.Debug("command", "cmd", c.String())
			}
			d.mu.Unlock()
			if d.opts.Tamper != nil && len(out) > 0 {
				out = d.opts.Tamper(slices.Clone(out))
			}
			if len(out) == 0 {
				continue
			}
			if _, werr := d.master.Write(out); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				d.log.Debug("pty read ended", "err", err)
			}
			return
		}
	}
}

// Path is the pty slave a tool opens as its serial port.
func (d *Device) Path() string { return d.path }

// Flash returns a copy of the flash contents (FlashSize bytes at
// FlashBase).
func (d *Device) Flash() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.m.flash)
}

// Load puts data in flash at addr as if programmed earlier, replacing
// what was there. It panics if the range is not in flash.
func (d *Device) Load(addr uint32, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if addr < FlashBase || uint64(addr-FlashBase)+uint64(len(data)) > FlashSize {
		panic(fmt.Sprintf("an3155: Load at %#08x+%#x is not in flash", addr, len(data)))
	}
	copy(d.m.flash[addr-FlashBase:], data)
}

// Commands returns the commands seen so far, oldest first: the newest
// MaxLog at most (from MaxLog on, the older half is dropped).
func (d *Device) Commands() []Command {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Command, len(d.m.log))
	for i, c := range d.m.log {
		c.Pages = slices.Clone(c.Pages)
		out[i] = c
	}
	return out
}

// Running reports whether a Go command started the firmware.
func (d *Device) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m.st == stRunning
}

// Reboot resets the device into the bootloader (as BOOT0 high and a pulse
// on NRST would): it waits for a new autobaud sync. Memory is kept.
func (d *Device) Reboot() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m.expect(stSync, 0)
}

// Close removes the device: the pty goes away, and a tool that has it
// open sees the line hang up.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	err := d.master.Close()
	serr := d.slave.Close()
	<-d.done
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("an3155: close %s: %w", d.path, err)
	}
	return nil
}
