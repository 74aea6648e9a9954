package sim

// The bootloader's SMP serial recovery, as MCUboot's (boot_serial.c) on
// the console UART: MCUmgr's image list, test, confirm and upload, echo
// and reset, in SMP frames on the console pty (internal/smp). It is served
// while the board is halted (no bootable image) and, with a wait window,
// for that long after each reset: a command in the window keeps the
// bootloader in serial recovery until the next reset, as MCUboot's
// MCUBOOT_SERIAL_WAIT_FOR_DFU does.
//
// The upload goes to the start of the app slot (the primary slot of an
// A/B layout): a chunk at offset 0 starts an upload of "len" bytes, the
// slot's sectors are erased as the upload reaches them and each chunk is
// programmed with the flash's timing, whole write units at a time (the
// rest of a chunk is asked for again; the last one is padded with the
// erased value). A chunk at another offset than the one expected is
// answered with the expected offset. The upload's progress is RAM: a
// reset or a power cut forgets it, and a cut mid-upload leaves the slot
// torn, as on real flash. The image list shows the app slot's image when
// it verifies (header, size, SHA-256, signature): its version and, as its
// hash, the SHA-256 of its bytes (header and payload). Test and confirm
// take that hash (or none) and change nothing: the slot has no trailer to
// mark; another hash is ENOENT.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fudbench/fudbench/internal/smp"
)

// Serial recovery settings (Config.SerialRecovery).
const (
	// SerialRecoveryHalted serves SMP while the board is halted (default).
	SerialRecoveryHalted = "halted"
	// SerialRecoveryOff never serves SMP.
	SerialRecoveryOff = "off"
	// serialRecoveryWait, followed by a duration ("wait 500ms"), also
	// serves it for that long after each reset.
	serialRecoveryWait = "wait "
)

// ModeSerialRecovery is the mode of a board whose bootloader stays in SMP
// serial recovery after a command came in its wait window.
const ModeSerialRecovery = "serial-recovery"

// smpMaxFrame is the bootloader's receive buffer for one decoded frame
// (MCUboot's MCUBOOT_SERIAL_MAX_RECEIVE_SIZE as Zephyr sets it).
const smpMaxFrame = 1024

// smpQueue bounds the console input chunks waiting for the bootloader;
// more are lost, as bytes overrunning a UART's receive buffer are.
const smpQueue = 256

// ParseSerialRecovery checks a serial_recovery setting: "halted", "off"
// or "wait DURATION" (at most a minute), and returns the wait.
func ParseSerialRecovery(s string) (wait time.Duration, err error) {
	switch {
	case s == "" || s == SerialRecoveryHalted || s == SerialRecoveryOff:
		return 0, nil
	case strings.HasPrefix(s, serialRecoveryWait):
		d, err := time.ParseDuration(strings.TrimSpace(s[len(serialRecoveryWait):]))
		if err != nil || d <= 0 || d > time.Minute {
			return 0, fmt.Errorf("serial_recovery %q: the wait must be a duration above 0 and at most 1m (wait 500ms)", s)
		}
		return d, nil
	}
	return 0, fmt.Errorf("serial_recovery %q: want halted, off or wait DURATION (wait 500ms)", s)
}

// smpUpload is the serial recovery's upload in progress (its RAM).
type smpUpload struct {
	ep       uint64
	size     int // announced by the chunk at offset 0; 0: none started
	off      int // next offset expected
	erasedTo int // flash offset up to which the slot is erased
}

// smpInput is the console's input hook: it hands the bytes to the
// bootloader's goroutine and never blocks.
func (b *Board) smpInput(p []byte) {
	if b.cfg.SerialRecovery == SerialRecoveryOff {
		return
	}
	select {
	case b.smpIn <- append([]byte(nil), p...):
	default:
		b.log.Debug("serial recovery: console input overrun")
	}
}

