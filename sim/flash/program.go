package flash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Program writes data at off. off and len(data) must be multiples of the
// write unit. Each write unit is one operation.
func (f *Flash) Program(off int, data []byte) error {
	a := f.cfg.WriteAlign
	if off%a != 0 || len(data)%a != 0 {
		return fmt.Errorf("%w: program %d bytes at %#x (unit %d)", ErrAlign, len(data), off, a)
	}
	if off < 0 || len(data) > f.size || off > f.size-len(data) {
		return fmt.Errorf("%w: program %d bytes at %#x", ErrRange, len(data), off)
	}
	if off < f.cfg.Protected {
		return fmt.Errorf("%w: program at %#x (bootloader ends at %#x)", ErrProtected, off, f.cfg.Protected)
	}
	// NOR can only move bits away from the erased value: check the whole
	// request first so a refused write changes nothing.
	f.mu.Lock()
	if i := f.refused(f.data[off:off+len(data)], data); i >= 0 {
		old := f.data[off+i]
		f.mu.Unlock()
		return fmt.Errorf("%w: at %#x old %#02x new %#02x", ErrNotErased, off+i, old, data[i])
	}
	f.mu.Unlock()

	f.opMu.Lock()
	defer f.opMu.Unlock()
	// The operation is under way before the busy line rises and until
	// after it falls, as a bench watching the line sees it.
	f.setCur(OpProgram, off)
	defer f.setCur(OpNone, 0)
	f.busy(OpProgram)
	defer f.busy(OpNone)
	words := len(data) / a
	per := f.scaled(f.cfg.ProgramTime)
	if per == 0 {
		return f.programInstant(off, data)
	}
	start := time.Now()
	var timer *time.Timer
	f.mu.Lock()
	cutCh := f.cutCh
	f.mu.Unlock()
	done := 0 // words durably programmed
	for w := 0; w < words; w++ {
		if per > 0 {
			// Sleep until this word completes, or tear it on a cut.
			wait := time.Duration(w+1)*per - time.Since(start)
			if wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
					defer timer.Stop()
				} else {
					timer.Reset(wait)
				}
				select {
				case <-timer.C:
				case <-cutCh:
					f.mu.Lock()
					f.ops++
					f.prog += int64(a)
					cut := f.tearProgram(off+w*a, data[w*a:(w+1)*a], f.ops)
					f.cuts = append(f.cuts, cut)
					err := f.persist(off, (w+1)*a)
					f.mu.Unlock()
					return errors.Join(fmt.Errorf("%w: programming %#x", ErrPowerLost, off+w*a), err)
				}
			}
		}
		f.mu.Lock()
		if !f.powered && per > 0 {
			// Timed words follow each other with no idle gap: a cut seen
			// between two of them tears the one that was starting.
			f.ops++
			f.prog += int64(a)
			cut := f.tearProgram(off+w*a, data[w*a:(w+1)*a], f.ops)
			f.cuts = append(f.cuts, cut)
			err := f.persist(off, (w+1)*a)
			f.mu.Unlock()
			return errors.Join(fmt.Errorf("%w: programming %#x", ErrPowerLost, off+w*a), err)
		}
		if !f.powered {
			f.cuts = append(f.cuts, Cut{Op: f.ops + 1, Kind: OpNone, Addr: off + w*a})
			err := f.persist(off, done*a)
			f.mu.Unlock()
			return errors.Join(fmt.Errorf("%w: before programming %#x", ErrPowerLost, off+w*a), err)
		}
		f.ops++
		f.prog += int64(a)
		if f.tripAt != 0 && f.ops == f.tripAt {
			cut := f.tearProgram(off+w*a, data[w*a:(w+1)*a], f.ops)
			err := f.trip(cut, func() error { return f.persist(off, (w+1)*a) })
			return errors.Join(fmt.Errorf("%w: programming %#x", ErrPowerLost, off+w*a), err)
		}
		o := off + w*a
		if f.weakP > 0 {
			f.applyWeak(f.data[o:o+a], data[w*a:(w+1)*a])
		} else {
			for i := 0; i < a; i++ {
				f.data[o+i] = f.apply(f.data[o+i], data[w*a+i])
			}
		}
		done++
		f.mu.Unlock()
	}
	f.mu.Lock()
	err := f.persist(off, len(data))
	f.mu.Unlock()
	return err
}

// trip ends an operation at the cut armed with CutAtOp: the cut is
// recorded, the flash loses power, persist saves what the operation
// changed, and the arming caller's callback runs once the lock is
// released (it powers the board off, which takes the lock again). f.mu
// held; released on return.
func (f *Flash) trip(cut Cut, persist func() error) error {
	f.cuts = append(f.cuts, cut)
	f.powered = false
	close(f.cutCh)
	fn := f.onTrip
	f.tripAt, f.onTrip = 0, nil
	err := persist()
	f.mu.Unlock()
	if fn != nil {
		fn(cut)
	}
	return err
}

