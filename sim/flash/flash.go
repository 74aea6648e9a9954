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
//
// Marginal supply: below a part's minimum programming voltage the charge
// pump is weak, and a program operation may leave bits that should have
// been programmed at the erased value while it still reports success, as
// on parts without program verify. SetMarginal sets the probability of that
// per bit (0: a normal supply); Stats counts the write units programmed so
// and the bits left behind. Erase is not affected.
package flash

import (
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
	prog    int64  // bytes programmed (torn write units included)
	erased  int64  // bytes erased (torn erases included)
	tripAt  uint64 // 0: none; otherwise op number (1-based) to tear
	onTrip  func(Cut)
	onBusy  func(bool)
	onOp    func(OpKind)
	weakP   float64 // probability that a bit to program stays erased (SetMarginal)
	weakU   uint64  // write units programmed while marginal
	weakB   uint64  // bits those left at the erased value
	rng     *rand.Rand
	file    *os.File
	wearBuf []byte // persistCounters' encoding buffer
	cuts    []Cut
	cur     Cut // operation in progress; Kind OpNone when idle
}

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

// Stats are a device's cumulative counters since it was made.
type Stats struct {
	Ops        uint64   // operations started (write units programmed, sectors erased)
	Programmed int64    // bytes programmed, a torn write unit included
	Erased     int64    // bytes erased, a torn erase included
	Wear       []uint32 // erase count per sector (persisted with the contents)
	// WeakUnits counts the write units programmed while the supply was
	// marginal (SetMarginal), WeakBits the bits they left at the erased
	// value although the data asked for them to be programmed.
	WeakUnits uint64
	WeakBits  uint64
}

// Stats returns the device's counters, read at one instant.
func (f *Flash) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{Ops: f.ops, Programmed: f.prog, Erased: f.erased, Wear: append([]uint32(nil), f.wear...), WeakUnits: f.weakU, WeakBits: f.weakB}
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

// OnOp sets a function called with the kind of an erase or program call
// when it starts and with OpNone when it ends (or is cut), as OnBusy's
// function is: the board's supply current follows it.
func (f *Flash) OnOp(fn func(OpKind)) {
	f.mu.Lock()
	f.onOp = fn
	f.mu.Unlock()
}

// SetMarginal models the supply between the brownout-reset threshold and
// the minimum programming voltage: from now on every bit a program
// operation should move away from the erased value stays erased with
// probability p (drawn from the seeded generator, so runs repeat), and the
// operation still reports success. 0 restores a normal supply; p is
// clamped to [0, 1]. Torn writes (a cut) are not affected further.
func (f *Flash) SetMarginal(p float64) {
	if !(p > 0) { // NaN too
		p = 0
	}
	f.mu.Lock()
	f.weakP = min(p, 1)
	f.mu.Unlock()
}

// Marginal returns the probability SetMarginal set.
func (f *Flash) Marginal() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.weakP
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

// DisarmAt disarms the cut armed with CutAtOp if it is still armed at
// operation op, and reports whether it was: a caller that armed op can
// cancel its own cut without touching one armed since by someone else.
func (f *Flash) DisarmAt(op uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if op == 0 || f.tripAt != op {
		return false
	}
	f.tripAt, f.onTrip = 0, nil
	return true
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

// busy reports an erase or program call starting (k its kind) or ending
// (OpNone) to the OnBusy and OnOp functions.
func (f *Flash) busy(k OpKind) {
	f.mu.Lock()
	fn, op := f.onBusy, f.onOp
	f.mu.Unlock()
	if op != nil {
		op(k) // first: whoever sees the busy edge sees the flash's current too
	}
	if fn != nil {
		fn(k != OpNone)
	}
}