// smpLoop reassembles SMP frames from the console and serves them.
func (b *Board) smpLoop() {
	defer close(b.smpDone)
	var lines smp.LineBuffer
	dec := smp.Decoder{Max: smpMaxFrame}
	var up smpUpload
	for {
		var p []byte
		select {
		case <-b.smpStop:
			return
		case p = <-b.smpIn:
		}
		lines.Feed(p, func(line []byte) error {
			pkt, err := dec.Line(line)
			if err != nil {
				b.log.Debug("serial recovery: frame dropped", "err", err)
				return nil
			}
			if pkt != nil {
				b.serveSMP(pkt, &up)
			}
			return nil
		})
	}
}

// smpServing reports whether the bootloader serves SMP now, and in which
// power epoch. A command in the wait window keeps it in serial recovery.
func (b *Board) smpServing() (uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.powered {
		return 0, false
	}
	switch {
	case b.mode == ModeSerialRecovery:
	case b.mode == ModeHalted && b.cfg.SerialRecovery != SerialRecoveryOff:
	case b.smpWindow == b.epoch && b.smpWindow != 0:
		b.smpWindow = 0
		b.setMode(ModeSerialRecovery)
	default:
		return 0, false
	}
	return b.epoch, true
}

// serialWindow runs the wait window after a reset; it reports true when a
// command came in it, and the bootloader stays in serial recovery.
func (b *Board) serialWindow(ep uint64) bool {
	b.mu.Lock()
	if b.epoch != ep || !b.powered {
		b.mu.Unlock()
		return false
	}
	b.smpWindow = ep
	b.mu.Unlock()
	b.console.Printf("BL serial recovery: waiting %v for SMP", b.smpWait)
	b.sleep(ep, b.smpWait)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.smpWindow == ep {
		b.smpWindow = 0
	}
	return b.epoch == ep && b.powered && b.mode == ModeSerialRecovery
}

// serveSMP answers one request, as MCUboot's boot_serial_input does.
func (b *Board) serveSMP(pkt []byte, up *smpUpload) {
	ep, ok := b.smpServing()
	if !ok {
		return
	}
	req, err := smp.ParsePacket(pkt)
	// The op is the low three bits; an SMP version 2 request's version
	// bits are kept in the answer, as MCUboot's header bit fields do.
	op := req.Op & smp.OpMask
	if err != nil || (op != smp.OpRead && op != smp.OpWrite) {
		return
	}
	if up.ep != ep {
		*up = smpUpload{ep: ep}
	}
	var rsp any
	reset := false
	switch {
	case req.Group == smp.GroupImage && req.ID == smp.IDImageState && op == smp.OpRead:
		rsp = b.smpList()
	case req.Group == smp.GroupImage && req.ID == smp.IDImageState:
		rsp = b.smpSetState(req.Body)
	case req.Group == smp.GroupImage && req.ID == smp.IDImageUpload:
		rsp = b.smpUpload(req.Body, up)
	case req.Group == smp.GroupDefault && req.ID == smp.IDEcho:
		var e smp.EchoReq
		if smp.Unmarshal(req.Body, &e) != nil {
			rsp = smp.RcRsp{Rc: smp.RcEInval}
		} else {
			rsp = smp.EchoRsp{R: e.D}
		}
	case req.Group == smp.GroupDefault && req.ID == smp.IDReset:
		rsp, reset = smp.RcRsp{Rc: smp.RcOK}, true
	default:
		rsp = smp.RcRsp{Rc: smp.RcENotSup}
	}
	if !b.alive(ep) {
		return // power went while it worked
	}
	h := req.Header
	h.Op = req.Op&^smp.OpMask | (op + 1)
	h.Flags = 0
	b.console.Write(smp.Encode(smp.Packet{Header: h, Body: smp.Marshal(rsp)}.Marshal()))
	if reset {
		b.console.Printf("BL serial recovery: reset requested")
		b.resetFrom(ep)
	}
}

