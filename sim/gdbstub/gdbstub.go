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
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
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

// dispatch runs one command with s.mu held and returns its replies and
// whether the session ends after them.
func (ss *session) dispatch(pkt []byte) (reply, bool) {
	if len(pkt) == 0 {
		return replyEmpty, false
	}
	s := ss.s
	args := pkt[1:]
	switch pkt[0] {
	case '?':
		return replyStop, false
	case 'g':
		var b []byte
		for _, r := range s.regs {
			b = binary.LittleEndian.AppendUint32(b, r)
		}
		return reply{rsp.AppendHex(nil, b)}, false
	case 'G':
		b, err := rsp.DecodeHex(args)
		if err != nil || len(b)%4 != 0 || len(b) > 4*numRegs {
			return s.fail("E01", "G", err), false
		}
		for i := 0; i < len(b); i += 4 {
			s.regs[i/4] = binary.LittleEndian.Uint32(b[i:])
		}
		return replyOK, false
	case 'p':
		n, err := parseHex32(args)
		if err != nil {
			return s.fail("E01", "p", err), false
		}
		if n >= numRegs {
			return s.fail("E02", "p", fmt.Errorf("register %d out of range", n)), false
		}
		return reply{rsp.AppendHex(nil, binary.LittleEndian.AppendUint32(nil, s.regs[n]))}, false
	case 'P':
		num, val, ok := bytes.Cut(args, []byte("="))
		n, err := parseHex32(num)
		if !ok || err != nil {
			return s.fail("E01", "P", err), false
		}
		b, err := rsp.DecodeHex(val)
		if err != nil || len(b) != 4 {
			return s.fail("E01", "P", err), false
		}
		if n >= numRegs {
			return s.fail("E02", "P", fmt.Errorf("register %d out of range", n)), false
		}
		s.regs[n] = binary.LittleEndian.Uint32(b)
		return replyOK, false
	case 'm':
		addr, length, err := parseAddrLen(args)
		if err != nil {
			return s.fail("E01", "m", err), false
		}
		length = min(length, maxRead)
		buf := make([]byte, length)
		if err := s.t.ReadMemory(addr, buf); err != nil {
			return s.fail("E03", "m", err), false
		}
		return reply{rsp.AppendHex(nil, buf)}, false
	case 'M':
		head, hexData, ok := bytes.Cut(args, []byte(":"))
		addr, length, err := parseAddrLen(head)
		if !ok || err != nil {
			return s.fail("E01", "M", err), false
		}
		data, err := rsp.DecodeHex(hexData)
		if err != nil || uint32(len(data)) != length {
			return s.fail("E01", "M", fmt.Errorf("length %d, data %d bytes: %v", length, len(data), err)), false
		}
		return s.write(addr, data), false
	case 'X':
		head, bin, ok := bytes.Cut(args, []byte(":"))
		addr, length, err := parseAddrLen(head)
		if !ok || err != nil {
			return s.fail("E01", "X", err), false
		}
		data, err := rsp.DecodeBinary(bin)
		if err != nil || uint32(len(data)) != length {
			return s.fail("E01", "X", fmt.Errorf("length %d, data %d bytes: %v", length, len(data), err)), false
		}
		// GDB probes X support with an empty write.
		if length == 0 {
			return replyOK, false
		}
		return s.write(addr, data), false
	case 'c':
		if len(args) > 0 {
			addr, err := parseHex32(args)
			if err != nil {
				return s.fail("E01", "c", err), false
			}
			s.regs[regPC] = addr
		}
		s.resume()
		ss.running = true
		return nil, false
	case 's':
		return replyStop, false
	case 'H', 'T':
		return replyOK, false
	case 'D':
		s.resume()
		return replyOK, true
	case 'k':
		return nil, true
	case 'q':
		return ss.query(pkt), false
	case 'Q':
		if string(pkt) == "QStartNoAckMode" {
			// The OK itself is still acknowledged; only then is
			// acknowledgement off.
			return replyOK, false
		}
		return replyEmpty, false
	case 'v':
		return ss.vPacket(pkt), false
	}
	return replyEmpty, false
}

// fail logs why a request failed and returns the error reply.
func (s *Server) fail(code, cmd string, err error) reply {
	s.log.Debug("request failed", "cmd", cmd, "reply", code, "err", err)
	return one(code)
}

