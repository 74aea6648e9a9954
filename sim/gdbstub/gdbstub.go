// Package gdbstub is the probe port of the simulated board: a GDB remote
// serial protocol (RSP) server through which a bench probe driver, or
// gdb-multiarch itself, reads, erases and writes the board's flash and resets
// it, as it would through a J-Link or OpenOCD GDB server.
//
// The stub serves one client at a time. It advertises a memory map (so GDB's
// "load" uses vFlashErase/vFlashWrite/vFlashDone for flash) and an ARM
// M-profile target description (so gdb-multiarch needs no "set
// architecture"). The core is modelled only as far as a flasher needs: it is
// always halted from the debugger's point of view, its register file is kept
// by the stub, and a reset loads sp and pc from the vector table at the start
// of the lowest flash region, like a Cortex-M.
//
// Error replies:
//
//	E01       malformed request (bad hex, bad syntax, length mismatch)
//	E02       address range not inside flash (vFlashErase), bad register number
//	E03       the target refused or failed the operation
//	E04       unknown monitor command (after an O-packet saying so)
//	E.memtype vFlashWrite outside flash, as the RSP specification asks
//
// qXfer requests for an unknown object or annex get E00, as specified.
//
// Monitor commands (qRcmd), OpenOCD dialect, case-insensitive, an optional
// leading "monitor" word ignored: "reset", "reset run" and "system_reset"
// (QEMU's name) call Target.Reset(false); "reset halt" and "reset init" call
// Target.Reset(true); "halt" is accepted and does nothing (the core is already
// halted from the debugger's view); "help" lists them. Each answers with
// O-packets of text and then OK.
//
// 'c' and 'D' call Resume on a target that implements Resumer. A continued
// target is "running" until GDB sends the 0x03 interrupt, which is answered
// with S05; 's' is answered with S05 at once.
package gdbstub

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/fudbench/fudbench/internal/rsp"
)

// Region kinds.
const (
	KindFlash = "flash"
	KindRAM   = "ram"
)

// Region is one entry of the target memory map.
type Region struct {
	Kind      string // "flash" or "ram"
	Start     uint32
	Length    uint32
	BlockSize uint32 // flash erase block size; 0 for ram. A flash area with mixed sector sizes is several Regions.
}

// Target is the device behind the stub.
type Target interface {
	MemoryMap() []Region
	ReadMemory(addr uint32, p []byte) error
	// WriteMemory is a plain write (M/X packets). Targets typically accept it for RAM and refuse it for flash.
	WriteMemory(addr uint32, p []byte) error
	FlashErase(addr, length uint32) error
	FlashWrite(addr uint32, p []byte) error
	FlashDone() error
	// Reset resets the target; halt=true leaves it halted (reset halt).
	Reset(halt bool) error
}

// Resumer is an optional Target ability: let a halted core run again. The
// stub calls it on 'c' (continue) and on 'D' (detach), as a real probe lets
// the core run when the debugger leaves; it must be harmless on a core that
// is already running.
type Resumer interface {
	Resume() error
}

// Options configures a Server.
type Options struct {
	// Logger receives one Debug record per command; nil discards.
	Logger *slog.Logger
	// Name identifies the board in logs and errors.
	Name string
}

// Server is a GDB RSP server for one Target.
type Server struct {
	t    Target
	log  *slog.Logger
	name string

	// mu serialises packet handling across connections and guards the
	// register file.
	mu         sync.Mutex
	regs       [numRegs]uint32
	regsLoaded bool
}

// New returns a server for t.
func New(t Target, opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Name != "" {
		log = log.With("board", opts.Name)
	}
	return &Server{t: t, log: log, name: opts.Name}
}

const (
	// packetSize is advertised in qSupported (hex 0x4000 bytes).
	packetSize = 0x4000
	// maxRead bounds one 'm' reply; RSP lets a stub return fewer bytes
	// than asked and GDB asks again for the rest.
	maxRead = packetSize / 2
	// maxXfer bounds one qXfer chunk so that even fully escaped it fits
	// packetSize.
	maxXfer = packetSize/2 - 16
	// maxNak is how often one reply is retransmitted on '-' before the
	// connection is given up as broken.
	maxNak = 8
)

// Serve accepts connections on l and serves them one after the other, as a
// real GDB server does: a second client waits until the first has gone. It
// closes l and returns ctx.Err() when ctx ends, and returns nil when l is
// closed by someone else.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("gdbstub %s: accept: %w", s.name, err)
		}
		s.log.Debug("gdb client connected", "remote", c.RemoteAddr().String())
		err = s.ServeConn(ctx, c)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.log.Info("gdb client dropped", "err", err)
		} else {
			s.log.Debug("gdb client gone")
		}
	}
}

