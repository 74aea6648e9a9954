package smp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.bug.st/serial"

	wire "github.com/fudbench/fudbench/internal/smp"
	"github.com/fudbench/fudbench/probes"
)

const (
	// poll bounds one blocking read so that a cancelled ctx is seen.
	poll = 20 * time.Millisecond
	// maxGarbage bounds the bytes read while waiting for one answer that
	// are no part of it: a device flooding the line is an error before
	// the deadline.
	maxGarbage = 1 << 20
)

// do runs f with the port open, holding the probe for the whole
// operation; a port that failed is closed and opened again next time.
func (p *Probe) do(ctx context.Context, f func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%s: probe is closed: %w", p, probes.ErrProbe)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", p, ctxErr(err))
	}
	p.broken = false
	if p.port == nil {
		mode := &serial.Mode{BaudRate: p.cfg.Baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}
		pt, err := p.open(p.cfg.Port, mode)
		if err != nil {
			return fmt.Errorf("%s: open: %w: %w", p, probes.ErrProbe, err)
		}
		p.port = pt
		p.lines.Reset()
		p.dec.Reset()
	}
	err := f()
	if p.broken && p.port != nil {
		p.port.Close()
		p.port = nil
	}
	return err
}

// call sends one request and decodes the answer into rsp. A device's
// non-zero rc is an error naming the command and the code.
func (p *Probe) call(ctx context.Context, op uint8, group uint16, id uint8, req any, wait time.Duration, rsp any) error {
	return p.callAt(ctx, op, group, id, "", req, wait, rsp)
}

// callAt is call with a detail after the command's name in errors.
func (p *Probe) callAt(ctx context.Context, op uint8, group uint16, id uint8, detail string, req any, wait time.Duration, rsp any) error {
	body, err := p.request(ctx, op, group, id, wire.Marshal(req), wait)
	what := wire.CommandName(group, id) + detail
	if err != nil {
		return fmt.Errorf("%s: %s: %w", p, what, err)
	}
	if err := wire.Check(body); err != nil {
		var rc *wire.RcError
		if errors.As(err, &rc) {
			return fmt.Errorf("%s: %s: the device answered %w: %w", p, what, err, probes.ErrProbe)
		}
		return fmt.Errorf("%s: %s: the device sent an answer that does not decode: %w: %w", p, what, err, probes.ErrProbe)
	}
	if err := wire.Unmarshal(body, rsp); err != nil {
		return fmt.Errorf("%s: %s: the device sent an answer that does not decode: %w: %w", p, what, err, probes.ErrProbe)
	}
	return nil
}

// request sends a request and returns the body of the response with the
// same sequence number, group and command.
func (p *Probe) request(ctx context.Context, op uint8, group uint16, id uint8, body []byte, wait time.Duration) ([]byte, error) {
	p.seq++
	h := wire.Header{Op: op, Group: group, Seq: p.seq, ID: id}
	pkt := wire.Packet{Header: h, Body: body}.Marshal()
	if wire.FrameLen(len(pkt)) > p.cfg.MTU {
		return nil, fmt.Errorf("request of %d bytes over the mtu %d: %w", wire.FrameLen(len(pkt)), p.cfg.MTU, probes.ErrProbe)
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxErr(err)
	}
	if err := p.sendFrame(ctx, wire.Encode(pkt)); err != nil {
		return nil, err
	}
	return p.await(ctx, h, wait)
}

// sendFrame writes a frame's lines, all at once or, with a line delay,
// one line at a time with the delay before each continuation line.
func (p *Probe) sendFrame(ctx context.Context, frame []byte) error {
	if p.cfg.LineDelay <= 0 {
		return p.send(frame)
	}
	for first := true; len(frame) > 0; first = false {
		i := bytes.IndexByte(frame, '\n') + 1
		if i == 0 {
			i = len(frame)
		}
		if !first {
			t := time.NewTimer(p.cfg.LineDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctxErr(ctx.Err())
			case <-t.C:
			}
		}
		if err := p.send(frame[:i]); err != nil {
			return err
		}
		frame = frame[i:]
	}
	return nil
}

func (p *Probe) send(b []byte) error {
	for len(b) > 0 {
		n, err := p.port.Write(b)
		if err != nil {
			p.broken = true
			return fmt.Errorf("port failed (unplugged or closed?): %w: %w", probes.ErrProbe, err)
		}
		b = b[n:]
	}
	return nil
}

// await reads lines until the response to h arrives, the deadline passes
// or the port fails. Console text, answers to earlier requests and frames
// that do not decode are skipped; the last decoding error is named when
// nothing valid came.
func (p *Probe) await(ctx context.Context, h wire.Header, wait time.Duration) ([]byte, error) {
	deadline := time.Now().Add(wait)
	if p.buf == nil {
		p.buf = make([]byte, 4096)
	}
	var (
		got     []byte
		bad     error
		garbage int
		stale   int
	)
	match := func(line []byte) error {
		pkt, err := p.dec.Line(line)
		if err != nil {
			bad = err
			garbage += len(line)
			return nil
		}
		if pkt == nil {
			if !wire.IsSMPLine(line) {
				garbage += len(line)
			}
			return nil
		}
		r, err := wire.ParsePacket(pkt)
		if err != nil {
			bad = err
			return nil
		}
		if !r.Response() || r.Seq != h.Seq || r.Group != h.Group || r.ID != h.ID {
			stale++
			return nil
		}
		got = append([]byte(nil), r.Body...)
		return errDone
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, ctxErr(err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			switch {
			case bad != nil:
				return nil, fmt.Errorf("no valid answer within %v; the device sent garbage (%w): %w", wait, bad, probes.ErrProbe)
			case stale > 0:
				return nil, fmt.Errorf("no answer to request %d within %v (%d answers to others): %w", h.Seq, wait, stale, probes.ErrTimeout)
			}
			return nil, fmt.Errorf("no answer within %v: %w", wait, probes.ErrTimeout)
		}
		if err := p.port.SetReadTimeout(max(min(left, poll), time.Millisecond)); err != nil {
			p.broken = true
			return nil, fmt.Errorf("port failed: %w: %w", probes.ErrProbe, err)
		}
		n, err := p.port.Read(p.buf)
		if n > 0 {
			if p.lines.Feed(p.buf[:n], match) == errDone {
				return got, nil
			}
			if garbage > maxGarbage {
				return nil, fmt.Errorf("the device sent %d bytes that are no answer: %w", garbage, probes.ErrProbe)
			}
		}
		if err != nil {
			p.broken = true
			return nil, fmt.Errorf("port failed (unplugged or closed?): %w: %w", probes.ErrProbe, err)
		}
	}
}

var errDone = errors.New("done")

func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", probes.ErrTimeout, err)
	}
	return err
}
