package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/fudbench/fudbench/sim/flash"
)

// Layout is where the bootloader keeps things in flash. It is derived
// from the sector list so that the same rules hold on uniform and mixed
// layouts. The in-place strategies (inplace-recovery, naive-inplace) use:
//
//	boot     the first sectors, at least 16 KiB: the never-updated
//	         bootloader (write-protected)
//	recA     one sector: recovery record, copy A
//	recB     one sector: recovery record, copy B
//	journal  one sector: one bit per block, programmed once the block is
//	         durably written
//	counter  one sector: the anti-rollback counter, an append-only log
//	app      the rest: the application image slot (header + payload)
//
// The A/B strategies (ab-overwrite, ab-swap, ab-direct; uniform sectors
// only) use:
//
//	boot       as above
//	counter    one sector, as above
//	primary    image sectors, then one trailer sector (slot A of ab-direct)
//	secondary  as many image sectors, then one trailer sector (slot B)
//	scratch    one sector (ab-swap only): a sector's copy during a swap
//	status     one sector (ab-swap only): the swap's progress
//
// The two slots split what the others leave evenly (a sector left over
// stays unused at the end). AppStart and AppEnd are the primary slot's
// image sectors, without its trailer, on every layout: the probe programs
// an image there and AppSize is the image capacity.
type Layout struct {
	BootEnd          int
	RecA, RecB       int // sector indexes; -1 on A/B layouts
	Journal, Counter int // Journal is -1 on A/B layouts
	AppStart, AppEnd int
	// Primary and Secondary are the image slots of an A/B layout (zero on
	// in-place layouts); Scratch and Status the sectors only ab-swap has
	// (-1 otherwise).
	Primary, Secondary Slot
	Scratch, Status    int
	recAOff, recBOff   int
	journalOff         int
	journalLen         int
	counterOff         int
	counterLen         int
}

// Slot is one image slot of an A/B layout: image sectors followed by a
// trailer sector.
type Slot struct {
	Start, End int // the image sectors: [Start, End)
	First      int // index of the first image sector
	Sectors    int // number of image sectors
	Trailer    int // index of the trailer sector
	TrailerOff int // offset of the trailer sector
}

// Size is the slot's image capacity.
func (s Slot) Size() int { return s.End - s.Start }

// AB reports whether the layout is an A/B one.
func (l Layout) AB() bool { return l.Primary.Sectors > 0 }

const minBoot = 16 << 10

func computeLayout(f *flash.Flash, st Strategy) (Layout, error) {
	l := Layout{Scratch: -1, Status: -1}
	secs := f.Config().Sectors
	i, off := 0, 0
	for off < minBoot && i < len(secs) {
		off += secs[i]
		i++
	}
	l.BootEnd = off
	if st.AB() {
		return l, abLayout(&l, f, st, i, off)
	}
	if i+4 >= len(secs) {
		return l, fmt.Errorf("sim: flash of %d sectors too small for bootloader, records, journal, counter and an app slot", len(secs))
	}
	l.RecA, l.recAOff = i, off
	off += secs[i]
	l.RecB, l.recBOff = i+1, off
	off += secs[i+1]
	l.Journal, l.journalOff, l.journalLen = i+2, off, secs[i+2]
	off += secs[i+2]
	l.Counter, l.counterOff, l.counterLen = i+3, off, secs[i+3]
	off += secs[i+3]
	l.AppStart, l.AppEnd = off, f.Size()
	return l, nil
}

// abLayout lays out an A/B strategy's sectors after the bootloader, which
// ends at sector i, offset off.
func abLayout(l *Layout, f *flash.Flash, st Strategy, i, off int) error {
	secs := f.Config().Sectors
	extra := 0 // sectors besides the counter and the two slots
	if st == ABSwap {
		extra = 2
	}
	k := (len(secs)-i-1-extra)/2 - 1 // image sectors per slot
	if k < 1 {
		return fmt.Errorf("sim: flash of %d sectors too small for bootloader, counter and two slots of an image sector and a trailer sector each (%s)", len(secs), st)
	}
	l.RecA, l.RecB, l.Journal = -1, -1, -1
	l.Counter, l.counterOff, l.counterLen = i, off, secs[i]
	off += secs[i]
	i++
	slot := func() Slot {
		s := Slot{Start: off, First: i, Sectors: k}
		for range k {
			off += secs[i]
			i++
		}
		s.End, s.Trailer, s.TrailerOff = off, i, off
		off += secs[i]
		i++
		return s
	}
	l.Primary = slot()
	l.Secondary = slot()
	if st == ABSwap {
		l.Scratch = i
		l.Status = i + 1
		a := f.Config().WriteAlign
		if need := swapHeaderLen + 3*k*a; need > secs[i+1] {
			return fmt.Errorf("sim: swap status sector of %d bytes too small for %d image sectors (%d bytes of status); use larger sectors or a smaller flash", secs[i+1], k, need)
		}
	}
	l.AppStart, l.AppEnd = l.Primary.Start, l.Primary.End
	return nil
}

