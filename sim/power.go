package sim

// Power and lifecycle: the power input, cuts, resets and the boot
// sequence, each boot a new power epoch that handlers and sleeps check.

import (
	"context"
	"fmt"
	"time"

	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/sim/coapsrv"
	"github.com/fudbench/fudbench/sim/flash"
)

// Powered reports whether the board has power: its power input is on and
// its supply is not holding it in brownout reset (see PowerInput).
func (b *Board) Powered() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.powered
}

// Mode reports what the board is doing: off, booting, app, recovery or
// halted. A board is booting until its network is up (Config.NetDelay
// after its console said it was ready).
func (b *Board) Mode() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mode
}

// WaitMode waits until the board is in one of the given modes.
func (b *Board) WaitMode(ctx context.Context, modes ...string) (string, error) {
	for {
		b.mu.Lock()
		m, ch := b.mode, b.changed
		b.mu.Unlock()
		for _, want := range modes {
			if m == want {
				return m, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return m, fmt.Errorf("sim: board %s: waiting for %v, still %s: %w", b.cfg.Name, modes, m, ctx.Err())
		}
	}
}

// WaitBoot waits until the board has booted more than after times and
// settled in app, recovery or halted mode, and returns that mode.
func (b *Board) WaitBoot(ctx context.Context, after uint32) (string, error) {
	for {
		b.mu.Lock()
		m, n, ch := b.mode, b.boots, b.changed
		b.mu.Unlock()
		if n > after && (m == ModeApp || m == ModeRecovery || m == ModeHalted || m == ModeSerialRecovery) {
			return m, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return m, fmt.Errorf("sim: board %s: waiting for boot %d, %s after %d: %w", b.cfg.Name, after+1, m, n, ctx.Err())
		}
	}
}

// setMode changes mode; b.mu held.
func (b *Board) setMode(m string) {
	b.mode = m
	b.meter.setMode(m)
	close(b.changed)
	b.changed = make(chan struct{})
}

// Boots is the number of boots since the board was made.
func (b *Board) Boots() uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.boots
}

// LastCut returns the board's record of its latest power cut and how many
// it has recorded (0: none, and rec is zero).
func (b *Board) LastCut() (rec CutRecord, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.cuts) == 0 {
		return CutRecord{}, 0
	}
	return b.cuts[len(b.cuts)-1], len(b.cuts)
}

// Cuts returns the board's record of every power cut.
func (b *Board) Cuts() []CutRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]CutRecord(nil), b.cuts...)
}

// SetPower drives the power input: on boots the board after the boot
// delay (unless its supply is below the brownout-reset threshold: it then
// stays in reset until SetVoltage raises it); off is a power cut at this
// instant.
func (b *Board) SetPower(on bool) {
	b.rail.Lock()
	defer b.rail.Unlock()
	if !on {
		b.mu.Lock()
		b.input, b.browned = false, false
		b.mu.Unlock()
		b.cutPower("power-input", nil)
		return
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.input = true
	up := b.volts >= b.cfg.BOR+BORHysteresis
	b.mu.Unlock()
	if up {
		b.powerUp(fwproto.ResetPower, "")
	}
}

// powerUp gives the board power and starts its boot; note, if not "",
// is the reset cause its console prints instead of cause (a brownout).
// b.rail held.
func (b *Board) powerUp(cause, note string) {
	b.mu.Lock()
	if b.powered || b.closed {
		b.mu.Unlock()
		return
	}
	b.powered = true
	b.browned = false
	b.epoch++
	ep := b.epoch
	b.cause, b.causeNote = cause, note
	b.setMode(ModeBooting)
	detached := b.detached
	b.mu.Unlock()
	b.fl.PowerOn()
	if b.cfg.Reenumerate {
		if detached != nil {
			<-detached // the previous power-off's detach comes first
		}
		if err := b.console.Attach(); err != nil {
			b.log.Error("console attach", "err", err)
		}
	}
	go b.boot(ep)
}

// CutAtFlashOp arms a power cut at flash operation number op (see
// flash.Flash.CutAtOp): the sweep tests' way of cutting at every operation.
func (b *Board) CutAtFlashOp(op uint64) {
	b.arm.mu.Lock()
	defer b.arm.mu.Unlock()
	b.arm.op = 0 // replaces a cut ArmCut armed
	b.fl.CutAtOp(op, func(c flash.Cut) { b.cutPower("flash-op", &c) })
}

// cutPower cuts power now and records the cut; ok is false when the
// board was already off (nothing is recorded).
func (b *Board) cutPower(cause string, fc *flash.Cut) (rec CutRecord, ok bool) {
	inProgress := b.fl.InProgress()
	b.fl.PowerOff()
	b.disarmAll()
	b.mu.Lock()
	if !b.powered {
		b.mu.Unlock()
		return CutRecord{}, false
	}
	b.powered = false
	// A brownout keeps the power input on: the board boots again when the
	// supply recovers. Any other cut is the input going off.
	b.browned = cause == ResetBrownout
	if !b.browned {
		b.input = false
	}
	b.epoch++
	rec = CutRecord{At: time.Now(), Mode: b.mode, Flash: inProgress, Block: -1, LastAcked: -1, Cause: cause}
	if fc != nil {
		rec.Flash = *fc
	}
	if b.ram != nil {
		rec.Block = b.ram.writing.Load()
		rec.LastAcked = b.ram.lastAcked.Load()
	}
	b.cuts = append(b.cuts, rec)
	b.ram = nil
	servers := b.servers
	b.servers = nil
	b.setMode(ModeOff)
	// Sockets are torn down in the background: the cut is the instant
	// above (flash stopped, RAM gone, handlers answer nothing), and the
	// switch call that caused it should return at once. The next boot
	// waits for the teardown.
	down := make(chan struct{})
	b.netDone = down
	b.mu.Unlock()
	go func() { defer close(down); b.netDown(servers) }()
	if b.cfg.Reenumerate {
		// The adapter going away takes the pty down in the background:
		// the cut itself is the instant above, and a trigger's measured
		// latency must not include the console's teardown.
		done := make(chan struct{})
		b.mu.Lock()
		b.detached = done
		b.mu.Unlock()
		go func() { defer close(done); b.console.Detach() }()
	}
	b.log.Debug("power cut", "cause", cause, "flash", rec.Flash.Kind, "block", rec.Block, "last_acked", rec.LastAcked)
	return rec, true
}

// Reset is a software (or probe) reset: RAM is lost, the bootloader runs
// again, power stays on.
func (b *Board) Reset() {
	b.mu.Lock()
	if !b.powered {
		b.mu.Unlock()
		return
	}
	b.resetLocked()
	b.mu.Unlock()
}

// resetLocked reboots; b.mu held.
func (b *Board) resetLocked() {
	b.epoch++
	ep := b.epoch
	b.ram = nil
	servers := b.servers
	b.servers = nil
	b.cause, b.causeNote = fwproto.ResetSoftware, ""
	b.setMode(ModeBooting)
	go func() {
		b.netDown(servers)
		b.boot(ep)
	}()
}

// resetFrom reboots the board from a handler once its reply is out.
func (b *Board) resetFrom(ep uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.powered && b.epoch == ep {
		b.resetLocked()
	}
}

func (b *Board) current(ep uint64) *ram {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.epoch != ep || !b.powered {
		return nil
	}
	return b.ram
}

func (b *Board) alive(ep uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.powered && b.epoch == ep
}

func (b *Board) sleep(ep uint64, d time.Duration) bool {
	if d <= 0 {
		return b.alive(ep)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		b.mu.Lock()
		ch := b.changed
		ok := b.powered && b.epoch == ep
		b.mu.Unlock()
		if !ok {
			return false
		}
		select {
		case <-t.C:
			return b.alive(ep)
		case <-ch:
		}
	}
}

// scaled applies the time scale to a modelled delay.
func (b *Board) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * b.cfg.TimeScale)
}

