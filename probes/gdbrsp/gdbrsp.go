// Package gdbrsp is the probe driver "gdbrsp": a GDB remote serial protocol
// client that flashes a target through any GDB server — J-Link GDB Server,
// OpenOCD, pyOCD, probe-rs, st-util, QEMU, or the simulated board's probe
// port. Importing it registers the driver.
//
// Settings:
//
//	address: 127.0.0.1:3333   # the GDB server (host:port), or
//	port: /dev/ttyACM0        # its serial port (Black Magic Probe); one is required
//	reset: reset              # monitor command for Reset (qRcmd): "reset",
//	                          # "reset run", "system_reset" (QEMU)...
//	halt: reset halt          # monitor command for Halt
//	timeout: 10s              # per command; erase and vFlashDone get one
//	                          # timeout per started 64 KiB
//	verify: crc               # crc (qCRC, read-back if unsupported) | read | none
//
// A serial port is opened raw at 115200 8N1, its modem lines untouched.
//
// The connection is made on first use, so a probe can be opened while the
// board is unpowered, and made again when the server has closed it between
// operations. The client reads qSupported (PacketSize, the memory map,
// QStartNoAckMode) and the memory map. Inside flash regions Flash erases
// whole blocks with vFlashErase (data beyond the image in its first and last
// block is erased too, as GDB's load does), writes with vFlashWrite and ends
// with vFlashDone; elsewhere, or when the server has no memory map, it writes
// with X and falls back to M when X gets an empty reply. Then it verifies.
//
// Close detaches with D, which lets the core run on most servers, unless the
// last command was Halt.
package gdbrsp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/internal/rsp"
	"github.com/fudbench/fudbench/probes"
)

// Driver is the name the driver registers under.
const Driver = "gdbrsp"

// Defaults of Config.
const (
	DefaultTimeout = 10 * time.Second
	DefaultReset   = "reset"
	DefaultHalt    = "reset halt"
)

// Verification methods.
const (
	VerifyCRC  = "crc"  // qCRC, falling back to read-back when unsupported
	VerifyRead = "read" // read back with m and compare
	VerifyNone = "none"
)

const (
	// maxRetries bounds retransmissions of one packet on '-' and requests
	// for one reply with a bad checksum.
	maxRetries = 8
	// defaultPacketSize is used when qSupported names none (GDB's own
	// starting assumption).
	defaultPacketSize = 400
	// crcChunk bounds one qCRC so that a slow target answers within one
	// command timeout and a mismatch is placed within it.
	crcChunk = 64 << 10
	// scaleUnit: erase and vFlashDone get one timeout per started unit.
	scaleUnit = 64 << 10
	// aliveWait bounds the check for a hung-up connection before each
	// operation.
	aliveWait = time.Millisecond
	// detachTimeout bounds the courtesy D at Close.
	detachTimeout = time.Second
)

func init() {
	probes.Register(Driver, open)
}

var (
	_ probes.Flasher = (*Probe)(nil)
	_ probes.Eraser  = (*Probe)(nil)
	_ probes.Reader  = (*Probe)(nil)
	_ probes.Halter  = (*Probe)(nil)
)

// Config configures a Probe.
type Config struct {
	Address string        // host:port of the GDB server; this or Port is required
	Port    string        // serial device of the GDB server, e.g. a Black Magic Probe's /dev/ttyACM0
	Reset   string        // monitor command for Reset; "" is DefaultReset
	Halt    string        // monitor command for Halt; "" is DefaultHalt
	Timeout time.Duration // per command; 0 is DefaultTimeout
	Verify  string        // VerifyCRC (""), VerifyRead or VerifyNone
	Logger  *slog.Logger  // nil discards
}

// Probe is a GDB RSP client for one GDB server. Its methods are safe for
// concurrent use; they run one at a time.
type Probe struct {
	cfg  Config
	name string
	log  *slog.Logger

	mu     sync.Mutex
	c      *conn // nil until the first use or after a broken connection
	closed bool
	halted bool   // the last monitor command was Halt
	output string // console output of the last monitor command
}