func (s *Server) write(addr uint32, data []byte) reply {
	if err := s.t.WriteMemory(addr, data); err != nil {
		return s.fail("E03", "write", err)
	}
	return replyOK
}

func (s *Server) resume() {
	if r, ok := s.t.(Resumer); ok {
		if err := r.Resume(); err != nil {
			s.log.Info("resume failed", "err", err)
		}
	}
}

func (ss *session) query(pkt []byte) reply {
	s := ss.s
	str := string(pkt)
	switch {
	case str == "qSupported" || strings.HasPrefix(str, "qSupported:"):
		return one(fmt.Sprintf("PacketSize=%x;qXfer:memory-map:read+;qXfer:features:read+;QStartNoAckMode+", packetSize))
	case strings.HasPrefix(str, "qXfer:"):
		return s.xfer(str)
	case strings.HasPrefix(str, "qCRC:"):
		addr, length, err := parseAddrLen(pkt[len("qCRC:"):])
		if err != nil {
			return s.fail("E01", "qCRC", err)
		}
		crc, err := s.crc(addr, length)
		if err != nil {
			return s.fail("E03", "qCRC", err)
		}
		return one(fmt.Sprintf("C%08x", crc))
	case strings.HasPrefix(str, "qRcmd,"):
		cmd, err := rsp.DecodeHex(pkt[len("qRcmd,"):])
		if err != nil {
			return s.fail("E01", "qRcmd", err)
		}
		return s.monitor(string(cmd))
	case str == "qAttached" || strings.HasPrefix(str, "qAttached:"):
		return one("1")
	case str == "qC":
		return one("QC1")
	case str == "qfThreadInfo":
		return one("m1")
	case str == "qsThreadInfo":
		return one("l")
	}
	return replyEmpty
}

// xfer serves qXfer:OBJECT:read:ANNEX:OFFSET,LENGTH.
func (s *Server) xfer(str string) reply {
	parts := strings.Split(str, ":")
	if len(parts) != 5 || parts[2] != "read" {
		return replyEmpty
	}
	var doc string
	switch {
	case parts[1] == "memory-map" && parts[3] == "":
		doc = memoryMapXML(s.t.MemoryMap())
	case parts[1] == "features" && parts[3] == "target.xml":
		doc = targetXML
	case parts[1] == "memory-map" || parts[1] == "features":
		return s.fail("E00", "qXfer", fmt.Errorf("unknown annex %q", parts[3]))
	default:
		return replyEmpty
	}
	off, length, err := parseAddrLen([]byte(parts[4]))
	if err != nil {
		return s.fail("E00", "qXfer", err)
	}
	if int64(off) >= int64(len(doc)) {
		return one("l")
	}
	end := min(int64(off)+int64(min(length, maxXfer)), int64(len(doc)))
	kind := byte('m')
	if end == int64(len(doc)) {
		kind = 'l'
	}
	return reply{rsp.AppendBinary([]byte{kind}, []byte(doc[off:end]))}
}

func (s *Server) crc(addr, length uint32) (uint32, error) {
	crc := uint32(0xffffffff)
	buf := make([]byte, 4096)
	for length > 0 {
		n := min(length, uint32(len(buf)))
		if err := s.t.ReadMemory(addr, buf[:n]); err != nil {
			return 0, err
		}
		crc = rsp.CRC32(crc, buf[:n])
		addr += n
		length -= n
	}
	return crc, nil
}