// ServeConn serves one client on c until it detaches, kills, hangs up or ctx
// ends, and closes c. A client that detaches, kills or hangs up ends it with
// nil; an ended ctx gives ctx.Err().
func (s *Server) ServeConn(ctx context.Context, c io.ReadWriteCloser) error {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()

	s.mu.Lock()
	if !s.regsLoaded {
		s.loadRegsLocked()
	}
	s.mu.Unlock()

	r := bufio.NewReaderSize(c, packetSize)
	// A new packet or an interrupt in place of an acknowledgement means
	// the client has moved on.
	ss := &session{s: s, r: r, link: rsp.Link{R: r, W: c, Tries: maxNak, MoveOn: "$\x03"}}
	err := ss.run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, errEndSession) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// errEndSession ends a session cleanly (after D or k).
var errEndSession = errors.New("session ended")

type session struct {
	s       *Server
	r       *bufio.Reader
	link    rsp.Link // framing and acknowledgements over the connection
	running bool
}

func (ss *session) run() error {
	for {
		b, err := ss.r.ReadByte()
		if err != nil {
			return err
		}
		switch b {
		case '+', '-':
			// Acknowledgements of replies are consumed in send; stray
			// ones carry nothing.
		case 0x03:
			if !ss.running {
				ss.s.log.Debug("interrupt while halted ignored")
				continue
			}
			ss.running = false
			ss.s.log.Debug("interrupt")
			if err := ss.send([]byte("S05")); err != nil {
				return err
			}
		case '$':
			if err := ss.r.UnreadByte(); err != nil {
				return fmt.Errorf("gdbstub %s: %w", ss.s.name, err)
			}
			pkt, err := rsp.ReadPacket(ss.r, MaxPacket)
			if err != nil {
				// A broken frame is asked again; the rest of it is
				// skipped as noise up to the next '$', which binary
				// data never contains unescaped.
				if errors.Is(err, rsp.ErrChecksum) || errors.Is(err, rsp.ErrMalformed) || errors.Is(err, rsp.ErrTooLong) {
					ss.s.log.Debug("bad packet", "err", err)
					if err := ss.link.Ack(false); err != nil {
						return fmt.Errorf("gdbstub %s: write: %w", ss.s.name, err)
					}
					continue
				}
				return err
			}
			if err := ss.link.Ack(true); err != nil {
				return fmt.Errorf("gdbstub %s: write: %w", ss.s.name, err)
			}
			if err := ss.handle(pkt); err != nil {
				return err
			}
		default:
			// Noise between packets.
		}
	}
}

// send frames and writes one reply and, in ack mode, waits for its '+',
// retransmitting on '-'.
func (ss *session) send(data []byte) error {
	if err := ss.link.Send(data); err != nil {
		return fmt.Errorf("gdbstub %s: reply: %w", ss.s.name, err)
	}
	return nil
}

// reply is what a handler answers: nothing (nil, as for 'k' or 'c'), or
// packets sent in order.
type reply [][]byte

func one(s string) reply { return reply{[]byte(s)} }

var (
	replyOK    = one("OK")
	replyEmpty = reply{[]byte{}}
	replyStop  = one("S05")
)

func (ss *session) handle(pkt []byte) error {
	ss.s.log.Debug("packet", "pkt", summary(pkt))
	ss.s.mu.Lock()
	rep, end := ss.dispatch(pkt)
	ss.s.mu.Unlock()
	for _, p := range rep {
		if err := ss.send(p); err != nil {
			return err
		}
	}
	if string(pkt) == "QStartNoAckMode" {
		ss.link.NoAck = true
	}
	if end {
		return errEndSession
	}
	return nil
}

// summary shortens a packet for the log: binary payloads are not logged.
func summary(pkt []byte) string {
	head, colons := pkt, 0
	switch {
	case bytes.HasPrefix(pkt, []byte("X")):
		colons = 1
	case bytes.HasPrefix(pkt, []byte("vFlashWrite:")):
		colons = 2
	}
	for i, n := 0, 0; colons > 0 && i < len(pkt); i++ {
		if pkt[i] == ':' {
			if n++; n == colons {
				head = pkt[:i]
				return fmt.Sprintf("%s:<%d bytes escaped>", head, len(pkt)-i-1)
			}
		}
	}
	if len(pkt) > 80 {
		return fmt.Sprintf("%s...<%d bytes>", pkt[:80], len(pkt))
	}
	return string(pkt)
}
