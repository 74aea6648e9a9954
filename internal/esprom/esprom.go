// Package esprom is the wire format of the ESP ROM serial loader (ESP32,
// ESP8266 and their successors), shared by the bench's probe driver
// (probes/esprom) and the simulated loader (sim/esprom): SLIP framing, the
// command and response packets, the opcodes, the checksum and the ROM's
// status codes. It imports nothing of fudbench.
//
// A request is [0x00, op, len16 LE, checksum32 LE, data...]; only the
// data-carrying commands (FLASH_DATA, FLASH_DEFL_DATA, MEM_DATA) fill the
// checksum, the XOR of the payload seeded with 0xEF. A response is
// [0x01, op, len16 LE, value32 LE, data...]; its data ends with the status
// bytes: status (0 success) and error code, followed on every ROM but
// the ESP8266's by two reserved bytes. Both travel SLIP-framed: 0xC0
// ends a frame, 0xDB 0xDC stands for 0xC0 and 0xDB 0xDD for 0xDB.
package esprom

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Opcodes of the ROM loader.
const (
	OpFlashBegin     byte = 0x02
	OpFlashData      byte = 0x03
	OpFlashEnd       byte = 0x04
	OpMemBegin       byte = 0x05
	OpMemEnd         byte = 0x06
	OpMemData        byte = 0x07
	OpSync           byte = 0x08
	OpWriteReg       byte = 0x09
	OpReadReg        byte = 0x0A
	OpSPISetParams   byte = 0x0B
	OpSPIAttach      byte = 0x0D
	OpChangeBaudrate byte = 0x0F
	OpFlashDeflBegin byte = 0x10
	OpFlashDeflData  byte = 0x11
	OpFlashDeflEnd   byte = 0x12
	OpSPIFlashMD5    byte = 0x13
	OpGetSecInfo     byte = 0x14
)

// ROM error codes, the second status byte of a failed command.
const (
	ErrInvalidMessage byte = 0x05 // also the answer to an unknown command
	ErrFailedToAct    byte = 0x06
	ErrInvalidCRC     byte = 0x07
	ErrFlashWrite     byte = 0x08
	ErrFlashRead      byte = 0x09
	ErrFlashReadLen   byte = 0x0A
	ErrDeflate        byte = 0x0B
)

// Sizes and limits.
const (
	// HeaderSize is the size of a request's or response's header.
	HeaderSize = 8
	// FlashWriteSize is the block size the ROM loader takes in
	// FLASH_DATA and FLASH_DEFL_DATA (the flasher stub takes 16 KiB).
	FlashWriteSize = 0x400
	// MaxPacket bounds a decoded packet: a 16 KiB block with its
	// 16-byte data header, the packet header and some slack.
	MaxPacket = 0x4000 + 16 + HeaderSize + 64
	// ChecksumSeed seeds the data checksum.
	ChecksumSeed = 0xEF
	// SyncValue is what the ESP32 ROM answers a SYNC with in the
	// value field; a flasher stub answers 0.
	SyncValue = 0x20120707
)

// SyncData is SYNC's payload: 07 07 12 20 and 32 bytes 0x55.
var SyncData = func() []byte {
	b := []byte{0x07, 0x07, 0x12, 0x20}
	for range 32 {
		b = append(b, 0x55)
	}
	return b
}()

// Checksum is the XOR of data seeded with 0xEF.
func Checksum(data []byte) uint32 {
	c := byte(ChecksumSeed)
	for _, b := range data {
		c ^= b
	}
	return uint32(c)
}

// Request is a command sent to the loader.
type Request struct {
	Op       byte
	Checksum uint32
	Data     []byte
}

// Response is the loader's answer. Data includes the status bytes.
type Response struct {
	Op    byte
	Value uint32
	Data  []byte
}

// Errors of the decoders.
var (
	ErrShort     = errors.New("esprom: packet shorter than its header")
	ErrLength    = errors.New("esprom: length field differs from the data")
	ErrDirection = errors.New("esprom: wrong direction byte")
	ErrTooLong   = errors.New("esprom: packet too long")
	ErrSLIP      = errors.New("esprom: bad SLIP escape")
)

// Marshal is the packet of r, unframed.
func (r Request) Marshal() []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(r.Data))
	b[0], b[1] = 0x00, r.Op
	binary.LittleEndian.PutUint16(b[2:], uint16(len(r.Data)))
	binary.LittleEndian.PutUint32(b[4:], r.Checksum)
	return append(b, r.Data...)
}

// Marshal is the packet of r, unframed.
func (r Response) Marshal() []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(r.Data))
	b[0], b[1] = 0x01, r.Op
	binary.LittleEndian.PutUint16(b[2:], uint16(len(r.Data)))
	binary.LittleEndian.PutUint32(b[4:], r.Value)
	return append(b, r.Data...)
}

