package gdbrsp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/fudbench/fudbench/internal/serialconn"
	"net"
	"strings"
	"time"

	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/internal/rsp"
	"github.com/fudbench/fudbench/probes"
)

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
		nc, err = serialconn.Open(p.cfg.Port, nil)
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

// conn is one connection to the server.
type conn struct {
	p       *Probe
	nc      transport
	r       *bufio.Reader
	link    rsp.Link // framing and acknowledgements over nc and r
	pktSize int
	regions []Region // the memory map; nil when the server has none
	noX     bool     // X got an empty reply: use M
	noCRC   bool     // qCRC got an empty reply: read back, erase every block
	// blankCRCs caches the qCRC of a blank run of flash by its length.
	blankCRCs map[uint32]uint32
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
			return nil, fmt.Errorf("%s: %s: the server sent %d bytes and no end (a memory map may have %d): %w", c.p, op, len(doc), maxMemoryMap, probes.ErrProbe)
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
		if errors.Is(err, rsp.ErrRefused) {
			err = fmt.Errorf("%w (bad line or server)", err)
		}
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
			if out.Len()+len(text) > maxMonitorOutput {
				// A server that never ends its output would grow it
				// without end: each packet renews the timeout.
				c.broken = true
				return fmt.Errorf("%s: %s: more than %d bytes of output and no end: %w", c.p, op, maxMonitorOutput, probes.ErrProbe)
			}
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

// summary shortens a packet for logs and errors.
func summary(p []byte) string {
	if len(p) > 40 {
		return fmt.Sprintf("%s...(%d bytes)", p[:40], len(p))
	}
	return string(p)
}