// New returns a Probe for the server at cfg.Address or cfg.Port. It checks
// the configuration only; the connection is made on first use.
func New(cfg Config) (*Probe, error) {
	switch {
	case cfg.Address != "" && cfg.Port != "":
		return nil, fmt.Errorf("address %q and port %q: give one, not both", cfg.Address, cfg.Port)
	case cfg.Port != "":
	case cfg.Address == "":
		return nil, errors.New("address: required (host:port of the gdb server), or port (its serial device)")
	default:
		if host, port, err := net.SplitHostPort(cfg.Address); err != nil || port == "" || host == "" {
			return nil, fmt.Errorf("address: %q is no host:port", cfg.Address)
		}
	}
	if cfg.Reset == "" {
		cfg.Reset = DefaultReset
	}
	if cfg.Halt == "" {
		cfg.Halt = DefaultHalt
	}
	timeout, err := probeutil.Timeout(cfg.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = timeout
	switch cfg.Verify {
	case "":
		cfg.Verify = VerifyCRC
	case VerifyCRC, VerifyRead, VerifyNone:
	default:
		return nil, fmt.Errorf("verify: %q (want %s, %s or %s)", cfg.Verify, VerifyCRC, VerifyRead, VerifyNone)
	}
	name := Driver + ":" + cfg.peer()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Probe{cfg: cfg, name: name, log: log.With("probe", name)}, nil
}

// settings is the driver's part of the inventory.
type settings struct {
	Address string `json:"address" yaml:"address"`
	Port    string `json:"port" yaml:"port"`
	Reset   string `json:"reset" yaml:"reset"`
	Halt    string `json:"halt" yaml:"halt"`
	Timeout string `json:"timeout" yaml:"timeout"`
	Verify  string `json:"verify" yaml:"verify"`
}

// open maps the driver's own settings onto Config; of the parsing, only
// the timeout is common to the drivers (probeutil.ParseTimeout).
func open(st probes.Settings) (probes.Flasher, error) {
	var s settings
	if err := st.Decode(&s); err != nil {
		return nil, err
	}
	timeout, err := probeutil.ParseTimeout(s.Timeout)
	if err != nil {
		return nil, err
	}
	return New(Config{Address: s.Address, Port: s.Port, Reset: s.Reset, Halt: s.Halt, Verify: s.Verify, Timeout: timeout})
}

// String names the probe, e.g. "gdbrsp:127.0.0.1:3333".
func (p *Probe) String() string { return p.name }

// Output returns the console output (O-packets) of the last monitor
// command.
func (p *Probe) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output
}

// ReplyError is a server's error reply ("E xx", "E.text") or refusal of a
// command. It wraps probes.ErrProbe.
type ReplyError struct {
	Probe string // the probe's name
	Op    string // the command and its address, e.g. "vFlashErase at 0x08000000+0x4000"
	Reply string // the reply payload, e.g. "E03"
	Hint  string // what the client found out about the cause, or ""
}

func (e *ReplyError) Error() string {
	msg := fmt.Sprintf("%s: %s: the server answered %q", e.Probe, e.Op, e.Reply)
	if e.Reply == "" {
		msg = fmt.Sprintf("%s: %s: the server does not support it (empty reply)", e.Probe, e.Op)
	}
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// Unwrap makes errors.Is(err, probes.ErrProbe) true.
func (e *ReplyError) Unwrap() error { return probes.ErrProbe }

// do runs f on a live connection, holding the probe for the whole
// operation. A connection that broke during f is dropped so the next
// operation reconnects. openocd's do is alike but not shared: what a
// connection is (TCP or serial, a handshake or none) differs.
func (p *Probe) do(ctx context.Context, op string, f func(c *conn) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%s: %s: probe is closed: %w", p, op, probes.ErrProbe)
	}
	if err := ctx.Err(); err != nil {
		return ctxErr(p.name, op, err)
	}
	c, err := p.connect(ctx)
	if err != nil {
		return err
	}
	// A cancelled ctx aborts blocked I/O; arm re-checks ctx after every
	// deadline it sets, so a cancel is never overwritten unnoticed.
	defer probeutil.AbortOnDone(ctx, c.nc)()
	err = f(c)
	if c.broken {
		c.nc.Close()
		p.c = nil
	}
	return err
}

