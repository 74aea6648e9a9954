package sim

// What a bench measures on a board besides its firmware's answers: the
// flash counters, what a strategy costs in flash, and a power cut armed
// at one of the board's own flash operations.

import (
	"sync"

	"github.com/fudbench/fudbench/sim/flash"
)

// FlashStats are a board's flash counters since the board was made.
type FlashStats struct {
	Ops        uint64   `json:"ops"`        // flash operations (write units programmed, sectors erased)
	Programmed int64    `json:"programmed"` // bytes programmed, torn write units included
	Erased     int64    `json:"erased"`     // bytes erased, torn erases included
	Erases     []uint32 `json:"erases"`     // erases per sector (wear), index = sector
}

// FlashStats returns the board's flash counters: every operation of its
// firmware and of the probe port since the board was made (factory
// programming is not counted). Erases counts this board's erases per
// sector; Flash().Wear() has the lifetime counts kept with the contents.
func (b *Board) FlashStats() FlashStats {
	st := b.fl.Stats()
	erases := st.Wear
	for i := range erases {
		if i < len(b.wear0) {
			erases[i] -= b.wear0[i]
		}
	}
	return FlashStats{Ops: st.Ops, Programmed: st.Programmed, Erased: st.Erased, Erases: erases}
}

// UpdateCost is what a strategy needs in flash for one image.
type UpdateCost struct {
	Strategy Strategy `json:"strategy"`
	// Space is the flash beyond the bootloader the strategy needs to hold
	// and update the image, in whole sectors (bytes).
	Space int `json:"space"`
	// Cache is the bytes the device keeps in flash so that an interrupted
	// update completes on its own.
	Cache int `json:"cache"`
}

// UpdateCost returns what the board's strategy needs in flash to hold and
// update an image of imageSize bytes sent in blocks of blockSize bytes:
//
//   - inplace-recovery: space for the image's sectors, record A, record
//     B, the journal and the counter; cache the encoded recovery record
//     and the journal's bits for the image's blocks.
//   - naive-inplace: the image's sectors and the counter; no cache.
//   - ab-overwrite, ab-direct: two slots of the image's sectors and a
//     trailer sector each, and the counter; cache a trailer (magic and
//     two flags).
//   - ab-swap: as ab-overwrite, plus the scratch and status sectors;
//     cache a trailer, the status header and three status entries per
//     image sector.
func (b *Board) UpdateCost(imageSize, blockSize int) UpdateCost {
	c := UpdateCost{Strategy: b.cfg.Strategy}
	imageSize = max(imageSize, 0)
	secs := b.fl.Config().Sectors
	a := b.cfg.WriteAlign
	// image is the bytes of the sectors covering n bytes from off, and
	// how many sectors that is.
	image := func(off, n int) (bytes, count int) {
		idx, _, _, err := b.fl.Sector(off)
		if err != nil {
			return 0, 0
		}
		for ; bytes < n && idx < len(secs); idx++ {
			bytes += secs[idx]
			count++
		}
		return bytes, count
	}
	counter := b.lay.counterLen
	switch b.cfg.Strategy {
	case InplaceRecovery:
		img, _ := image(b.lay.AppStart, imageSize)
		c.Space = img + secs[b.lay.RecA] + secs[b.lay.RecB] + b.lay.journalLen + counter
		blocks := 0
		if blockSize > 0 {
			blocks = (imageSize + blockSize - 1) / blockSize
		}
		c.Cache = (recBodyLen+a-1)/a*a + (blocks+7)/8
	case NaiveInplace:
		img, _ := image(b.lay.AppStart, imageSize)
		c.Space = img + counter
	case ABOverwrite, ABDirect, ABSwap:
		ss := b.sectorSize()
		n := (imageSize + ss - 1) / ss
		c.Space = 2*(n*ss+ss) + counter
		c.Cache = b.trailerLen()
		if b.cfg.Strategy == ABSwap {
			c.Space += 2 * ss
			c.Cache += swapHeaderLen + 3*n*a
		}
	}
	return c
}

// armed is a cut armed with ArmCut: its flash operation, until it fires
// or is disarmed.
type armed struct {
	mu sync.Mutex
	op uint64 // 0: none
}

// ArmCut arms a power cut at the flash operation afterOps operations from
// now (1: the next one), recorded like CutAtFlashOp's (cause "flash-op").
// notify, if not nil, is called in a new goroutine with the board's
// record once the cut has happened. disarm cancels the cut if it has not
// fired; it is safe to call after it fired, and more than once. A cut
// that has not fired when the board loses power otherwise (or is
// disarmed) never fires later: it belongs to the power-on period it was
// armed in (a software reset keeps it, so it can land in the
// bootloader). Arming replaces any cut armed before, as CutAtFlashOp
// does.
func (b *Board) ArmCut(afterOps uint64, notify func(CutRecord)) (disarm func()) {
	afterOps = max(afterOps, 1)
	b.arm.mu.Lock()
	op := b.fl.Ops() + afterOps
	b.arm.op = op
	b.fl.CutAtOp(op, func(c flash.Cut) {
		b.arm.mu.Lock()
		if b.arm.op == op {
			b.arm.op = 0
		}
		b.arm.mu.Unlock()
		rec, ok := b.cutPower("flash-op", &c)
		if ok && notify != nil {
			go notify(rec)
		}
	})
	b.arm.mu.Unlock()
	return func() { b.disarm(op) }
}

// disarm cancels the cut ArmCut armed at op, if it is still armed.
func (b *Board) disarm(op uint64) {
	b.arm.mu.Lock()
	defer b.arm.mu.Unlock()
	if b.arm.op != op {
		return
	}
	b.arm.op = 0
	b.fl.DisarmAt(op)
}

// disarmAll cancels the cut ArmCut armed, if any: the power it was armed
// for is gone.
func (b *Board) disarmAll() {
	b.arm.mu.Lock()
	defer b.arm.mu.Unlock()
	if b.arm.op != 0 {
		b.fl.DisarmAt(b.arm.op)
		b.arm.op = 0
	}
}
