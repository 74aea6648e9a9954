package sim

// The bootloader's flash-resident state: the two recovery record copies,
// the block journal and the anti-rollback counter log (see Layout).

func (b *Board) entryLen() int { return max(8, b.cfg.WriteAlign) }

// readCounter returns the anti-rollback counter and the number of log slots used.
func (b *Board) readCounter() (uint32, int) {
	buf := make([]byte, b.lay.counterLen)
	b.fl.Read(b.lay.counterOff, buf)
	n := b.entryLen()
	erased := b.fl.Config().Erased
	var ctr uint32
	used := 0
	for off := 0; off+n <= len(buf); off += n {
		e := buf[off : off+n]
		if allErased(e, erased) {
			break
		}
		used++
		v, c := leU32(e), leU32(e[4:])
		if v == ^c && v > ctr {
			ctr = v
		}
	}
	return ctr, used
}

func (b *Board) writeCounter(v uint32, used int) error {
	n := b.entryLen()
	if (used+1)*n > b.lay.counterLen {
		if err := b.fl.EraseSector(b.lay.Counter); err != nil {
			return err
		}
		used = 0
	}
	return b.fl.Program(b.lay.counterOff+used*n, counterEntry(v, b.cfg.WriteAlign, b.fl.Config().Erased))
}

func leU32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// activeRecord returns the newest valid recovery record and its sector.
func (b *Board) activeRecord() (*record, int) {
	var best *record
	sector := -1
	for _, s := range []struct{ idx, off int }{{b.lay.RecA, b.lay.recAOff}, {b.lay.RecB, b.lay.recBOff}} {
		buf := make([]byte, recBodyLen)
		b.fl.Read(s.off, buf)
		r, err := decodeRecord(buf)
		if err != nil {
			continue
		}
		if best == nil || r.Gen > best.Gen {
			best, sector = r, s.idx
		}
	}
	return best, sector
}

func (b *Board) recordOff(sector int) int {
	if sector == b.lay.RecA {
		return b.lay.recAOff
	}
	return b.lay.recBOff
}

// recordDone reads the completion marker: fully programmed means done. A
// torn marker counts as not done, so the image is verified again.
func (b *Board) recordDone(sector int) bool {
	m := make([]byte, b.cfg.WriteAlign)
	b.fl.Read(b.recordOff(sector)+doneOff, m)
	full := ^b.fl.Config().Erased
	for _, c := range m {
		if c != full {
			return false
		}
	}
	return true
}

func (b *Board) markDone(sector int) error {
	m := make([]byte, b.cfg.WriteAlign)
	for i := range m {
		m[i] = ^b.fl.Config().Erased
	}
	return b.fl.Program(b.recordOff(sector)+doneOff, m)
}

// journalNext is the first block whose journal bit is not programmed.
func (b *Board) journalNext(rec *record) uint32 {
	n := rec.blocks()
	buf := make([]byte, (n+7)/8)
	b.fl.Read(b.lay.journalOff, buf)
	erased := b.fl.Config().Erased
	for i := uint32(0); i < n; i++ {
		bit := buf[i/8] >> (i % 8) & 1
		if bit == erased&1 {
			return i
		}
	}
	return n
}

// journalMark programs block i's journal bit: the write unit holding the
// bit, with only that bit moved away from the erased value.
func (b *Board) journalMark(i uint32) error {
	a := b.cfg.WriteAlign
	byteOff := int(i / 8)
	unit := byteOff / a * a
	word := make([]byte, a)
	if err := b.fl.Read(b.lay.journalOff+unit, word); err != nil {
		return err
	}
	if b.fl.Config().Erased == 0xFF {
		word[byteOff-unit] &^= 1 << (i % 8)
	} else {
		word[byteOff-unit] |= 1 << (i % 8)
	}
	return b.fl.Program(b.lay.journalOff+unit, word)
}
