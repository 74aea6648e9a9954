package flash

import (
	"encoding/binary"
	"fmt"
	"os"
)

const fileMagic = 0x46554446 // "FDUF"

func (f *Flash) trailerLen() int { return 8 + 4*len(f.wear) }

func (f *Flash) openFile() error {
	file, err := os.OpenFile(f.cfg.Path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("flash: open %s: %w", f.cfg.Path, err)
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return fmt.Errorf("flash: stat %s: %w", f.cfg.Path, err)
	}
	want := int64(f.size + f.trailerLen())
	switch st.Size() {
	case 0:
		f.file = file
		if err := f.persist(0, f.size); err != nil {
			file.Close()
			return err
		}
		return f.persistWear()
	case want:
		// The trailer first: a file of another layout leaves f.data as
		// it was.
		tr := make([]byte, f.trailerLen())
		if _, err := file.ReadAt(tr, int64(f.size)); err != nil {
			file.Close()
			return fmt.Errorf("flash: read %s: %w", f.cfg.Path, err)
		}
		if binary.LittleEndian.Uint32(tr) != fileMagic || int(binary.LittleEndian.Uint32(tr[4:])) != len(f.wear) {
			file.Close()
			return fmt.Errorf("%w: %s", ErrFileLayout, f.cfg.Path)
		}
		if _, err := file.ReadAt(f.data, 0); err != nil {
			file.Close()
			return fmt.Errorf("flash: read %s: %w", f.cfg.Path, err)
		}
		for i := range f.wear {
			f.wear[i] = binary.LittleEndian.Uint32(tr[8+4*i:])
		}
		f.file = file
		return nil
	default:
		file.Close()
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrFileLayout, f.cfg.Path, st.Size(), want)
	}
}

// persist writes data[off:off+n] to the backing file; f.mu held or not shared.
func (f *Flash) persist(off, n int) error {
	if f.file == nil || n == 0 {
		return nil
	}
	if _, err := f.file.WriteAt(f.data[off:off+n], int64(off)); err != nil {
		return fmt.Errorf("flash: persist %s: %w", f.cfg.Path, err)
	}
	return nil
}

func (f *Flash) persistWear() error {
	if f.file == nil {
		return nil
	}
	tr := make([]byte, f.trailerLen())
	binary.LittleEndian.PutUint32(tr, fileMagic)
	binary.LittleEndian.PutUint32(tr[4:], uint32(len(f.wear)))
	for i, w := range f.wear {
		binary.LittleEndian.PutUint32(tr[8+4*i:], w)
	}
	if _, err := f.file.WriteAt(tr, int64(f.size)); err != nil {
		return fmt.Errorf("flash: persist %s: %w", f.cfg.Path, err)
	}
	return nil
}

// persistCounters writes the wear counters of sectors [from, to) to the
// backing file's trailer (its header is written once, with the file);
// f.mu held.
func (f *Flash) persistCounters(from, to int) error {
	if f.file == nil || from >= to {
		return nil
	}
	n := 4 * (to - from)
	if cap(f.wearBuf) < n {
		f.wearBuf = make([]byte, 4*len(f.wear))
	}
	buf := f.wearBuf[:n]
	for i := from; i < to; i++ {
		binary.LittleEndian.PutUint32(buf[4*(i-from):], f.wear[i])
	}
	if _, err := f.file.WriteAt(buf, int64(f.size+8+4*from)); err != nil {
		return fmt.Errorf("flash: persist %s: %w", f.cfg.Path, err)
	}
	return nil
}

// Close releases the backing file.
func (f *Flash) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file == nil {
		return nil
	}
	err := f.file.Close()
	f.file = nil
	return err
}

// Load writes contents straight into the device, bypassing timing, cuts
// and protection: the factory programmer that put the bootloader there.
func (f *Flash) Load(off int, p []byte) error {
	if off < 0 || len(p) > f.size || off > f.size-len(p) {
		return fmt.Errorf("%w: load %d bytes at %#x", ErrRange, len(p), off)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	copy(f.data[off:], p)
	return f.persist(off, len(p))
}
