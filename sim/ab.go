package sim

// The double-buffered (A/B) strategies, modelled on MCUboot's
// overwrite-only, swap-using-scratch and direct-XIP-with-revert modes.
//
// Each slot ends with a trailer sector that holds, at its start:
//
//	magic      16 bytes, MCUboot's image trailer magic: an update is
//	           pending in (or was installed into) the slot
//	copy_done  one write unit: ab-swap's "the swap into this slot is
//	           complete"; ab-direct's "this slot has been tried"
//	image_ok   one write unit: the image confirmed itself
//
// A flag is set only when fully programmed (a torn flag is unset), the
// magic counts only when exact, and a trailer is blank when all of it is
// erased (a factory or probe image: taken as confirmed).
//
// ab-swap keeps its progress in a status sector of its own: a header
// {magic, swap type, sector count, CRC-32} and then one write unit per
// step, three steps per sector. MCUboot keeps this in the slot trailers
// and the scratch trailer; a separate sector keeps the model simple at
// the cost of one sector.
//
// Every write goes through the flash model, so each one is timed, can be
// torn and counts towards wear. A power cut stops the bootloader at the
// failing operation; the next boot decides again from what flash holds.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/sim/coapsrv"
	"github.com/fudbench/fudbench/sim/flash"
)

// trailerMagic is MCUboot's image trailer magic.
var trailerMagic = [16]byte{0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80}

const (
	trailerMagicLen = len(trailerMagic)
	// copyChunk is the RAM buffer through which the bootloader copies:
	// one flash program call per chunk.
	copyChunk = 1 << 10

	swapMagic     = 0x50575346 // "FSWP"
	swapHeaderLen = 16         // magic, type, 3 reserved, sector count, CRC-32
)

// Swap types, as the status header records them.
const (
	swapTest   byte = 1 // the secondary's image is swapped in for one test boot
	swapPerm   byte = 2 // swapped in and already confirmed
	swapRevert byte = 3 // an unconfirmed test image is swapped back out
)

func swapTypeName(t byte) string {
	switch t {
	case swapTest:
		return "test"
	case swapPerm:
		return "perm"
	case swapRevert:
		return "revert"
	}
	return fmt.Sprintf("type %d", t)
}

// Trailer flags: their offsets in the trailer sector, after the magic.
const (
	flagCopyDone = 0
	flagImageOK  = 1
)

// trailerLen is the bytes of a trailer: the magic and the two flags.
func (b *Board) trailerLen() int { return trailerMagicLen + 2*b.cfg.WriteAlign }

// trailer is a slot trailer as the bootloader reads it.
type trailer struct {
	magic    bool // exactly the magic
	blank    bool // magic and flags all erased
	copyDone bool
	imageOK  bool
}

// pending: an update was written to the slot and not yet taken up.
func (t trailer) pending() bool { return t.magic && !t.copyDone && !t.imageOK }

// testing: the image was booted in test mode and has not confirmed
// itself.
func (t trailer) testing() bool { return t.magic && t.copyDone && !t.imageOK }

// confirmed: the image confirmed itself, or the slot was programmed by a
// factory programmer or the probe (blank trailer).
func (t trailer) confirmed() bool { return t.blank || t.magic && t.imageOK }

func (t trailer) String() string {
	switch {
	case t.blank:
		return "blank"
	case !t.magic:
		return "no magic"
	}
	s := "magic"
	if t.copyDone {
		s += "+copy_done"
	}
	if t.imageOK {
		s += "+image_ok"
	}
	return s
}

func (b *Board) readTrailer(s Slot) trailer {
	a := b.cfg.WriteAlign
	buf := make([]byte, b.trailerLen())
	b.fl.Read(s.TrailerOff, buf)
	erased := b.fl.Config().Erased
	full := func(p []byte) bool {
		for _, c := range p {
			if c != ^erased {
				return false
			}
		}
		return true
	}
	return trailer{
		magic:    [16]byte(buf[:trailerMagicLen]) == trailerMagic,
		blank:    allErased(buf, erased),
		copyDone: full(buf[trailerMagicLen+flagCopyDone*a:][:a]),
		imageOK:  full(buf[trailerMagicLen+flagImageOK*a:][:a]),
	}
}

