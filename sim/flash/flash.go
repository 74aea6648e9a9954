// Package flash models the NOR flash of a small microcontroller for the
// simulated board: a sector layout (uniform or mixed), a write alignment, an
// erased value, erase and program times scaled by a time-scale factor, wear
// counters per sector, persistence to a file, and — the point of it all —
// power loss at any instant.
//
// NOR rules enforced here: erase sets a whole sector to the erased value;
// programming can only move bits away from the erased value (an attempt to move
// a bit back is ErrNotErased, as on parts whose controller reports a
// programming error); accesses must be aligned to the write unit and inside the
// device; the protected prefix (the bootloader) cannot be erased or programmed.
//
// Power loss: every word program and every sector erase is one numbered
// operation. A cut can be armed at an operation number (CutAtOp), for sweeps
// that cut at every operation of an update, or made asynchronously (PowerOff)
// at any time. A cut during a word program leaves a random subset of that
// word's changing bits programmed; a cut during a sector erase leaves a random
// subset of the sector's programmed bits erased. Nothing after the cut happens:
// every later operation fails with ErrPowerLost until PowerOn.
package flash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// Sentinel errors; wrapped with the address and operation.
var (
	ErrPowerLost  = errors.New("flash: power lost")
	ErrAlign      = errors.New("flash: misaligned access")
	ErrRange      = errors.New("flash: access out of range")
	ErrProtected  = errors.New("flash: write to protected region")
	ErrNotErased  = errors.New("flash: programming would move bits toward the erased value")
	ErrBadConfig  = errors.New("flash: bad configuration")
	ErrFileLayout = errors.New("flash: persisted file does not match the layout")
)

// Config describes a flash device.
type Config struct {
	// Sectors lists the erase sector sizes from address 0 upwards.
	Sectors []int
	// WriteAlign is the program unit in bytes: 1, 4 or 8.
	WriteAlign int
	// Erased is the value of an erased byte: 0xFF or 0x00.
	Erased byte
	// Protected is the length of the write-protected prefix (the
	// bootloader), a multiple of the sector boundaries.
	Protected int
	// ProgramTime is the time to program one write unit; EraseTime the time
	// to erase 4 KiB (larger sectors take proportionally longer).
	ProgramTime, EraseTime time.Duration
	// TimeScale multiplies every duration; 0 makes operations instant.
	TimeScale float64
	// Path persists the contents and wear counters; "" keeps them in memory.
	Path string
	// Seed makes torn writes and erases repeatable.
	Seed uint64
}

// Uniform returns a layout of size bytes in sectors of sector bytes.
func Uniform(size, sector int) []int {
	n := size / sector
	s := make([]int, n)
	for i := range s {
		s[i] = sector
	}
	return s
}

// STM32F4Like returns the mixed layout of an STM32F4 bank of size bytes:
// four 16 KiB sectors, one 64 KiB sector, then 128 KiB sectors.
func STM32F4Like(size int) []int {
	s := []int{16 << 10, 16 << 10, 16 << 10, 16 << 10, 64 << 10}
	for total := 128 << 10; total < size; total += 128 << 10 {
		s = append(s, 128<<10)
	}
	return s
}

// OpKind is the kind of a flash operation.
type OpKind string

// Operation kinds recorded with a cut.
const (
	OpNone    OpKind = "idle"
	OpProgram OpKind = "program"
	OpErase   OpKind = "erase"
)

// Cut records what the flash was doing when power was lost.
type Cut struct {
	// Op is the number of the operation that was torn (or the next one when
	// the flash was idle).
	Op   uint64
	Kind OpKind
	// Addr is the word or sector address being written or erased.
	Addr int
	// Torn is true when an operation was interrupted part-way.
	Torn bool
}

// Flash is a simulated NOR flash device. It is safe for concurrent use;
// operations are serialised as on a single flash controller.
type Flash struct {
	cfg     Config
	size    int
	starts  []int // sector start addresses
	opMu    sync.Mutex
	mu      sync.Mutex // guards the fields below
	data    []byte
	wear    []uint32
	powered bool
	cutCh   chan struct{}
	ops     uint64
	tripAt  uint64 // 0: none; otherwise op number (1-based) to tear
	onTrip  func(Cut)
	onBusy  func(bool)
	rng     *rand.Rand
	file    *os.File
	wearBuf []byte // persistCounters' encoding buffer
	cuts    []Cut
	cur     Cut // operation in progress; Kind OpNone when idle
}