func decode(p []byte, dir byte) (op byte, v uint32, data []byte, err error) {
	if len(p) > MaxPacket {
		return 0, 0, nil, fmt.Errorf("%w: %d bytes", ErrTooLong, len(p))
	}
	if len(p) < HeaderSize {
		return 0, 0, nil, fmt.Errorf("%w: %d bytes", ErrShort, len(p))
	}
	if p[0] != dir {
		return 0, 0, nil, fmt.Errorf("%w: %#02x", ErrDirection, p[0])
	}
	n := int(binary.LittleEndian.Uint16(p[2:]))
	if n != len(p)-HeaderSize {
		return 0, 0, nil, fmt.Errorf("%w: says %d, has %d", ErrLength, n, len(p)-HeaderSize)
	}
	return p[1], binary.LittleEndian.Uint32(p[4:]), p[HeaderSize:], nil
}

// DecodeRequest decodes an unframed request. Data aliases p.
func DecodeRequest(p []byte) (Request, error) {
	op, v, data, err := decode(p, 0x00)
	return Request{Op: op, Checksum: v, Data: data}, err
}

// DecodeResponse decodes an unframed response. Data aliases p.
func DecodeResponse(p []byte) (Response, error) {
	op, v, data, err := decode(p, 0x01)
	return Response{Op: op, Value: v, Data: data}, err
}

// Status reads the status bytes of r's data after want bytes of
// payload: nil for success, a *StatusError for a failed command, an
// error wrapping ErrShort when the data is too short.
func (r Response) Status(want int) ([]byte, error) {
	if len(r.Data) < want+2 {
		if len(r.Data) >= 2 && r.Data[0] != 0 {
			return nil, &StatusError{Op: r.Op, Status: r.Data[0], Code: r.Data[1]}
		}
		return nil, fmt.Errorf("%w: op %#02x answered %d bytes, want %d and the status", ErrShort, r.Op, len(r.Data), want)
	}
	if st := r.Data[want:]; st[0] != 0 {
		return nil, &StatusError{Op: r.Op, Status: st[0], Code: st[1]}
	}
	return r.Data[:want], nil
}

// StatusError is a command the ROM refused.
type StatusError struct {
	Op     byte
	Status byte
	Code   byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("esprom: op %#02x failed: status %#02x, error %#02x (%s)", e.Op, e.Status, e.Code, CodeText(e.Code))
}

// CodeText names a ROM error code.
func CodeText(c byte) string {
	switch c {
	case ErrInvalidMessage:
		return "received message is invalid"
	case ErrFailedToAct:
		return "failed to act on received message"
	case ErrInvalidCRC:
		return "invalid CRC in message"
	case ErrFlashWrite:
		return "flash write error"
	case ErrFlashRead:
		return "flash read error"
	case ErrFlashReadLen:
		return "flash read length error"
	case ErrDeflate:
		return "deflate error"
	}
	return "unknown error"
}

// SLIP bytes.
const (
	slipEnd    = 0xC0
	slipEsc    = 0xDB
	slipEscEnd = 0xDC
	slipEscEsc = 0xDD
)

// AppendSLIP appends p framed: END, p escaped, END.
func AppendSLIP(dst, p []byte) []byte {
	dst = append(dst, slipEnd)
	for _, b := range p {
		switch b {
		case slipEnd:
			dst = append(dst, slipEsc, slipEscEnd)
		case slipEsc:
			dst = append(dst, slipEsc, slipEscEsc)
		default:
			dst = append(dst, b)
		}
	}
	return append(dst, slipEnd)
}

// Splitter takes bytes off the line and returns whole SLIP frames,
// unescaped. Bytes outside a frame (before its first END) are dropped;
// a frame longer than its limit is dropped whole, as is one with a bad
// escape.
type Splitter struct {
	max    int
	buf    []byte
	in     bool // inside a frame (an END was seen)
	esc    bool
	bad    bool // the current frame is dropped
	errors int
}

// NewSplitter returns a Splitter for frames of at most max bytes
// unescaped (MaxPacket if max <= 0).
func NewSplitter(max int) *Splitter {
	if max <= 0 {
		max = MaxPacket
	}
	return &Splitter{max: max}
}

// Dropped counts the frames dropped as too long or badly escaped.
func (s *Splitter) Dropped() int { return s.errors }

// Feed takes one byte; it returns a frame when b ends a non-empty one.
// The frame is valid until the next call.
func (s *Splitter) Feed(b byte) ([]byte, bool) {
	if b == slipEnd {
		if !s.in {
			s.in = true
			s.buf = s.buf[:0]
			return nil, false
		}
		f, bad := s.buf, s.bad
		s.buf, s.bad, s.esc = s.buf[:0], false, false
		if bad {
			s.errors++
			return nil, false
		}
		if len(f) == 0 {
			// Back-to-back ENDs: the second starts a frame.
			return nil, false
		}
		return f, true
	}
	if !s.in || s.bad {
		return nil, false
	}
	if s.esc {
		s.esc = false
		switch b {
		case slipEscEnd:
			b = slipEnd
		case slipEscEsc:
			b = slipEsc
		default:
			s.bad = true
			return nil, false
		}
	} else if b == slipEsc {
		s.esc = true
		return nil, false
	}
	if len(s.buf) >= s.max {
		s.bad = true
		s.buf = s.buf[:0]
		return nil, false
	}
	s.buf = append(s.buf, b)
	return nil, false
}

// Reset forgets a partial frame and waits for an END.
func (s *Splitter) Reset() {
	s.buf, s.in, s.esc, s.bad = s.buf[:0], false, false, false
}