// connect returns the live connection or makes a new one.
func (p *Probe) connect(ctx context.Context) (*conn, error) {
	if p.c != nil {
		if p.c.alive() {
			return p.c, nil
		}
		p.log.Info("gdb server closed the connection; reconnecting")
		p.c.nc.Close()
		p.c = nil
	}
	var nc transport
	var err error
	if p.cfg.Port != "" {
		nc, err = openSerial(p.cfg.Port)
	} else {
		d := net.Dialer{Timeout: p.cfg.Timeout}
		nc, err = d.DialContext(ctx, "tcp", p.cfg.Address)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxErr(p.name, "connect", ctx.Err())
		}
		return nil, fmt.Errorf("%s: connect: %w: %w", p, probes.ErrProbe, err)
	}
	r := bufio.NewReaderSize(nc, 64<<10)
	c := &conn{p: p, nc: nc, r: r, pktSize: defaultPacketSize}
	// A '$' in place of an acknowledgement is the reply of a server that
	// does not send them.
	c.link = rsp.Link{R: r, W: nc, Tries: maxRetries, MoveOn: "$", Resend: func(pkt []byte) {
		p.log.Debug("packet refused; retransmitting", "cmd", summary(pkt))
	}}
	stop := probeutil.AbortOnDone(ctx, nc)
	err = c.handshake(ctx)
	stop()
	if err != nil {
		nc.Close()
		return nil, err
	}
	p.c = c
	p.log.Info("connected", "packet_size", c.pktSize, "no_ack", c.link.NoAck, "memory_map", len(c.regions))
	return c, nil
}

// Close detaches from the server (unless the target was left halted) and
// closes the connection.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	c := p.c
	p.c = nil
	if c == nil {
		return nil
	}
	if !p.halted && c.alive() {
		ctx, cancel := context.WithTimeout(context.Background(), detachTimeout)
		// A failed detach changes nothing for the caller: the
		// connection is closed either way.
		if _, err := c.exchange(ctx, "D", []byte("D")); err != nil {
			p.log.Debug("detach failed", "err", err)
		}
		cancel()
	}
	if err := c.nc.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", p, err)
	}
	return nil
}

// MemoryMap returns the server's memory map, connecting if needed. It is
// empty when the server serves none.
func (p *Probe) MemoryMap(ctx context.Context) ([]Region, error) {
	var rs []Region
	err := p.do(ctx, "memory map", func(c *conn) error {
		rs = append([]Region(nil), c.regions...)
		return nil
	})
	return rs, err
}

// Reset runs the Reset monitor command.
func (p *Probe) Reset(ctx context.Context) error {
	return p.do(ctx, "reset", func(c *conn) error {
		err := c.monitor(ctx, p.cfg.Reset)
		if err == nil {
			p.halted = false
		}
		return err
	})
}

// Halt runs the Halt monitor command (reset and halt).
func (p *Probe) Halt(ctx context.Context) error {
	return p.do(ctx, "halt", func(c *conn) error {
		err := c.monitor(ctx, p.cfg.Halt)
		if err == nil {
			p.halted = true
		}
		return err
	})
}

// Read reads target memory at addr into buf with m packets.
func (p *Probe) Read(ctx context.Context, addr uint32, buf []byte) error {
	if err := p.checkRange("read", addr, len(buf)); err != nil {
		return err
	}
	return p.do(ctx, "read", func(c *conn) error { return c.read(ctx, addr, buf) })
}

// Erase erases [addr, addr+length) with vFlashErase and vFlashDone. When
// the server has a memory map the range must lie in flash regions and
// start and end on erase-block boundaries; it is split at region borders.
func (p *Probe) Erase(ctx context.Context, addr, length uint32) error {
	if err := p.checkRange("erase", addr, int(length)); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	return p.do(ctx, "erase", func(c *conn) error { return c.erase(ctx, addr, length) })
}

