package smp

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
)

// Line prefixes and sizes of the console framing.
const (
	Start1, Start2 = 0x06, 0x09 // first line of a packet
	Cont1, Cont2   = 0x04, 0x14 // continuation line
	// LineChars is the most base64 characters on one line: 124, so that
	// a line with its prefix and '\n' fits 127 bytes (MCUboot's
	// BOOT_SERIAL_FRAME_MTU), and a multiple of 4, so each line decodes
	// on its own.
	LineChars = 124
	// DefaultMaxFrame bounds a decoded frame (length, header, body, CRC)
	// when Decoder.Max is 0.
	DefaultMaxFrame = 8192
	// MaxLine bounds one console line a LineBuffer keeps; longer lines
	// are dropped.
	MaxLine = 2048
)

// CRC16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0, no
// reflection), the CRC of the framing; crc is the running value.
func CRC16(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// FrameLen is the decoded size of the frame that carries a packet of n
// bytes (header and body): the length field, the packet and the CRC.
func FrameLen(n int) int { return 2 + n + 2 }

// Encode returns the console lines that carry a packet (header and body),
// each ending in '\n'.
func Encode(pkt []byte) []byte {
	raw := make([]byte, 0, FrameLen(len(pkt)))
	raw = binary.BigEndian.AppendUint16(raw, uint16(len(pkt)+2))
	raw = append(raw, pkt...)
	raw = binary.BigEndian.AppendUint16(raw, CRC16(0, pkt))
	text := base64.StdEncoding.EncodeToString(raw)
	lines := (len(text) + LineChars - 1) / LineChars
	out := make([]byte, 0, len(text)+3*lines)
	for i := 0; i < len(text); i += LineChars {
		if i == 0 {
			out = append(out, Start1, Start2)
		} else {
			out = append(out, Cont1, Cont2)
		}
		out = append(out, text[i:min(i+LineChars, len(text))]...)
		out = append(out, '\n')
	}
	return out
}

// IsSMPLine reports whether a console line (without '\n', leading '\r's
// allowed) is a line of the SMP framing.
func IsSMPLine(line []byte) bool {
	line = trimCR(line)
	return len(line) >= 2 && (line[0] == Start1 && line[1] == Start2 || line[0] == Cont1 && line[1] == Cont2)
}

func trimCR(line []byte) []byte {
	for len(line) > 0 && line[0] == '\r' {
		line = line[1:]
	}
	for len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line
}

// The decoder's errors carry no figures: they cost no allocation, so a
// stream of bad lines costs nothing but its reading.
var (
	errLineTooLong   = fmt.Errorf("smp: line over %d characters: %w", MaxLine, ErrTooLarge)
	errFrameTooLarge = fmt.Errorf("smp: frame over the decoder's bound: %w", ErrTooLarge)
	errBase64        = fmt.Errorf("smp: line is not base64: %w", ErrMalformed)
	errEmptyFirst    = fmt.Errorf("smp: empty first line: %w", ErrMalformed)
	errShortFrame    = fmt.Errorf("smp: frame length below a header and CRC: %w", ErrMalformed)
	errPastLength    = fmt.Errorf("smp: bytes past the frame's length: %w", ErrMalformed)
	errCRC           = fmt.Errorf("smp: CRC mismatch: %w", ErrMalformed)
)

// Decoder reassembles packets from console lines. The zero value is ready
// to use with DefaultMaxFrame.
type Decoder struct {
	// Max bounds a decoded frame (length field, packet and CRC); 0 is
	// DefaultMaxFrame. A first line announcing more is refused.
	Max int

	buf  []byte // the frame so far, length field included
	want int    // its full size once known, else 0
}

// Reset drops a partly received frame.
func (d *Decoder) Reset() { d.buf, d.want = d.buf[:0], 0 }

// Pending reports whether a frame is partly received.
func (d *Decoder) Pending() bool { return d.want != 0 || len(d.buf) > 0 }

// Line takes one console line without its '\n' (a leading or trailing
// '\r' is ignored). When the line completes a packet it returns the
// packet (header and body; its CRC checked and removed). Lines that are
// not SMP lines are ignored (nil, nil), as is a continuation line with no
// frame started. A malformed line (bad base64, a frame over Max, a frame
// longer than its length field, a bad CRC) is an error and drops the
// frame. The returned slice is valid until the next call.
func (d *Decoder) Line(line []byte) ([]byte, error) {
	line = trimCR(line)
	if !IsSMPLine(line) {
		return nil, nil
	}
	maxFrame := d.Max
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	first := line[0] == Start1
	text := line[2:]
	if len(text) > MaxLine {
		d.Reset()
		return nil, errLineTooLong
	}
	if first {
		d.Reset()
	} else if !d.Pending() {
		return nil, nil
	}
	n := base64.StdEncoding.DecodedLen(len(text))
	if len(d.buf)+n > maxFrame+2 { // +2: the padding DecodedLen counts
		d.Reset()
		return nil, errFrameTooLarge
	}
	start := len(d.buf)
	d.buf = append(d.buf, make([]byte, n)...)
	got, err := base64.StdEncoding.Decode(d.buf[start:], text)
	if err != nil {
		d.Reset()
		return nil, errBase64
	}
	d.buf = d.buf[:start+got]
	if d.want == 0 {
		if len(d.buf) < 2 {
			if first && len(d.buf) == 0 {
				d.Reset()
				return nil, errEmptyFirst
			}
			return nil, nil
		}
		l := int(binary.BigEndian.Uint16(d.buf))
		if l < HeaderLen+2 {
			d.Reset()
			return nil, errShortFrame
		}
		if l+2 > maxFrame {
			d.Reset()
			return nil, errFrameTooLarge
		}
		d.want = l + 2
	}
	switch {
	case len(d.buf) < d.want:
		return nil, nil
	case len(d.buf) > d.want:
		d.Reset()
		return nil, errPastLength
	}
	body := d.buf[2:d.want]
	d.Reset()
	if CRC16(0, body) != 0 {
		return nil, errCRC
	}
	return body[:len(body)-2], nil
}

// LineBuffer splits a byte stream into lines at '\n'. A line longer than
// MaxLine is dropped up to its '\n'. The zero value is ready to use.
type LineBuffer struct {
	buf  []byte
	skip bool // inside an over-long line
	// Dropped counts over-long lines dropped.
	Dropped int
}

// Feed appends p and calls emit with each complete line (without '\n';
// valid only during the call). It stops at emit's first error.
func (l *LineBuffer) Feed(p []byte, emit func(line []byte) error) error {
	for len(p) > 0 {
		i := indexNL(p)
		if i < 0 {
			if !l.skip {
				if len(l.buf)+len(p) > MaxLine {
					l.buf, l.skip = l.buf[:0], true
					l.Dropped++
				} else {
					l.buf = append(l.buf, p...)
				}
			}
			return nil
		}
		seg := p[:i]
		p = p[i+1:]
		if l.skip {
			l.skip = false
			continue
		}
		if len(l.buf)+len(seg) > MaxLine {
			l.buf = l.buf[:0]
			l.Dropped++
			continue
		}
		var line []byte
		if len(l.buf) == 0 {
			line = seg
		} else {
			l.buf = append(l.buf, seg...)
			line = l.buf
		}
		err := emit(line)
		l.buf = l.buf[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// Reset drops a partial line.
func (l *LineBuffer) Reset() { l.buf, l.skip = l.buf[:0], false }

func indexNL(p []byte) int {
	for i, c := range p {
		if c == '\n' {
			return i
		}
	}
	return -1
}
