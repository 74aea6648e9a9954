package stm32uart

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fudbench/fudbench/probes"
)

// The link layer: frames out, ACK or NACK back, reads bounded in time.

var errNoReply = errors.New("no reply")

// command sends [code, ^code] and waits for its ACK.
func (p *Probe) command(ctx context.Context, code byte) error {
	return p.sendAck(ctx, []byte{code, ^code}, p.cfg.Timeout)
}

func (p *Probe) sendAck(ctx context.Context, b []byte, wait time.Duration) error {
	if err := p.send(b); err != nil {
		return err
	}
	return p.ack(ctx, wait)
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

// ack reads the answer to a frame: nil for ACK, ErrNACK for NACK.
func (p *Probe) ack(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	b := make([]byte, 1)
	for {
		if err := p.readFull(ctx, b, deadline, wait); err != nil {
			return err
		}
		switch b[0] {
		case bACK:
			return nil
		case bNACK:
			return ErrNACK
		case bBusy:
			continue
		}
		return fmt.Errorf("the device sent %#02x instead of ACK or NACK: %w", b[0], probes.ErrProbe)
	}
}

// readFrame reads a length-prefixed reply: N, then N+1 bytes.
func (p *Probe) readFrame(ctx context.Context) ([]byte, error) {
	f := make([]byte, 1, 257)
	deadline := time.Now().Add(p.cfg.Timeout)
	if err := p.readFull(ctx, f, deadline, p.cfg.Timeout); err != nil {
		return nil, err
	}
	f = f[:int(f[0])+2]
	if err := p.readFull(ctx, f[1:], deadline, p.cfg.Timeout); err != nil {
		return nil, err
	}
	return f, nil
}

// readFull fills b before deadline; wait is the time allowed, for the
// error text.
func (p *Probe) readFull(ctx context.Context, b []byte, deadline time.Time, wait time.Duration) error {
	for got := 0; got < len(b); {
		if err := ctx.Err(); err != nil {
			return ctxErr(err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w within %v: %w", errNoReply, wait, probes.ErrTimeout)
		}
		if err := p.port.SetReadTimeout(max(min(left, poll), time.Millisecond)); err != nil {
			p.broken = true
			return fmt.Errorf("port failed: %w: %w", probes.ErrProbe, err)
		}
		n, err := p.port.Read(b[got:])
		got += n
		if err != nil {
			p.broken = true
			return fmt.Errorf("port failed (unplugged or closed?): %w: %w", probes.ErrProbe, err)
		}
	}
	return nil
}

func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", probes.ErrTimeout, err)
	}
	return err
}