// Flash erases what it needs, writes data at addr, verifies it as
// configured, and reports progress after each written chunk.
func (p *Probe) Flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	if err := p.checkRange("flash", addr, len(data)); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	start := time.Now()
	err := p.do(ctx, "flash", func(c *conn) error { return c.flash(ctx, addr, data, progress) })
	if err == nil {
		p.log.Info("flashed", "addr", fmt.Sprintf("%#08x", addr), "bytes", len(data), "verify", p.cfg.Verify, "took", time.Since(start))
	}
	return err
}

// checkRange is in every probe driver, like ctxErr: it wraps
// probes.ErrProbe.
func (p *Probe) checkRange(op string, addr uint32, n int) error {
	if uint64(addr)+uint64(n) > 1<<32 {
		return fmt.Errorf("%s: %s at %#08x: %d bytes pass the end of the 32-bit address space: %w", p, op, addr, n, probes.ErrProbe)
	}
	return nil
}

// conn is one connection to the server.
type conn struct {
	p       *Probe
	nc      transport
	r       *bufio.Reader
	link    rsp.Link // framing and acknowledgements over nc and r
	pktSize int
	regions []Region // the memory map; nil when the server has none
	noX     bool     // X got an empty reply: use M
	noCRC   bool     // qCRC got an empty reply: read back
	// broken: the byte stream can no longer be trusted (I/O error,
	// timeout, framing lost); the connection must be dropped.
	broken bool
	// ctxBound: the current deadline is the ctx's, so a timeout is the
	// ctx's even if its timer has not fired yet.
	ctxBound bool
}

// alive reports whether the server still holds the connection, waiting
// at most aliveWait: a read times out on a live idle connection and
// returns EOF (or a reset) on a closed one. Stray bytes are dropped.
func (c *conn) alive() bool {
	// A deadline already past would fail the read before it looks at the
	// socket, so it lies a little ahead.
	if err := c.nc.SetReadDeadline(time.Now().Add(aliveWait)); err != nil {
		return false
	}
	_, err := c.r.Peek(1)
	if err == nil {
		c.p.log.Debug("dropping stray bytes from the server", "n", c.r.Buffered())
		c.r.Discard(c.r.Buffered())
		return true
	}
	return probeutil.IsTimeout(err)
}

func (c *conn) handshake(ctx context.Context) error {
	// GDB starts with an acknowledgement; servers waiting for one proceed.
	if err := c.arm(ctx, 1); err != nil {
		return c.fail(ctx, "connect", err)
	}
	if _, err := c.nc.Write([]byte{'+'}); err != nil {
		return c.fail(ctx, "connect", err)
	}
	rep, err := c.exchange(ctx, "qSupported", []byte("qSupported"))
	if err != nil {
		return err
	}
	if classify(rep) == replyError {
		return &ReplyError{Probe: c.p.name, Op: "qSupported", Reply: string(rep)}
	}
	features := parseSupported(rep)
	c.pktSize = packetSizeOf(features, defaultPacketSize)
	if features["QStartNoAckMode"] == "+" {
		rep, err := c.exchange(ctx, "QStartNoAckMode", []byte("QStartNoAckMode"))
		if err != nil {
			return err
		}
		c.link.NoAck = classify(rep) == replyOK
	}
	if features["qXfer:memory-map:read"] == "+" {
		doc, err := c.readMemoryMap(ctx)
		if err != nil {
			return err
		}
		regions, err := ParseMemoryMap(doc)
		if err != nil {
			return fmt.Errorf("%s: %w: %w", c.p, probes.ErrProbe, err)
		}
		c.regions = regions
	}
	return nil
}

func (c *conn) readMemoryMap(ctx context.Context) ([]byte, error) {
	const op = "qXfer:memory-map:read"
	chunk := max(c.pktSize-16, 32)
	var doc []byte
	for {
		rep, err := c.exchange(ctx, op, fmt.Appendf(nil, "qXfer:memory-map:read::%x,%x", len(doc), chunk))
		if err != nil {
			return nil, err
		}
		if k := classify(rep); k == replyError || k == replyEmpty || (rep[0] != 'm' && rep[0] != 'l') {
			return nil, &ReplyError{Probe: c.p.name, Op: fmt.Sprintf("%s at offset %d", op, len(doc)), Reply: string(rep)}
		}
		data, err := rsp.DecodeBinary(rep[1:])
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w: %w", c.p, op, probes.ErrProbe, err)
		}
		doc = append(doc, data...)
		if rep[0] == 'l' {
			return doc, nil
		}
		if len(data) == 0 || len(doc) > maxMemoryMap {
			return nil, fmt.Errorf("%s: %s: the server sent %d bytes and no end: %w", c.p, op, len(doc), probes.ErrProbe)
		}
	}
}