// programMagic programs the slot trailer's magic (the trailer must be
// erased).
func (b *Board) programMagic(s Slot) error {
	if err := b.fl.Program(s.TrailerOff, trailerMagic[:]); err != nil {
		return fmt.Errorf("programming the trailer magic at %#x: %w", s.TrailerOff, err)
	}
	return nil
}

// setFlag programs one trailer flag: every bit of its write unit.
func (b *Board) setFlag(s Slot, flag int) error {
	a := b.cfg.WriteAlign
	m := make([]byte, a)
	for i := range m {
		m[i] = ^b.fl.Config().Erased
	}
	off := s.TrailerOff + trailerMagicLen + flag*a
	if err := b.fl.Program(off, m); err != nil {
		return fmt.Errorf("programming a trailer flag at %#x: %w", off, err)
	}
	return nil
}

// eraseIfDirty erases a sector unless it is already fully erased.
func (b *Board) eraseIfDirty(sector int) error {
	_, start, size, err := b.sectorAt(sector)
	if err != nil {
		return err
	}
	buf := make([]byte, size)
	b.fl.Read(start, buf)
	if allErased(buf, b.fl.Config().Erased) {
		return nil
	}
	if err := b.fl.EraseSector(sector); err != nil {
		return fmt.Errorf("erasing sector %d: %w", sector, err)
	}
	return nil
}

func (b *Board) sectorAt(sector int) (idx, start, size int, err error) {
	secs := b.fl.Config().Sectors
	if sector < 0 || sector >= len(secs) {
		return 0, 0, 0, fmt.Errorf("sector %d: %w", sector, flash.ErrRange)
	}
	for i := range sector {
		start += secs[i]
	}
	return sector, start, secs[sector], nil
}

// slot returns the primary (slot A, 0) or secondary (slot B, 1) slot.
func (b *Board) slot(i int) Slot {
	if i == 0 {
		return b.lay.Primary
	}
	return b.lay.Secondary
}

// slotName names slot i as the strategy's console lines do.
func (b *Board) slotName(i int) string {
	if b.cfg.Strategy == ABDirect {
		return [2]string{"A", "B"}[i]
	}
	return [2]string{"primary", "secondary"}[i]
}

// slotLabel names slot i in a sentence: "the primary slot", "slot B".
func (b *Board) slotLabel(i int) string {
	if b.cfg.Strategy == ABDirect {
		return "slot " + b.slotName(i)
	}
	return "the " + b.slotName(i) + " slot"
}

// sectorSize is the size of an A/B layout's sectors (they are uniform).
func (b *Board) sectorSize() int { return b.fl.Config().Sectors[b.lay.Primary.First] }

// validSlot checks the image in s as the bootloader must before booting
// or installing it: header, size, SHA-256, signature, and a sequence
// number not below the anti-rollback counter.
func (b *Board) validSlot(s Slot) (*fwimage.Header, [32]byte, error) {
	h, d, err := b.verifyAt(s.Start, s.Size())
	if err == nil {
		err = b.rollbackOK(h)
	}
	return h, d, err
}

// imageSectors is the number of sectors covering the image in s (header
// and payload), or all of the slot's image sectors when its header is
// unreadable.
func (b *Board) imageSectors(s Slot) int {
	head := make([]byte, fwimage.HeaderSize)
	b.fl.Read(s.Start, head)
	h, err := fwimage.ParseHeader(head)
	if err != nil {
		return s.Sectors
	}
	total := fwimage.HeaderSize + int(h.PayloadSize)
	if total > s.Size() {
		return s.Sectors
	}
	ss := b.sectorSize()
	return (total + ss - 1) / ss
}

// moveSector erases sector dstSector (at dstOff) and copies the sector at
// srcOff into it through the RAM buffer, one program call per chunk.
func (b *Board) moveSector(dstSector, dstOff, srcOff int) error {
	if err := b.fl.EraseSector(dstSector); err != nil {
		return fmt.Errorf("erasing sector %d: %w", dstSector, err)
	}
	ss := b.sectorSize()
	buf := make([]byte, copyChunk)
	for off := 0; off < ss; off += copyChunk {
		c := buf[:min(copyChunk, ss-off)]
		b.fl.Read(srcOff+off, c)
		if err := b.fl.Program(dstOff+off, c); err != nil {
			return fmt.Errorf("copying %#x to %#x: %w", srcOff+off, dstOff+off, err)
		}
	}
	return nil
}