// smpList is the image state: the app slot's image if it verifies.
func (b *Board) smpList() smp.ImageStateRsp {
	rsp := smp.ImageStateRsp{Images: []smp.ImageSlot{}}
	h, digest, err := b.verifyApp()
	if err != nil {
		return rsp
	}
	rsp.Images = append(rsp.Images, smp.ImageSlot{Slot: 0, Version: h.Version, Hash: digest[:], Bootable: true, Confirmed: true, Active: true})
	return rsp
}

func (b *Board) smpSetState(body []byte) any {
	var req smp.ImageStateReq
	if smp.Unmarshal(body, &req) != nil || (len(req.Hash) != 0 && len(req.Hash) != 32) {
		return smp.RcRsp{Rc: smp.RcEInval}
	}
	list := b.smpList()
	if len(list.Images) == 0 || (len(req.Hash) != 0 && string(req.Hash) != string(list.Images[0].Hash)) {
		return smp.RcRsp{Rc: smp.RcENoEnt}
	}
	return list
}

// smpUpload writes one chunk into the app slot.
func (b *Board) smpUpload(body []byte, up *smpUpload) any {
	req, err := smp.ParseUploadReq(body)
	if err != nil || req.Image != 0 {
		return smp.RcRsp{Rc: smp.RcEInval}
	}
	if req.Off == 0 {
		if req.Len == 0 || int(req.Len) > b.lay.AppSize() {
			return smp.RcRsp{Rc: smp.RcEInval}
		}
		*up = smpUpload{ep: up.ep, size: int(req.Len), erasedTo: b.lay.AppStart}
		b.console.Printf("BL serial recovery: upload of %d bytes", req.Len)
	} else if up.size == 0 || int(req.Off) != up.off {
		return smp.UploadRsp{Off: uint32(up.off)}
	}
	data := req.Data
	if up.off+len(data) > up.size {
		return smp.RcRsp{Rc: smp.RcEInval}
	}
	end := b.lay.AppStart + up.off + len(data)
	for up.erasedTo < end {
		idx, start, size, err := b.fl.Sector(up.erasedTo)
		if err == nil {
			err = b.fl.EraseSector(idx)
		}
		if err != nil {
			return b.smpFlashErr(err)
		}
		up.erasedTo = start + size
	}
	a := b.cfg.WriteAlign
	n := len(data) / a * a
	last := up.off+len(data) == up.size
	prog := data[:n]
	if last && n < len(data) {
		prog = make([]byte, (len(data)+a-1)/a*a)
		for i := range prog {
			prog[i] = b.fl.Config().Erased
		}
		copy(prog, data)
		n = len(data)
	}
	if len(prog) > 0 {
		if err := b.fl.Program(b.lay.AppStart+up.off, prog); err != nil {
			return b.smpFlashErr(err)
		}
	}
	up.off += n
	if up.off == up.size {
		b.console.Printf("BL serial recovery: upload complete, %d bytes", up.size)
	}
	return smp.UploadRsp{Off: uint32(up.off)}
}

func (b *Board) smpFlashErr(err error) any {
	b.log.Debug("serial recovery: flash", "err", err)
	return smp.RcRsp{Rc: smp.RcEUnknown}
}

// startSerialRecovery starts the goroutine that serves SMP on the console.
func (b *Board) startSerialRecovery() {
	b.smpIn = make(chan []byte, smpQueue)
	b.smpStop = make(chan struct{})
	b.smpDone = make(chan struct{})
	go b.smpLoop()
}

func (b *Board) stopSerialRecovery() {
	if b.smpStop != nil {
		close(b.smpStop)
		<-b.smpDone
	}
}

// WaitSerialRecovery waits until the board serves SMP: halted, or in
// serial recovery.
func (b *Board) WaitSerialRecovery(ctx context.Context) error {
	m, err := b.WaitMode(ctx, ModeHalted, ModeSerialRecovery)
	if err == nil && m == ModeHalted && b.cfg.SerialRecovery == SerialRecoveryOff {
		return errors.New("sim: halted, and serial recovery is off")
	}
	return err
}