// arm sets the deadline of the next command: scale timeouts from now,
// or ctx's deadline if earlier. It then checks ctx, so that a cancel that
// came before this deadline was set is not lost.
func (c *conn) arm(ctx context.Context, scale int) error {
	var err error
	c.ctxBound, err = probeutil.Arm(ctx, c.nc, time.Duration(max(scale, 1))*c.p.cfg.Timeout)
	return err
}

// exchange sends one command and returns its reply payload.
func (c *conn) exchange(ctx context.Context, op string, pkt []byte) ([]byte, error) {
	return c.exchangeScaled(ctx, op, pkt, 1)
}

func (c *conn) exchangeScaled(ctx context.Context, op string, pkt []byte, scale int) ([]byte, error) {
	if err := c.arm(ctx, scale); err != nil {
		return nil, c.fail(ctx, op, err)
	}
	if err := c.link.Send(pkt); err != nil {
		return nil, c.fail(ctx, op, err)
	}
	rep, err := c.recv()
	if err != nil {
		return nil, c.fail(ctx, op, err)
	}
	return rep, nil
}

// next reads one more reply of the same command (console output).
func (c *conn) next(ctx context.Context, op string) ([]byte, error) {
	if err := c.arm(ctx, 1); err != nil {
		return nil, c.fail(ctx, op, err)
	}
	rep, err := c.recv()
	if err != nil {
		return nil, c.fail(ctx, op, err)
	}
	return rep, nil
}

// recv reads one reply; in ack mode it acknowledges it, or asks again
// for one with a bad checksum, up to maxRetries times.
func (c *conn) recv() ([]byte, error) {
	for try := 1; ; try++ {
		pkt, err := rsp.ReadPacket(c.r, maxPacket)
		if err == nil {
			if err := c.link.Ack(true); err != nil {
				return nil, err
			}
			return pkt, nil
		}
		retry := errors.Is(err, rsp.ErrChecksum) || errors.Is(err, rsp.ErrMalformed)
		if !retry || c.link.NoAck || try >= maxRetries {
			return nil, err
		}
		c.p.log.Debug("bad reply; asking again", "err", err)
		if err := c.link.Ack(false); err != nil {
			return nil, err
		}
	}
}

// fail turns a transport or framing error during op into the probe's
// error, and marks the connection broken.
func (c *conn) fail(ctx context.Context, op string, err error) error {
	c.broken = true
	if ctx.Err() != nil {
		return ctxErr(c.p.name, op, ctx.Err())
	}
	timeout := probeutil.IsTimeout(err)
	switch {
	case timeout && c.ctxBound:
		return ctxErr(c.p.name, op, context.DeadlineExceeded)
	case timeout:
		return fmt.Errorf("%s: %s: no reply within %v: %w: %w", c.p, op, c.p.cfg.Timeout, probes.ErrTimeout, err)
	case probeutil.Hungup(err):
		return fmt.Errorf("%s: gdb server at %s closed the connection during %s: %w: %w", Driver, c.p.cfg.peer(), op, probes.ErrProbe, err)
	}
	return fmt.Errorf("%s: %s: %w: %w", c.p, op, probes.ErrProbe, err)
}

// ctxErr is in every probe driver, not in internal/probeutil: it wraps
// probes.ErrTimeout, and the internal leaves import nothing of fudbench.
func ctxErr(name, op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w: %w", name, op, probes.ErrTimeout, err)
	}
	return fmt.Errorf("%s: %s: %w", name, op, err)
}

// expectOK runs a command whose only good reply is OK.
func (c *conn) expectOK(ctx context.Context, op string, pkt []byte, scale int) error {
	rep, err := c.exchangeScaled(ctx, op, pkt, scale)
	if err != nil {
		return err
	}
	if classify(rep) != replyOK {
		return &ReplyError{Probe: c.p.name, Op: op, Reply: string(rep)}
	}
	return nil
}