// abBootloader is the bootloader of the A/B strategies. A flash error
// other than a power cut halts the board with that error.
func (b *Board) abBootloader(r *ram) {
	var err error
	switch b.cfg.Strategy {
	case ABOverwrite:
		err = b.overwriteBoot(r)
	case ABSwap:
		err = b.swapBoot(r)
	case ABDirect:
		err = b.directBoot(r)
	}
	if err == nil {
		return
	}
	if errors.Is(err, flash.ErrPowerLost) {
		r.mode = "" // stopped where power went
		return
	}
	r.mode, r.failure = ModeHalted, err.Error()
}

// bootPrimary boots the image in the primary slot, or halts: nothing else
// can run. The anti-rollback counter is raised when the image is
// confirmed (always, with raise set).
func (b *Board) bootPrimary(r *ram, raise bool) error {
	h, d, err := b.validSlot(b.lay.Primary)
	if err != nil {
		r.mode, r.failure = ModeHalted, err.Error()
		return nil
	}
	t := b.readTrailer(b.lay.Primary)
	if raise || t.confirmed() {
		if err := b.raiseCounter(h); err != nil {
			return err
		}
	}
	r.mode, r.app, r.appDigest, r.slot = ModeApp, h, d, 0
	r.testMode = b.cfg.Strategy == ABSwap && t.testing()
	return nil
}

// overwriteBoot is MCUboot's overwrite-only upgrade: a valid pending
// image in the secondary slot is copied over the primary slot, then the
// secondary's trailer is erased. There is no progress record: a cut
// restarts the copy from the first sector, which is safe while the
// secondary is intact (it is only read).
func (b *Board) overwriteBoot(r *ram) error {
	pri, sec := b.lay.Primary, b.lay.Secondary
	if t := b.readTrailer(sec); t.magic {
		h, _, err := b.validSlot(sec)
		if err != nil {
			b.console.Printf("BL overwrite: secondary slot rejected (%v); erasing its trailer", err)
			if err := b.fl.EraseSector(sec.Trailer); err != nil {
				return fmt.Errorf("erasing the secondary trailer: %w", err)
			}
			return b.bootPrimary(r, true)
		}
		n := b.imageSectors(sec)
		b.console.Printf("BL overwrite: copying %d sectors from the secondary slot (v%s seq=%d)", n, h.Version, h.Seq)
		ss := b.sectorSize()
		for i := range n {
			if err := b.moveSector(pri.First+i, pri.Start+i*ss, sec.Start+i*ss); err != nil {
				return fmt.Errorf("overwrite, sector %d: %w", i, err)
			}
		}
		if err := b.fl.EraseSector(sec.Trailer); err != nil {
			return fmt.Errorf("erasing the secondary trailer: %w", err)
		}
		b.console.Printf("BL overwrite: done; secondary trailer erased")
	}
	return b.bootPrimary(r, true)
}

// swapStatus is ab-swap's status header.
type swapStatus struct {
	typ byte
	n   int // sectors swapped
}

func (b *Board) statusOff() int {
	_, start, _, _ := b.sectorAt(b.lay.Status)
	return start
}

// readSwapStatus returns the swap under way (ok false when the status
// sector holds no valid header) and how many of its steps are done: the
// entries fully programmed from the first.
func (b *Board) readSwapStatus() (st swapStatus, done int, ok bool) {
	off := b.statusOff()
	h := make([]byte, swapHeaderLen)
	b.fl.Read(off, h)
	if binary.LittleEndian.Uint32(h) != swapMagic || crc32.ChecksumIEEE(h[:12]) != binary.LittleEndian.Uint32(h[12:]) {
		return st, 0, false
	}
	st = swapStatus{typ: h[4], n: int(binary.LittleEndian.Uint32(h[8:]))}
	if st.typ < swapTest || st.typ > swapRevert || st.n < 1 || st.n > b.lay.Primary.Sectors {
		return st, 0, false
	}
	a := b.cfg.WriteAlign
	entries := make([]byte, 3*st.n*a)
	b.fl.Read(off+swapHeaderLen, entries)
	full := ^b.fl.Config().Erased
	for ; done < 3*st.n; done++ {
		e := entries[done*a : (done+1)*a]
		for _, c := range e {
			if c != full {
				return st, done, true
			}
		}
	}
	return st, done, true
}