// boot runs the bootloader for power epoch ep.
func (b *Board) boot(ep uint64) {
	if !b.sleep(ep, b.scaled(b.cfg.BootDelay)) {
		return
	}
	b.cpu.Lock()
	defer b.cpu.Unlock()
	b.mu.Lock()
	if b.epoch != ep || !b.powered {
		b.mu.Unlock()
		return
	}
	b.boots++
	boots, cause := b.boots, b.cause
	if b.causeNote != "" {
		cause = b.causeNote // the console tells a brownout from a power-on
	}
	b.mu.Unlock()
	b.console.Printf("BL fudbench-sim bootloader v1 board=%s reset=%s boots=%d", b.cfg.Name, cause, boots)
	if b.smpWait > 0 && b.serialWindow(ep) {
		b.console.Printf("BL serial recovery: SMP command received; staying in serial recovery until reset")
		return
	}

	r := &ram{epoch: ep}
	r.writing.Store(-1)
	r.lastAcked.Store(-1)
	b.bootloader(r)
	if r.mode == "" || !b.alive(ep) {
		return // power went while the bootloader ran
	}
	if !b.appConfirm(ep, r) {
		return
	}
	if r.mode != ModeHalted && !b.initSecurity(ep, r) {
		return
	}
	switch r.mode {
	case ModeApp:
		b.console.Printf("APP v%s seq=%d mode=app reset=%s boots=%d ready", r.app.Version, r.app.Seq, cause, boots)
	case ModeRecovery:
		if r.rec != nil {
			b.console.Printf("RECOVERY ready mode=recovery state=%s next=%d/%d boots=%d", r.state, r.next, r.rec.blocks(), boots)
		} else {
			b.console.Printf("RECOVERY ready mode=recovery state=%s (%s) boots=%d", r.state, r.failure, boots)
		}
	case ModeHalted:
		b.console.Printf("BL no bootable image (%s); halted", r.failure)
	}
	// The console is up; the network may come later. Until it does, the
	// sockets stay parked and a request gets no answer at all.
	if r.mode != ModeHalted && !b.sleep(ep, b.scaled(b.cfg.NetDelay)) {
		return
	}
	var servers []*coapsrv.Server
	b.mu.Lock()
	netDone := b.netDone
	b.mu.Unlock()
	if netDone != nil {
		<-netDone
	}
	b.netMu.Lock()
	defer b.netMu.Unlock()
	if r.mode != ModeHalted && b.alive(ep) {
		b.unpark()
		var err error
		servers, err = b.startCoAP(ep, r)
		if err != nil {
			b.log.Error("coap", "err", err)
			b.console.Printf("BL network error: %v", err)
		}
	}
	b.mu.Lock()
	if b.epoch != ep || !b.powered {
		b.mu.Unlock()
		for _, s := range servers {
			s.Detach()
		}
		b.park()
		return
	}
	b.ram = r
	b.servers = servers
	b.setMode(r.mode)
	b.mu.Unlock()
}