// AppSize is the capacity of the application slot.
func (l Layout) AppSize() int { return l.AppEnd - l.AppStart }

// JournalBlocks is the largest number of blocks one transfer can journal.
func (l Layout) JournalBlocks() int { return l.journalLen * 8 }

// record is the power-safe recovery record: what the app's setup step
// caches so the recovery bootloader can resume on its own. It is written
// to the sector not holding the current record, so a cut while writing it
// leaves the previous one valid; the newest valid copy wins.
type record struct {
	Gen    uint32 // generation, increments per write
	Size   uint32
	SZX    uint8
	Tag    []byte
	Digest [32]byte
	// Cached network and security context, reused by recovery as is.
	Peer        string // the bench's address as seen at prepare
	PSKIdentity []byte // DTLS identity that prepared the update; nil over UDP
}

// maxPSKIdentity is the room a record has for the identity that prepared
// the update: a longer one could not be matched again in recovery.
const maxPSKIdentity = 32

const (
	recMagic   = 0x43455246 // "FREC"
	recBodyLen = 4 + 4 + 4 + 1 + 1 + 8 + 32 + 1 + 64 + 1 + 32 + 4
	// doneOff is the offset of the completion marker inside a record
	// sector: one write unit, programmed when the update has been verified.
	doneOff = 256
)

func (r *record) encode(align int, erased byte) []byte {
	n := (recBodyLen + align - 1) / align * align
	b := make([]byte, n)
	for i := range b {
		b[i] = erased
	}
	p := b[:0]
	p = binary.LittleEndian.AppendUint32(p, recMagic)
	p = binary.LittleEndian.AppendUint32(p, r.Gen)
	p = binary.LittleEndian.AppendUint32(p, r.Size)
	p = append(p, r.SZX, byte(len(r.Tag)))
	var tag [8]byte
	copy(tag[:], r.Tag)
	p = append(p, tag[:]...)
	p = append(p, r.Digest[:]...)
	var peer [64]byte
	copy(peer[:], r.Peer)
	p = append(p, byte(min(len(r.Peer), 64)))
	p = append(p, peer[:]...)
	var id [32]byte
	copy(id[:], r.PSKIdentity)
	p = append(p, byte(min(len(r.PSKIdentity), maxPSKIdentity)))
	p = append(p, id[:]...)
	p = binary.LittleEndian.AppendUint32(p, crc32.ChecksumIEEE(p))
	copy(b, p)
	return b
}

var errNoRecord = errors.New("no valid record")

func decodeRecord(b []byte) (*record, error) {
	if len(b) < recBodyLen || binary.LittleEndian.Uint32(b) != recMagic {
		return nil, errNoRecord
	}
	body := b[:recBodyLen-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(b[recBodyLen-4:]) {
		return nil, fmt.Errorf("%w: crc mismatch", errNoRecord)
	}
	r := &record{
		Gen:  binary.LittleEndian.Uint32(b[4:]),
		Size: binary.LittleEndian.Uint32(b[8:]),
		SZX:  b[12],
	}
	tl := int(b[13])
	if tl < 1 || tl > 8 || r.SZX > 6 || r.Size == 0 {
		return nil, fmt.Errorf("%w: bad fields", errNoRecord)
	}
	r.Tag = append([]byte(nil), b[14:14+tl]...)
	copy(r.Digest[:], b[22:54])
	pl := int(b[54])
	r.Peer = string(b[55 : 55+min(pl, 64)])
	il := int(b[119])
	if il > 0 {
		r.PSKIdentity = append([]byte(nil), b[120:120+min(il, 32)]...)
	}
	return r, nil
}

func (r *record) blocks() uint32 {
	bs := uint32(16) << r.SZX
	return (r.Size + bs - 1) / bs
}

// counterEntry is one anti-rollback counter log entry: the value and its
// complement, so a torn entry is recognised and ignored.
func counterEntry(v uint32, align int, erased byte) []byte {
	n := max(8, align)
	b := make([]byte, n)
	for i := range b {
		b[i] = erased
	}
	binary.LittleEndian.PutUint32(b, v)
	binary.LittleEndian.PutUint32(b[4:], ^v)
	return b
}

func allErased(b []byte, erased byte) bool {
	for _, c := range b {
		if c != erased {
			return false
		}
	}
	return true
}