// startSwap erases the status sector and programs the swap's header.
func (b *Board) startSwap(st swapStatus) error {
	if err := b.fl.EraseSector(b.lay.Status); err != nil {
		return fmt.Errorf("erasing the swap status: %w", err)
	}
	h := make([]byte, swapHeaderLen)
	binary.LittleEndian.PutUint32(h, swapMagic)
	h[4] = st.typ
	binary.LittleEndian.PutUint32(h[8:], uint32(st.n))
	binary.LittleEndian.PutUint32(h[12:], crc32.ChecksumIEEE(h[:12]))
	if err := b.fl.Program(b.statusOff(), h); err != nil {
		return fmt.Errorf("programming the swap status header: %w", err)
	}
	return nil
}

// swapSteps runs steps from..3n-1 of a swap of n sectors through the
// scratch sector, programming each step's status entry after it. For
// sector i: (0) scratch := secondary[i]; (1) secondary[i] := primary[i];
// (2) primary[i] := scratch. Each step's source is intact until the next
// step has its entry, so a cut is repaired by doing the first step
// without an entry again.
func (b *Board) swapSteps(n, from int) error {
	pri, sec := b.lay.Primary, b.lay.Secondary
	ss, a := b.sectorSize(), b.cfg.WriteAlign
	_, scratchOff, _, _ := b.sectorAt(b.lay.Scratch)
	entry := make([]byte, a)
	for i := range entry {
		entry[i] = ^b.fl.Config().Erased
	}
	for k := from; k < 3*n; k++ {
		i := k / 3
		var err error
		switch k % 3 {
		case 0:
			err = b.moveSector(b.lay.Scratch, scratchOff, sec.Start+i*ss)
		case 1:
			err = b.moveSector(sec.First+i, sec.Start+i*ss, pri.Start+i*ss)
		case 2:
			err = b.moveSector(pri.First+i, pri.Start+i*ss, scratchOff)
		}
		if err != nil {
			return fmt.Errorf("swap, sector %d step %d/3: %w", i, k%3+1, err)
		}
		if err := b.fl.Program(b.statusOff()+swapHeaderLen+k*a, entry); err != nil {
			return fmt.Errorf("swap, sector %d step %d/3: status entry: %w", i, k%3+1, err)
		}
	}
	return nil
}

// swapFinalizing reports whether a swap's finalization has begun: it
// changes the trailers the swap started from. A torn erase of the status
// sector at the very end can leave its header readable and its entries
// partly erased; the trailers then say the steps are over.
func (b *Board) swapFinalizing(typ byte) bool {
	if typ == swapRevert {
		return !b.readTrailer(b.lay.Primary).testing()
	}
	return !b.readTrailer(b.lay.Secondary).magic
}

// finishSwap writes the trailers a finished swap leaves and erases the
// status sector. It is done again as a whole after a cut.
func (b *Board) finishSwap(typ byte) error {
	pri, sec := b.lay.Primary, b.lay.Secondary
	if err := b.eraseIfDirty(sec.Trailer); err != nil {
		return fmt.Errorf("swap finalize: secondary trailer: %w", err)
	}
	if err := b.eraseIfDirty(pri.Trailer); err != nil {
		return fmt.Errorf("swap finalize: primary trailer: %w", err)
	}
	if err := b.programMagic(pri); err != nil {
		return fmt.Errorf("swap finalize: %w", err)
	}
	var flags []int
	switch typ {
	case swapTest:
		flags = []int{flagCopyDone}
	case swapPerm:
		flags = []int{flagCopyDone, flagImageOK}
	case swapRevert:
		flags = []int{flagImageOK}
	}
	for _, f := range flags {
		if err := b.setFlag(pri, f); err != nil {
			return fmt.Errorf("swap finalize: %w", err)
		}
	}
	if err := b.fl.EraseSector(b.lay.Status); err != nil {
		return fmt.Errorf("swap finalize: erasing the swap status: %w", err)
	}
	b.console.Printf("BL swap: %s complete; primary trailer %s", swapTypeName(typ), b.readTrailer(pri))
	return nil
}