// monitor runs a monitor command (qRcmd), keeping its console output.
func (c *conn) monitor(ctx context.Context, cmd string) error {
	op := fmt.Sprintf("monitor %q", cmd)
	var out strings.Builder
	defer func() {
		c.p.output = out.String()
		if out.Len() > 0 {
			c.p.log.Info("monitor output", "cmd", cmd, "output", strings.TrimRight(out.String(), "\n"))
		}
	}()
	rep, err := c.exchange(ctx, op, rsp.AppendHex([]byte("qRcmd,"), []byte(cmd)))
	for ; err == nil; rep, err = c.next(ctx, op) {
		switch classify(rep) {
		case replyConsole:
			text, _ := rsp.DecodeHex(rep[1:]) // classify checked the hex
			out.Write(text)
			continue
		case replyOK:
			return nil
		case replyEmpty, replyError:
			e := &ReplyError{Probe: c.p.name, Op: op, Reply: string(rep)}
			if out.Len() > 0 {
				return fmt.Errorf("%w (output: %q)", e, strings.TrimSpace(out.String()))
			}
			return e
		}
		// Some servers answer with bare hex output as the final reply.
		text, derr := rsp.DecodeHex(rep)
		if derr != nil {
			c.broken = true
			return fmt.Errorf("%s: %s: reply %q: %w: %w", c.p, op, summary(rep), probes.ErrProbe, derr)
		}
		out.Write(text)
		return nil
	}
	return err
}

// read fills buf from target memory at addr with m packets. A server may
// return fewer bytes than asked; the rest is asked again.
func (c *conn) read(ctx context.Context, addr uint32, buf []byte) error {
	chunk := max((c.pktSize-4)/2, 16)
	for done := 0; done < len(buf); {
		a := addr + uint32(done)
		n := min(chunk, len(buf)-done)
		op := fmt.Sprintf("m at %#08x", a)
		rep, err := c.exchange(ctx, op, fmt.Appendf(nil, "m%x,%x", a, n))
		if err != nil {
			return err
		}
		if k := classify(rep); k == replyError || k == replyEmpty {
			return &ReplyError{Probe: c.p.name, Op: fmt.Sprintf("%s (%d bytes)", op, n), Reply: string(rep)}
		}
		data, err := rsp.DecodeHex(rep)
		if err != nil || len(data) == 0 || len(data) > n {
			c.broken = true
			return fmt.Errorf("%s: %s: reply %q is no hex of up to %d bytes: %w", c.p, op, summary(rep), n, probes.ErrProbe)
		}
		copy(buf[done:], data)
		done += len(data)
	}
	return nil
}

// segment is a part of a write that lies wholly in one flash region, or
// wholly outside flash (region nil).
type segment struct {
	addr   uint32
	data   []byte
	region *Region
}

func (s segment) end() uint64 { return uint64(s.addr) + uint64(len(s.data)) }

// segments splits [addr, addr+len(data)) along the memory map.
func (c *conn) segments(addr uint32, data []byte) []segment {
	var segs []segment
	cur, end := uint64(addr), uint64(addr)+uint64(len(data))
	for cur < end {
		var in *Region
		next := end
		for i := range c.regions {
			r := &c.regions[i]
			if r.Kind != KindFlash {
				continue
			}
			if cur >= uint64(r.Start) && cur < r.End() {
				in, next = r, min(end, r.End())
				break
			}
			if uint64(r.Start) > cur {
				next = min(next, uint64(r.Start))
			}
		}
		off := cur - uint64(addr)
		segs = append(segs, segment{addr: uint32(cur), data: data[off : off+(next-cur)], region: in})
		cur = next
	}
	return segs
}

// blocks rounds [start, end) out to r's erase blocks.
func blocks(r *Region, start, end uint64) (uint32, uint32) {
	bs := uint64(r.BlockSize)
	s := uint64(r.Start) + (start-uint64(r.Start))/bs*bs
	e := uint64(r.Start) + (end-uint64(r.Start)+bs-1)/bs*bs
	e = min(e, r.End())
	return uint32(s), uint32(e - s)
}

