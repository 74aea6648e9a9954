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
// layouts:
//
//	boot     the first sectors, at least 16 KiB: the never-updated
//	         bootloader (write-protected)
//	recA     one sector: recovery record, copy A
//	recB     one sector: recovery record, copy B
//	journal  one sector: one bit per block, programmed once the block is
//	         durably written
//	counter  one sector: the anti-rollback counter, an append-only log
//	app      the rest: the application image slot (header + payload)
type Layout struct {
	BootEnd          int
	RecA, RecB       int // sector indexes
	Journal, Counter int
	AppStart, AppEnd int
	recAOff, recBOff int
	journalOff       int
	journalLen       int
	counterOff       int
	counterLen       int
}

const minBoot = 16 << 10

func computeLayout(f *flash.Flash) (Layout, error) {
	var l Layout
	secs := f.Config().Sectors
	i, off := 0, 0
	for off < minBoot && i < len(secs) {
		off += secs[i]
		i++
	}
	if i+4 >= len(secs) {
		return l, fmt.Errorf("sim: flash of %d sectors too small for bootloader, records, journal, counter and an app slot", len(secs))
	}
	l.BootEnd = off
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
