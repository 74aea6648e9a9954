package flash

import (
	"errors"
	"fmt"
	"time"
)

// EraseSector erases the sector with index idx. It is one operation.
func (f *Flash) EraseSector(idx int) error {
	return f.eraseSector(idx, true)
}

// eraseSector erases sector idx; persist false leaves a completed erase
// for the caller to persist (a torn one is always persisted).
func (f *Flash) eraseSector(idx int, persist bool) error {
	if idx < 0 || idx >= len(f.starts) {
		return fmt.Errorf("%w: sector %d", ErrRange, idx)
	}
	start, size := f.starts[idx], f.cfg.Sectors[idx]
	if start < f.cfg.Protected {
		return fmt.Errorf("%w: erase sector %d at %#x (bootloader ends at %#x)", ErrProtected, idx, start, f.cfg.Protected)
	}
	f.opMu.Lock()
	defer f.opMu.Unlock()
	// The operation is under way before the busy line rises and until
	// after it falls, as a bench watching the line sees it.
	f.setCur(OpErase, start)
	defer f.setCur(OpNone, 0)
	f.busy(OpErase)
	defer f.busy(OpNone)
	f.mu.Lock()
	if !f.powered {
		f.cuts = append(f.cuts, Cut{Op: f.ops + 1, Kind: OpNone, Addr: start})
		f.mu.Unlock()
		return fmt.Errorf("%w: before erasing sector at %#x", ErrPowerLost, start)
	}
	f.ops++
	op := f.ops
	f.wear[idx]++
	f.erased += int64(size)
	if f.tripAt != 0 && op == f.tripAt {
		cut := f.tearErase(start, size, f.rng.Float64(), op)
		err := f.trip(cut, func() error { return errors.Join(f.persist(start, size), f.persistCounters(idx, idx+1)) })
		return errors.Join(fmt.Errorf("%w: erasing sector at %#x", ErrPowerLost, start), err)
	}
	cutCh := f.cutCh
	f.mu.Unlock()

	if d := f.scaled(f.cfg.EraseTime * time.Duration(size) / 4096); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		began := time.Now()
		select {
		case <-t.C:
		case <-cutCh:
			f.mu.Lock()
			cut := f.tearErase(start, size, float64(time.Since(began))/float64(d), op)
			f.cuts = append(f.cuts, cut)
			err := errors.Join(f.persist(start, size), f.persistCounters(idx, idx+1))
			f.mu.Unlock()
			return errors.Join(fmt.Errorf("%w: erasing sector at %#x", ErrPowerLost, start), err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fill(f.data[start:start+size], f.cfg.Erased)
	if !persist {
		return nil
	}
	return errors.Join(f.persist(start, size), f.persistCounters(idx, idx+1))
}

// tearErase erases each programmed bit with probability frac (bounded away
// from 0 and 1 so a torn erase is always visibly partial). f.mu held.
func (f *Flash) tearErase(start, size int, frac float64, op uint64) Cut {
	frac = min(max(frac, 0.05), 0.95)
	for i := start; i < start+size; i++ {
		var mask byte
		for bit := 0; bit < 8; bit++ {
			if f.rng.Float64() < frac {
				mask |= 1 << bit
			}
		}
		if f.cfg.Erased == 0xFF {
			f.data[i] |= mask
		} else {
			f.data[i] &^= mask
		}
	}
	return Cut{Op: op, Kind: OpErase, Addr: start, Torn: true}
}

// EraseRange erases every sector overlapping [off, off+n).
func (f *Flash) EraseRange(off, n int) error {
	if n <= 0 {
		return nil
	}
	first, _, _, err := f.Sector(off)
	if err != nil {
		return err
	}
	last, _, _, err := f.Sector(off + n - 1)
	if err != nil {
		return err
	}
	// One write of the erased range and its counters at the end rather
	// than two per sector: a reflash erases most of the device.
	i := first
	for ; i <= last && err == nil; i++ {
		err = f.eraseSector(i, false)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	end := f.size
	if i < len(f.starts) {
		end = f.starts[i]
	}
	return errors.Join(err, f.persist(f.starts[first], end-f.starts[first]), f.persistCounters(first, i))
}