func (ss *session) vPacket(pkt []byte) reply {
	s := ss.s
	switch {
	case bytes.HasPrefix(pkt, []byte("vFlashErase:")):
		addr, length, err := parseAddrLen(pkt[len("vFlashErase:"):])
		if err != nil {
			return s.fail("E01", "vFlashErase", err)
		}
		if !s.inFlash(addr, length) {
			return s.fail("E02", "vFlashErase", fmt.Errorf("0x%x+0x%x not in flash", addr, length))
		}
		if length == 0 {
			return replyOK
		}
		if err := s.t.FlashErase(addr, length); err != nil {
			return s.fail("E03", "vFlashErase", err)
		}
		return replyOK
	case bytes.HasPrefix(pkt, []byte("vFlashWrite:")):
		a, bin, ok := bytes.Cut(pkt[len("vFlashWrite:"):], []byte(":"))
		addr, err := parseHex32(a)
		if !ok || err != nil {
			return s.fail("E01", "vFlashWrite", err)
		}
		data, err := rsp.DecodeBinary(bin)
		if err != nil {
			return s.fail("E01", "vFlashWrite", err)
		}
		if uint64(addr)+uint64(len(data)) > 1<<32 || !s.inFlash(addr, uint32(len(data))) {
			return s.fail("E.memtype", "vFlashWrite", fmt.Errorf("0x%x+0x%x not in flash", addr, len(data)))
		}
		if len(data) == 0 {
			return replyOK
		}
		if err := s.t.FlashWrite(addr, data); err != nil {
			return s.fail("E03", "vFlashWrite", err)
		}
		return replyOK
	case string(pkt) == "vFlashDone":
		if err := s.t.FlashDone(); err != nil {
			return s.fail("E03", "vFlashDone", err)
		}
		return replyOK
	}
	return replyEmpty
}

// inFlash reports whether [addr, addr+length) lies wholly in flash regions
// (adjacent regions may share it); an empty range needs addr in flash.
func (s *Server) inFlash(addr, length uint32) bool {
	regions := s.t.MemoryMap()
	cur, end := uint64(addr), uint64(addr)+uint64(length)
	for {
		found := false
		for _, r := range regions {
			rs, re := uint64(r.Start), uint64(r.Start)+uint64(r.Length)
			if r.Kind == KindFlash && cur >= rs && cur < re {
				cur, found = re, true
				break
			}
		}
		if !found {
			return false
		}
		if cur >= end {
			return true
		}
	}
}

const monitorHelp = "monitor commands: reset [run|halt|init], system_reset, halt, help\n"

func (s *Server) monitor(cmd string) reply {
	s.log.Debug("monitor", "cmd", cmd)
	words := strings.Fields(strings.ToLower(cmd))
	if len(words) > 0 && words[0] == "monitor" {
		words = words[1:]
	}
	line := strings.Join(words, " ")
	var halt bool
	switch line {
	case "reset", "reset run", "system_reset":
	case "reset halt", "reset init":
		halt = true
	case "halt":
		return reply{consoleOutput("target halted\n"), []byte("OK")}
	case "help":
		return reply{consoleOutput(monitorHelp), []byte("OK")}
	default:
		return append(reply{consoleOutput(fmt.Sprintf("unknown monitor command %q\n%s", cmd, monitorHelp))},
			s.fail("E04", "qRcmd", fmt.Errorf("unknown monitor command %q", cmd))...)
	}
	if err := s.t.Reset(halt); err != nil {
		return append(reply{consoleOutput(fmt.Sprintf("reset failed: %v\n", err))}, s.fail("E03", "reset", err)...)
	}
	s.loadRegsLocked()
	msg := "target reset\n"
	if halt {
		msg = "target reset and halted\n"
	}
	return reply{consoleOutput(msg), []byte("OK")}
}

// consoleOutput is an O-packet: text for GDB's console, hex-encoded.
func consoleOutput(text string) []byte {
	return rsp.AppendHex([]byte{'O'}, []byte(text))
}

// loadRegsLocked puts the register file in its reset state: sp and pc from the
// vector table at the start of the lowest flash region, as a Cortex-M does.
func (s *Server) loadRegsLocked() {
	s.regs = [numRegs]uint32{}
	s.regs[regLR] = 0xffffffff
	s.regsLoaded = true
	var base *Region
	for _, r := range s.t.MemoryMap() {
		if r.Kind == KindFlash && (base == nil || r.Start < base.Start) {
			base = &r
		}
	}
	if base == nil {
		return
	}
	var vt [8]byte
	if err := s.t.ReadMemory(base.Start, vt[:]); err != nil {
		s.log.Info("vector table unreadable", "addr", base.Start, "err", err)
		return
	}
	s.regs[regSP] = binary.LittleEndian.Uint32(vt[0:])
	pc := binary.LittleEndian.Uint32(vt[4:])
	s.regs[regPC] = pc &^ 1
	s.regs[regXPSR] = (pc & 1) << 24 // the Thumb bit comes from the vector
}