func scaleFor(n uint64) int { return int((n + scaleUnit - 1) / scaleUnit) }

func (c *conn) flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	segs := c.segments(addr, data)
	anyFlash := false
	for _, s := range segs {
		if s.region == nil {
			continue
		}
		anyFlash = true
		ea, el := blocks(s.region, uint64(s.addr), s.end())
		op := fmt.Sprintf("vFlashErase at %#08x+%#x", ea, el)
		if err := c.expectOK(ctx, op, fmt.Appendf(nil, "vFlashErase:%x,%x", ea, el), scaleFor(uint64(el))); err != nil {
			return c.diagnose(ctx, ea, err)
		}
	}
	done := 0
	report := func(n int) {
		done += n
		if progress != nil {
			progress(done, len(data))
		}
	}
	for _, s := range segs {
		var err error
		if s.region != nil {
			err = c.flashWrite(ctx, s, report)
		} else {
			err = c.write(ctx, s, report)
		}
		if err != nil {
			return err
		}
	}
	if anyFlash {
		if err := c.expectOK(ctx, "vFlashDone", []byte("vFlashDone"), scaleFor(uint64(len(data)))); err != nil {
			return err
		}
	}
	return c.verify(ctx, segs)
}

// diagnose adds a hint to a refused first command: if the target does not
// even answer a memory read, it is most likely unpowered or not attached,
// rather than protected.
func (c *conn) diagnose(ctx context.Context, addr uint32, err error) error {
	var re *ReplyError
	if !errors.As(err, &re) || re.Reply == "" || c.broken {
		return err
	}
	rep, rerr := c.exchange(ctx, "m", fmt.Appendf(nil, "m%x,4", addr))
	if rerr != nil {
		return err
	}
	if classify(rep) == replyError {
		re.Hint = fmt.Sprintf("a read at %#08x fails too: target unpowered or not attached?", addr)
	} else {
		re.Hint = "the target answers reads: flash protected or the server refuses this range?"
	}
	return err
}

// flashWrite writes a flash segment with vFlashWrite packets that fit the
// server's packet size once escaped.
func (c *conn) flashWrite(ctx context.Context, s segment, report func(int)) error {
	var pkt []byte
	for off := 0; off < len(s.data); {
		a := s.addr + uint32(off)
		pkt = fmt.Appendf(pkt[:0], "vFlashWrite:%x:", a)
		room := c.pktSize - len(pkt) - 4 // "$", "#cs"
		var n int
		pkt, n = rsp.AppendBinaryUpTo(pkt, s.data[off:], max(room, 2))
		op := fmt.Sprintf("vFlashWrite at %#08x (%d bytes)", a, n)
		if err := c.expectOK(ctx, op, pkt, 1); err != nil {
			return err
		}
		off += n
		report(n)
	}
	return nil
}

// write writes a segment outside flash with X, or M once X got an empty
// reply.
func (c *conn) write(ctx context.Context, s segment, report func(int)) error {
	var pkt []byte
	for off := 0; off < len(s.data); {
		a := s.addr + uint32(off)
		var n int
		var op string
		if !c.noX {
			// Room for the longest header, "X" ADDR "," LEN ":".
			room := c.pktSize - 19 - 4
			var body []byte
			body, n = rsp.AppendBinaryUpTo(nil, s.data[off:], max(room, 2))
			pkt = append(fmt.Appendf(pkt[:0], "X%x,%x:", a, n), body...)
			op = fmt.Sprintf("X at %#08x (%d bytes)", a, n)
		} else {
			n = min(max((c.pktSize-19-4)/2, 1), len(s.data)-off)
			pkt = rsp.AppendHex(fmt.Appendf(pkt[:0], "M%x,%x:", a, n), s.data[off:off+n])
			op = fmt.Sprintf("M at %#08x (%d bytes)", a, n)
		}
		rep, err := c.exchange(ctx, op, pkt)
		if err != nil {
			return err
		}
		switch classify(rep) {
		case replyOK:
			off += n
			report(n)
		case replyEmpty:
			if c.noX {
				return &ReplyError{Probe: c.p.name, Op: op, Reply: ""}
			}
			c.p.log.Info("server has no X packet; writing with M")
			c.noX = true
		default:
			return &ReplyError{Probe: c.p.name, Op: op, Reply: string(rep)}
		}
	}
	return nil
}