const fileMagic = 0x46554446 // "FDUF"

// New makes a flash device. With cfg.Path set, an existing file is loaded
// (and must match the layout) or a new one is written fully erased.
func New(cfg Config) (*Flash, error) {
	if cfg.WriteAlign != 1 && cfg.WriteAlign != 4 && cfg.WriteAlign != 8 {
		return nil, fmt.Errorf("%w: write alignment %d (want 1, 4 or 8)", ErrBadConfig, cfg.WriteAlign)
	}
	if cfg.Erased != 0xFF && cfg.Erased != 0x00 {
		return nil, fmt.Errorf("%w: erased value %#x (want 0xff or 0x00)", ErrBadConfig, cfg.Erased)
	}
	if len(cfg.Sectors) == 0 {
		return nil, fmt.Errorf("%w: no sectors", ErrBadConfig)
	}
	f := &Flash{cfg: cfg, powered: true, cutCh: make(chan struct{}), rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed))}
	protectedOK := cfg.Protected == 0
	for _, s := range cfg.Sectors {
		if s <= 0 || s%cfg.WriteAlign != 0 {
			return nil, fmt.Errorf("%w: sector size %d", ErrBadConfig, s)
		}
		f.starts = append(f.starts, f.size)
		f.size += s
		if f.size == cfg.Protected {
			protectedOK = true
		}
	}
	if !protectedOK {
		return nil, fmt.Errorf("%w: protected length %d is not on a sector boundary", ErrBadConfig, cfg.Protected)
	}
	f.data = make([]byte, f.size)
	f.wear = make([]uint32, len(cfg.Sectors))
	fill(f.data, cfg.Erased)
	if cfg.Path != "" {
		if err := f.openFile(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

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

// fill sets every byte of p to v (memclr for 0, doubling copies
// otherwise).
func fill(p []byte, v byte) {
	if v == 0 {
		clear(p)
		return
	}
	if len(p) == 0 {
		return
	}
	p[0] = v
	for n := 1; n < len(p); n *= 2 {
		copy(p[n:], p[:n])
	}
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

// Size is the device size in bytes.
func (f *Flash) Size() int { return f.size }

// Config returns the device configuration.
func (f *Flash) Config() Config { return f.cfg }

// Sector returns the index, start and size of the sector holding off.
func (f *Flash) Sector(off int) (idx, start, size int, err error) {
	if off < 0 || off >= f.size {
		return 0, 0, 0, fmt.Errorf("%w: %#x", ErrRange, off)
	}
	lo, hi := 0, len(f.starts)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if f.starts[mid] <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, f.starts[lo], f.cfg.Sectors[lo], nil
}

// NumSectors is the number of erase sectors.
func (f *Flash) NumSectors() int { return len(f.starts) }

// Wear returns a copy of the per-sector erase counters.
func (f *Flash) Wear() []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint32(nil), f.wear...)
}

// Ops is the number of operations started since the device was made.
func (f *Flash) Ops() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops
}

func (f *Flash) setCur(k OpKind, addr int) {
	f.mu.Lock()
	f.cur = Cut{Op: f.ops + 1, Kind: k, Addr: addr}
	f.mu.Unlock()
}

// InProgress returns the erase or program call under way (Kind OpNone when
// the flash is idle), with the number of the next operation.
func (f *Flash) InProgress() Cut {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cur
	if c.Kind == OpNone {
		c.Op = f.ops + 1
	}
	return c
}

// Cuts returns the record of every power loss seen by the device.
func (f *Flash) Cuts() []Cut {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Cut(nil), f.cuts...)
}

// Powered reports whether the device has power.
func (f *Flash) Powered() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.powered
}

// OnBusy sets a function called with true when an erase or program call
// starts and false when it ends (or is cut): the board's "flash busy" pin.
func (f *Flash) OnBusy(fn func(bool)) {
	f.mu.Lock()
	f.onBusy = fn
	f.mu.Unlock()
}