// swapBoot is MCUboot's swap using a scratch sector: resume a swap under
// way; swap in a valid pending image from the secondary slot (test, or
// perm when it is already confirmed); swap an unconfirmed test image back
// out (revert); boot the primary slot.
func (b *Board) swapBoot(r *ram) error {
	pri, sec := b.lay.Primary, b.lay.Secondary
	if st, done, ok := b.readSwapStatus(); ok {
		if done < 3*st.n && !b.swapFinalizing(st.typ) {
			b.console.Printf("BL swap: resuming %s at sector %d step %d/3", swapTypeName(st.typ), done/3, done%3+1)
			if err := b.swapSteps(st.n, done); err != nil {
				return err
			}
		} else {
			b.console.Printf("BL swap: resuming %s finalize", swapTypeName(st.typ))
		}
		if err := b.finishSwap(st.typ); err != nil {
			return err
		}
		return b.bootPrimary(r, false)
	}
	if t := b.readTrailer(sec); t.magic {
		h, _, err := b.validSlot(sec)
		if err != nil {
			b.console.Printf("BL swap: secondary slot rejected (%v); erasing its trailer", err)
			if err := b.fl.EraseSector(sec.Trailer); err != nil {
				return fmt.Errorf("erasing the secondary trailer: %w", err)
			}
			return b.bootPrimary(r, false)
		}
		st := swapStatus{typ: swapTest, n: max(b.imageSectors(pri), b.imageSectors(sec))}
		if t.imageOK {
			st.typ = swapPerm
		}
		b.console.Printf("BL swap: %s, %d sectors (v%s seq=%d from the secondary slot)", swapTypeName(st.typ), st.n, h.Version, h.Seq)
		return b.runSwap(r, st)
	}
	if t := b.readTrailer(pri); t.testing() {
		st := swapStatus{typ: swapRevert, n: max(b.imageSectors(pri), b.imageSectors(sec))}
		what := "the test image"
		if h, err := b.headerAt(pri); err == nil {
			what = fmt.Sprintf("v%s seq=%d", h.Version, h.Seq)
		}
		b.console.Printf("BL revert: %s was not confirmed; swapping back, %d sectors", what, st.n)
		return b.runSwap(r, st)
	}
	return b.bootPrimary(r, false)
}

func (b *Board) runSwap(r *ram, st swapStatus) error {
	if err := b.startSwap(st); err != nil {
		return err
	}
	if err := b.swapSteps(st.n, 0); err != nil {
		return err
	}
	if err := b.finishSwap(st.typ); err != nil {
		return err
	}
	return b.bootPrimary(r, false)
}

func (b *Board) headerAt(s Slot) (*fwimage.Header, error) {
	head := make([]byte, fwimage.HeaderSize)
	b.fl.Read(s.Start, head)
	h, err := fwimage.ParseHeader(head)
	if err != nil {
		return nil, fmt.Errorf("slot header at %#x: %w", s.Start, err)
	}
	return h, nil
}

// directBoot is MCUboot's direct-XIP with revert: a slot whose test boot
// was not confirmed is rejected (its header erased); of the others, the
// valid slot with the highest sequence number boots where it is (ties:
// slot A). A pending one is marked tried (copy_done) and boots in test
// mode.
func (b *Board) directBoot(r *ram) error {
	type cand struct {
		h *fwimage.Header
		d [32]byte
		t trailer
	}
	var cands [2]*cand
	var why [2]string
	for i := range 2 {
		s := b.slot(i)
		t := b.readTrailer(s)
		h, d, err := b.validSlot(s)
		switch {
		case t.testing():
			why[i] = "not confirmed after its test boot"
			if err := b.eraseIfDirty(s.First); err != nil {
				return fmt.Errorf("rejecting slot %s: %w", b.slotName(i), err)
			}
			if h != nil {
				b.console.Printf("BL revert: slot %s v%s seq=%d was not confirmed; header erased", b.slotName(i), h.Version, h.Seq)
			}
			continue
		case err != nil:
			why[i] = err.Error()
			continue
		case !t.blank && !t.magic:
			why[i] = "trailer damaged"
			continue
		}
		cands[i] = &cand{h, d, t}
	}
	best := -1
	for i, c := range cands {
		if c != nil && (best < 0 || c.h.Seq > cands[best].h.Seq) {
			best = i
		}
	}
	if best < 0 {
		r.mode, r.failure = ModeHalted, fmt.Sprintf("slot A: %s; slot B: %s", why[0], why[1])
		return nil
	}
	c, s := cands[best], b.slot(best)
	test := c.t.pending()
	if test {
		if err := b.setFlag(s, flagCopyDone); err != nil {
			return fmt.Errorf("marking slot %s tried: %w", b.slotName(best), err)
		}
	}
	if c.t.confirmed() {
		if err := b.raiseCounter(c.h); err != nil {
			return err
		}
	}
	how := "confirmed"
	if test {
		how = "test"
	} else if !c.t.confirmed() {
		how = "tried, not confirmed"
	}
	b.console.Printf("BL direct-xip: booting slot %s v%s (%s)", b.slotName(best), c.h.Version, how)
	r.mode, r.app, r.appDigest, r.slot, r.testMode = ModeApp, c.h, c.d, best, test
	return nil
}

