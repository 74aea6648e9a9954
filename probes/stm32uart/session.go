package stm32uart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/probes"
)

// do runs f with the port open and the bootloader synced, holding the
// probe for the whole operation. After an error other than a NACK (which
// ends a command cleanly) the bootloader is synced again before the next
// operation; a port that failed is closed and opened again.
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
	err := p.connect(ctx)
	if err == nil {
		err = f()
	}
	if err != nil && !errors.Is(err, ErrNACK) && !errors.Is(err, probes.ErrVerify) {
		p.synced = false
	}
	if p.broken && p.port != nil {
		p.port.Close()
		p.port = nil
		p.synced = false
	}
	return err
}

func (p *Probe) connect(ctx context.Context) error {
	if p.port == nil {
		mode := &serial.Mode{BaudRate: p.cfg.Baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}
		if p.cfg.Parity == ParityEven {
			mode.Parity = serial.EvenParity
		}
		// No InitialStatusBits: setting modem lines fails on ptys and
		// some adapters wire them to BOOT0 and NRST.
		pt, err := p.open(p.cfg.Port, mode)
		if err != nil {
			return fmt.Errorf("%s: open: %w: %w", p, probes.ErrProbe, err)
		}
		p.port = pt
		p.synced = false
	}
	if p.synced {
		return nil
	}
	if err := p.sync(ctx); err != nil {
		return fmt.Errorf("%s: sync: %w", p, err)
	}
	if err := p.identify(ctx); err != nil {
		return err
	}
	p.synced = true
	return nil
}

// sync brings the bootloader to wait for a command, from any state: fresh
// (0x7F draws ACK), idle (a lone 0x7F is half a command, a second draws
// NACK) or inside a command (sync bytes end it as payload; a NACK
// follows). Single bytes, each awaited, never leave half a command.
func (p *Probe) sync(ctx context.Context) error {
	if err := p.port.ResetInputBuffer(); err != nil {
		p.broken = true
		return fmt.Errorf("port failed: %w: %w", probes.ErrProbe, err)
	}
	wait := min(syncWait, p.cfg.Timeout)
	var noise []byte
	single := func() (bool, error) {
		for range 2 {
			if err := p.send([]byte{bSync}); err != nil {
				return false, err
			}
			ok, err := p.syncReply(ctx, wait, &noise)
			if ok || err != nil {
				return ok, err
			}
		}
		return false, nil
	}
	if ok, err := single(); ok || err != nil {
		return err
	}
	burst := bytes.Repeat([]byte{bSync}, syncBurst)
	for range syncBursts {
		if err := p.send(burst); err != nil {
			return err
		}
		ok, err := p.syncReply(ctx, wait, &noise)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		// The rest of the burst may have drawn more answers and left half
		// a command; drain, then realign with single bytes.
		if err := p.drain(ctx, wait); err != nil {
			return err
		}
		if ok, err := single(); ok || err != nil {
			return err
		}
	}
	if len(noise) > 0 {
		return fmt.Errorf("the device sent % x but never ACK or NACK (wrong baud rate or parity, or not a bootloader?): %w", noise[:min(len(noise), 16)], probes.ErrProbe)
	}
	return fmt.Errorf("no answer to the sync byte 0x7F (is the board in its bootloader, BOOT0 high at reset?): %w", probes.ErrTimeout)
}

// syncReply waits up to wait for ACK or NACK, keeping other bytes in noise.
func (p *Probe) syncReply(ctx context.Context, wait time.Duration, noise *[]byte) (bool, error) {
	deadline := time.Now().Add(wait)
	b := make([]byte, 1)
	for {
		err := p.readFull(ctx, b, deadline, wait)
		if errors.Is(err, errNoReply) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if b[0] == bACK || b[0] == bNACK {
			return true, nil
		}
		if len(*noise) < 64 {
			*noise = append(*noise, b[0])
		}
	}
}

// drain reads and drops bytes until the line has been quiet for wait. A
// device that never falls quiet is refused after maxDrain bytes: each
// byte would renew the wait for ever.
func (p *Probe) drain(ctx context.Context, wait time.Duration) error {
	b := make([]byte, 1)
	for n := 0; ; n++ {
		err := p.readFull(ctx, b, time.Now().Add(wait), wait)
		if errors.Is(err, errNoReply) {
			return nil
		}
		if err != nil {
			return err
		}
		if n == maxDrain {
			return fmt.Errorf("the device sent more than %d bytes after a sync burst without falling quiet (wrong baud rate, or not a bootloader?): %w", maxDrain, probes.ErrProbe)
		}
	}
}

// identify reads the command list and the product ID and picks the page
// layout.
func (p *Probe) identify(ctx context.Context) error {
	if err := p.command(ctx, cmdGet); err != nil {
		return fmt.Errorf("%s: get: %w", p, err)
	}
	f, err := p.readFrame(ctx)
	if err == nil {
		err = p.ack(ctx, p.cfg.Timeout)
	}
	if err != nil {
		return fmt.Errorf("%s: get: %w", p, err)
	}
	info, err := parseGet(f)
	if err != nil {
		return fmt.Errorf("%s: get: %w: %w", p, probes.ErrProbe, err)
	}
	p.info = info
	p.pid, p.dev = 0, device{}
	if info.has(cmdGetID) {
		if err := p.command(ctx, cmdGetID); err != nil {
			return fmt.Errorf("%s: get id: %w", p, err)
		}
		f, err := p.readFrame(ctx)
		if err == nil {
			err = p.ack(ctx, p.cfg.Timeout)
		}
		if err != nil {
			return fmt.Errorf("%s: get id: %w", p, err)
		}
		pid, err := parseID(f)
		if err != nil {
			return fmt.Errorf("%s: get id: %w: %w", p, probes.ErrProbe, err)
		}
		p.pid = pid
		p.dev = devices[pid]
	}
	p.log.Info("bootloader synced", "version", fmt.Sprintf("%d.%d", info.version>>4, info.version&0xF),
		"commands", fmt.Sprintf("% x", info.cmds), "pid", fmt.Sprintf("%#03x", p.pid), "part", p.dev.name)
	return nil
}