// CutAtOp arms a power cut at operation number op (counted from the device's
// creation, 1-based): that operation is torn and power is lost. onCut, if not
// nil, is called (without the flash's locks held) right after the cut so the
// board can drop the rest of its power domain. op 0 disarms.
func (f *Flash) CutAtOp(op uint64, onCut func(Cut)) {
	f.mu.Lock()
	f.tripAt, f.onTrip = op, onCut
	f.mu.Unlock()
}

// PowerOff cuts power now. An operation in progress is torn in proportion
// to the time it had run.
func (f *Flash) PowerOff() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.powered {
		return
	}
	f.powered = false
	close(f.cutCh)
}

// PowerOn restores power.
func (f *Flash) PowerOn() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.powered {
		return
	}
	f.powered = true
	f.cutCh = make(chan struct{})
}

// Read copies flash contents at off into p. It works unpowered too: the
// caller (the board) decides who may read.
func (f *Flash) Read(off int, p []byte) error {
	if off < 0 || len(p) > f.size || off > f.size-len(p) {
		return fmt.Errorf("%w: read %d bytes at %#x", ErrRange, len(p), off)
	}
	f.mu.Lock()
	copy(p, f.data[off:])
	f.mu.Unlock()
	return nil
}

// Bytes returns a copy of the whole device.
func (f *Flash) Bytes() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.data...)
}

func (f *Flash) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * f.cfg.TimeScale)
}

func (f *Flash) busy(b bool) {
	f.mu.Lock()
	fn := f.onBusy
	f.mu.Unlock()
	if fn != nil {
		fn(b)
	}
}

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
	f.busy(true)
	defer f.busy(false)
	f.setCur(OpProgram, off)
	defer f.setCur(OpNone, 0)
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
		if f.tripAt != 0 && f.ops == f.tripAt {
			cut := f.tearProgram(off+w*a, data[w*a:(w+1)*a], f.ops)
			f.cuts = append(f.cuts, cut)
			f.powered = false
			close(f.cutCh)
			fn := f.onTrip
			f.tripAt, f.onTrip = 0, nil
			err := f.persist(off, (w+1)*a)
			f.mu.Unlock()
			if fn != nil {
				fn(cut)
			}
			return errors.Join(fmt.Errorf("%w: programming %#x", ErrPowerLost, off+w*a), err)
		}
		o := off + w*a
		for i := 0; i < a; i++ {
			f.data[o+i] = f.apply(f.data[o+i], data[w*a+i])
		}
		done++
		f.mu.Unlock()
	}
	f.mu.Lock()
	err := f.persist(off, len(data))
	f.mu.Unlock()
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
			f.ops = f.tripAt
			cut := f.tearProgram(off+w*a, data[w*a:(w+1)*a], f.ops)
			f.cuts = append(f.cuts, cut)
			f.powered = false
			close(f.cutCh)
			fn := f.onTrip
			f.tripAt, f.onTrip = 0, nil
			err := f.persist(off, (w+1)*a)
			f.mu.Unlock()
			if fn != nil {
				fn(cut)
			}
			return errors.Join(fmt.Errorf("%w: programming %#x", ErrPowerLost, off+w*a), err)
		}
		f.applyWords(f.data[off+done*a:off+(done+n)*a], data[done*a:(done+n)*a])
		f.ops += uint64(n)
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
	f.busy(true)
	defer f.busy(false)
	f.setCur(OpErase, start)
	defer f.setCur(OpNone, 0)
	f.mu.Lock()
	if !f.powered {
		f.cuts = append(f.cuts, Cut{Op: f.ops + 1, Kind: OpNone, Addr: start})
		f.mu.Unlock()
		return fmt.Errorf("%w: before erasing sector at %#x", ErrPowerLost, start)
	}
	f.ops++
	op := f.ops
	f.wear[idx]++
	if f.tripAt != 0 && op == f.tripAt {
		cut := f.tearErase(start, size, f.rng.Float64(), op)
		f.cuts = append(f.cuts, cut)
		f.powered = false
		close(f.cutCh)
		fn := f.onTrip
		f.tripAt, f.onTrip = 0, nil
		err := errors.Join(f.persist(start, size), f.persistCounters(idx, idx+1))
		f.mu.Unlock()
		if fn != nil {
			fn(cut)
		}
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