// instantChunk is how many words an instant (time scale 0) program call
// writes under one hold of the lock; a cut from another goroutine can
// land between chunks.
const instantChunk = 64

// programInstant is Program at time scale 0: words take no time, so they
// are applied a chunk at a time rather than one lock round per word. The
// operation numbering, armed cuts (CutAtOp) and cuts seen between chunks
// behave as word by word. f.opMu held.
func (f *Flash) programInstant(off int, data []byte) error {
	a := f.cfg.WriteAlign
	words := len(data) / a
	for done := 0; done < words; {
		f.mu.Lock()
		if !f.powered {
			f.cuts = append(f.cuts, Cut{Op: f.ops + 1, Kind: OpNone, Addr: off + done*a})
			err := f.persist(off, done*a)
			f.mu.Unlock()
			return errors.Join(fmt.Errorf("%w: before programming %#x", ErrPowerLost, off+done*a), err)
		}
		n := min(words-done, instantChunk)
		if f.tripAt > f.ops && f.tripAt <= f.ops+uint64(n) {
			// The armed cut tears a word of this chunk: the words before
			// it are programmed, the rest are not.
			k := int(f.tripAt - f.ops - 1)
			w := done + k
			f.applyWords(f.data[off+done*a:off+w*a], data[done*a:w*a])
			f.prog += int64(f.tripAt-f.ops) * int64(a)
			f.ops = f.tripAt
			cut := f.tearProgram(off+w*a, data[w*a:(w+1)*a], f.ops)
			err := f.trip(cut, func() error { return f.persist(off, (w+1)*a) })
			return errors.Join(fmt.Errorf("%w: programming %#x", ErrPowerLost, off+w*a), err)
		}
		f.applyWords(f.data[off+done*a:off+(done+n)*a], data[done*a:(done+n)*a])
		f.ops += uint64(n)
		f.prog += int64(n * a)
		done += n
		f.mu.Unlock()
	}
	f.mu.Lock()
	err := f.persist(off, len(data))
	f.mu.Unlock()
	return err
}

// refused returns the index of the first byte of data that would move a
// bit of old back toward the erased value, or -1.
func (f *Flash) refused(old, data []byte) int {
	i := 0
	for ; i+8 <= len(data); i += 8 {
		o, d := binary.LittleEndian.Uint64(old[i:]), binary.LittleEndian.Uint64(data[i:])
		if f.cfg.Erased == 0xFF && d&^o != 0 || f.cfg.Erased == 0x00 && o&^d != 0 {
			break
		}
	}
	for ; i < len(data); i++ {
		o, d := old[i], data[i]
		if f.cfg.Erased == 0xFF && d&^o != 0 || f.cfg.Erased == 0x00 && o&^d != 0 {
			return i
		}
	}
	return -1
}

// applyWords programs data over dst (same length). f.mu held.
func (f *Flash) applyWords(dst, data []byte) {
	if f.weakP > 0 {
		f.applyWeak(dst, data)
		return
	}
	i := 0
	for ; i+8 <= len(data); i += 8 {
		o, d := binary.LittleEndian.Uint64(dst[i:]), binary.LittleEndian.Uint64(data[i:])
		if f.cfg.Erased == 0xFF {
			binary.LittleEndian.PutUint64(dst[i:], o&d)
		} else {
			binary.LittleEndian.PutUint64(dst[i:], o|d)
		}
	}
	for ; i < len(data); i++ {
		dst[i] = f.apply(dst[i], data[i])
	}
}

// applyWeak programs data over dst (whole write units) on a marginal
// supply: each bit that should move away from the erased value stays
// where it is with probability f.weakP. f.mu held.
func (f *Flash) applyWeak(dst, data []byte) {
	a := f.cfg.WriteAlign
	for u := 0; u+a <= len(data); u += a {
		f.weakU++
		for i := u; i < u+a; i++ {
			old := dst[i]
			changing := old ^ f.apply(old, data[i])
			var lost byte
			for bit := byte(1); bit != 0 && changing != 0; bit <<= 1 {
				if changing&bit != 0 && f.rng.Float64() < f.weakP {
					lost |= bit
				}
			}
			dst[i] = old ^ (changing &^ lost)
			for ; lost != 0; lost &= lost - 1 {
				f.weakB++
			}
		}
	}
}

func (f *Flash) apply(old, b byte) byte {
	if f.cfg.Erased == 0xFF {
		return old & b
	}
	return old | b
}

// tearProgram leaves a random subset of the word's changing bits
// programmed. f.mu held.
func (f *Flash) tearProgram(addr int, word []byte, op uint64) Cut {
	for i, b := range word {
		old := f.data[addr+i]
		full := f.apply(old, b)
		changing := old ^ full
		keep := changing & byte(f.rng.Uint32())
		f.data[addr+i] = old ^ keep
	}
	return Cut{Op: op, Kind: OpProgram, Addr: addr, Torn: true}
}