// erase erases [addr, addr+length), split along the memory map.
func (c *conn) erase(ctx context.Context, addr, length uint32) error {
	type part struct{ addr, length uint32 }
	var parts []part
	if c.regions == nil {
		parts = []part{{addr, length}}
	} else {
		for _, s := range c.segments(addr, make([]byte, length)) {
			if s.region == nil {
				return fmt.Errorf("%s: erase at %#08x+%#x: %#08x+%#x is not flash: %w", c.p, addr, length, s.addr, len(s.data), probes.ErrProbe)
			}
			bs := s.region.BlockSize
			if (s.addr-s.region.Start)%bs != 0 || (s.end()-uint64(s.region.Start))%uint64(bs) != 0 {
				return fmt.Errorf("%s: erase at %#08x+%#x: %#08x+%#x is not on %#x-byte block boundaries: %w", c.p, addr, length, s.addr, len(s.data), bs, probes.ErrProbe)
			}
			parts = append(parts, part{s.addr, uint32(len(s.data))})
		}
	}
	for _, pt := range parts {
		op := fmt.Sprintf("vFlashErase at %#08x+%#x", pt.addr, pt.length)
		if err := c.expectOK(ctx, op, fmt.Appendf(nil, "vFlashErase:%x,%x", pt.addr, pt.length), scaleFor(uint64(pt.length))); err != nil {
			return err
		}
	}
	return c.expectOK(ctx, "vFlashDone", []byte("vFlashDone"), 1)
}

// verify checks what the target holds against the segments written.
func (c *conn) verify(ctx context.Context, segs []segment) error {
	if c.p.cfg.Verify == VerifyNone {
		return nil
	}
	for _, s := range segs {
		for off := 0; off < len(s.data); off += crcChunk {
			part := segment{addr: s.addr + uint32(off), data: s.data[off:min(off+crcChunk, len(s.data))]}
			if err := c.verifyPart(ctx, part); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *conn) verifyPart(ctx context.Context, s segment) error {
	if c.p.cfg.Verify == VerifyCRC && !c.noCRC {
		op := fmt.Sprintf("qCRC at %#08x+%#x", s.addr, len(s.data))
		rep, err := c.exchange(ctx, op, fmt.Appendf(nil, "qCRC:%x,%x", s.addr, len(s.data)))
		if err != nil {
			return err
		}
		switch k := classify(rep); {
		case k == replyEmpty:
			c.p.log.Info("server has no qCRC; verifying by reading back")
			c.noCRC = true
		case k == replyData && rep[0] == 'C':
			got, err := strconv.ParseUint(string(rep[1:]), 16, 32)
			if err != nil {
				return &ReplyError{Probe: c.p.name, Op: op, Reply: string(rep)}
			}
			if want := rsp.CRC32(0xffffffff, s.data); uint32(got) != want {
				return fmt.Errorf("%s: verify at %#08x+%#x: target CRC %08x, image CRC %08x: %w", c.p, s.addr, len(s.data), got, want, probes.ErrVerify)
			}
			return nil
		default:
			return &ReplyError{Probe: c.p.name, Op: op, Reply: string(rep)}
		}
	}
	got := make([]byte, len(s.data))
	if err := c.read(ctx, s.addr, got); err != nil {
		return err
	}
	if i := probeutil.Mismatch(got, s.data); i >= 0 {
		return fmt.Errorf("%s: verify at %#08x: target holds %#02x, image has %#02x: %w", c.p, s.addr+uint32(i), got[i], s.data[i], probes.ErrVerify)
	}
	return nil
}

// summary shortens a packet for logs and errors.
func summary(p []byte) string {
	if len(p) > 40 {
		return fmt.Sprintf("%s...(%d bytes)", p[:40], len(p))
	}
	return string(p)
}