// appConfirm is an app booted in test mode (ab-swap, ab-direct) before it
// reports ready: with confirm: boot it programs its slot's image_ok; with
// confirm: never it fails its self-test and resets at once, as a watchdog
// would. It returns false when the app does not go on (power lost, or
// reset).
func (b *Board) appConfirm(ep uint64, r *ram) bool {
	if r.mode != ModeApp || !r.testMode {
		return true
	}
	if b.cfg.Confirm == ConfirmNever {
		b.console.Printf("APP v%s self-test failed: not confirming; resetting", r.app.Version)
		b.resetFrom(ep)
		return false
	}
	if err := b.setFlag(b.slot(r.slot), flagImageOK); err != nil {
		if errors.Is(err, flash.ErrPowerLost) {
			return false
		}
		b.log.Error("confirm", "err", err)
		b.console.Printf("APP v%s confirm failed: %v", r.app.Version, err)
		return true
	}
	r.testMode = false
	b.console.Printf("APP v%s confirmed (image_ok set in %s)", r.app.Version, b.slotLabel(r.slot))
	return true
}

// abTarget is the slot a download goes into: the secondary, or for
// ab-direct the slot the app does not run from.
func (b *Board) abTarget(r *ram) int {
	if b.cfg.Strategy == ABDirect {
		return 1 - r.slot
	}
	return 1
}

// abBlock is the A/B app's download: a plain Block1 transfer into the
// target slot (its trailer erased at block 0, so that an old pending mark
// never points at a half-written image), then the trailer's magic marks
// the image pending (a test upgrade) and the app reboots into the
// bootloader.
func (b *Board) abBlock(r *ram, req *coapsrv.Request) (*coapsrv.Response, bool) {
	i := b.abTarget(r)
	s := b.slot(i)
	name := strings.TrimPrefix(b.slotLabel(i), "the ")
	return b.blockUpload(r, req, uploadTarget{
		base: s.Start, size: s.Size(), name: name, where: b.slotLabel(i),
		begin: func() error {
			if b.readTrailer(s).blank {
				return nil
			}
			if err := b.fl.EraseSector(s.Trailer); err != nil {
				return wrapPower(fmt.Errorf("erasing the %s trailer: %w", name, err))
			}
			return nil
		},
		end: func() error {
			if err := b.programMagic(s); err != nil {
				return wrapPower(err)
			}
			return nil
		},
		done: "marked pending (test)",
	})
}

// abPrepareRefusal is the A/B app's answer to POST /fw/prepare.
func (b *Board) abPrepareRefusal() *coapsrv.Response {
	where := "its secondary slot"
	if b.cfg.Strategy == ABDirect {
		where = "the slot it does not run from"
	}
	return failure(codes.NotFound, "", fmt.Sprintf("this firmware has no resumable update (%s): it takes plain Block1 to /fw into %s", b.cfg.Strategy, where))
}

// hasImage reports whether flash holds an image the board could run or
// an update it could finish: a valid image in the app slot, or on an A/B
// layout in either slot, or a swap under way.
func (b *Board) hasImage() bool {
	if _, _, err := b.verifyApp(); err == nil {
		return true
	}
	if !b.lay.AB() {
		return false
	}
	if _, _, err := b.verifyAt(b.lay.Secondary.Start, b.lay.Secondary.Size()); err == nil {
		return true
	}
	if b.cfg.Strategy == ABSwap {
		_, _, ok := b.readSwapStatus()
		return ok
	}
	return false
}
