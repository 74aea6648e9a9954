// Package rsp is the framing of the GDB remote serial protocol, shared by
// the bench's client (probes/gdbrsp) and the simulated board's stub
// (sim/gdbstub): "$data#cs" packets and their checksum, run-length
// expansion, binary escapes, hex payloads, acknowledgements, and the
// CRC-32 that answers qCRC. What a packet means, and which end sends
// which, stays with the two ends.
//
// It is a leaf: it imports nothing of fudbench, so the bench and the sim
// speak one wire format without depending on each other.
package rsp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Errors of the framing functions; test them with errors.Is.
var (
	// ErrChecksum means a frame arrived whole but its checksum did not
	// match; the receiver answers '-' so that the sender retransmits.
	ErrChecksum = errors.New("rsp: bad packet checksum")
	// ErrMalformed means a frame or a payload broke the encoding rules.
	ErrMalformed = errors.New("rsp: malformed packet")
	// ErrTooLong means a frame grew past the reader's limit before its end.
	ErrTooLong = errors.New("rsp: packet too long")
)

// ReadPacket reads one "$data#cs" frame from r and returns its payload with
// run-length encoding ("x*n": x repeated n-29 more times) expanded, as
// GDB's own reader does. Binary escapes ('}' then byte^0x20) are left in
// place because only some packets (X, vFlashWrite, qXfer replies) carry
// binary data; DecodeBinary removes them.
//
// Bytes before the '$' (acknowledgements, noise) are skipped. A '$' inside
// a frame restarts it, as in GDB. The checksum covers the payload as
// transmitted. On a checksum mismatch the payload is returned together with
// an error wrapping ErrChecksum. A payload longer than limit bytes after
// expansion is an error wrapping ErrTooLong, so that a broken or hostile
// peer cannot make the reader grow without end: the payload never takes
// more than limit bytes (about 4.4 times that allocated, as it grows),
// whatever the input, and a run-length count expands at most 97 times.
func ReadPacket(r *bufio.Reader, limit int) ([]byte, error) {
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b == '$' {
			break
		}
	}
	var (
		out []byte
		sum byte
	)
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, unexpectedEOF(err)
		}
		switch b {
		case '$':
			out, sum = out[:0], 0
			continue
		case '#':
			var cs [2]byte
			if _, err := io.ReadFull(r, cs[:]); err != nil {
				return nil, unexpectedEOF(err)
			}
			hi, ok1 := Unhex(cs[0])
			lo, ok2 := Unhex(cs[1])
			if !ok1 || !ok2 {
				return out, fmt.Errorf("checksum digits %q: %w", cs[:], ErrMalformed)
			}
			if got := hi<<4 | lo; got != sum {
				return out, fmt.Errorf("got %02x, computed %02x: %w", got, sum, ErrChecksum)
			}
			return out, nil
		case '*':
			sum += b
			n, err := r.ReadByte()
			if err != nil {
				return nil, unexpectedEOF(err)
			}
			if n == '#' || n == '$' {
				return nil, fmt.Errorf("run-length count %q: %w", n, ErrMalformed)
			}
			sum += n
			// GDB's rule: the count character encodes n-29 extra copies;
			// counts below one or above '~'-29 never come from a real
			// encoder.
			repeat := int(n) - 29
			if len(out) == 0 || repeat < 1 || n > '~' {
				return nil, fmt.Errorf("run-length count %q at offset %d: %w", n, len(out), ErrMalformed)
			}
			if len(out)+repeat > limit {
				return nil, tooLong(limit)
			}
			c := out[len(out)-1]
			for range repeat {
				out = append(out, c)
			}
			continue
		}
		sum += b
		if len(out) >= limit {
			return nil, tooLong(limit)
		}
		out = append(out, b)
	}
}

// tooLong is ErrTooLong with the limit that was passed.
func tooLong(limit int) error {
	return fmt.Errorf("payload over the %d-byte limit: %w", limit, ErrTooLong)
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendPacket appends the frame "$data#cs" to dst. data must not contain
// '$', '#' or '*' (binary data goes through AppendBinary first); no
// run-length encoding is applied, which every RSP reader accepts.
func AppendPacket(dst, data []byte) []byte {
	var sum byte
	for _, b := range data {
		sum += b
	}
	dst = append(dst, '$')
	dst = append(dst, data...)
	return append(dst, '#', hexDigits[sum>>4], hexDigits[sum&0xf])
}

// needsEscape: '#', '$' and '}' frame packets; '*' is escaped too, as GDB
// does, so that a reader that expands run-length encoding on every packet
// cannot misread it.
func needsEscape(b byte) bool {
	return b == '#' || b == '$' || b == '}' || b == '*'
}

// AppendBinary appends p to dst with the binary escapes applied: '#', '$',
// '}' and '*' become '}' followed by the byte xor 0x20.
func AppendBinary(dst, p []byte) []byte {
	dst, _ = AppendBinaryUpTo(dst, p, 2*len(p))
	return dst
}

// AppendBinaryUpTo appends as much of p to dst, escaped, as fits in limit
// bytes of escaped output, and returns how many bytes of p it took. An
// escape is never split.
func AppendBinaryUpTo(dst, p []byte, limit int) ([]byte, int) {
	used := 0
	for i, b := range p {
		if needsEscape(b) {
			if used+2 > limit {
				return dst, i
			}
			dst = append(dst, '}', b^0x20)
			used += 2
			continue
		}
		if used+1 > limit {
			return dst, i
		}
		dst = append(dst, b)
		used++
	}
	return dst, len(p)
}

// DecodeBinary removes binary escapes from p and returns the raw bytes in a
// new slice. A '}' at the very end has nothing to escape and is an error
// wrapping ErrMalformed.
func DecodeBinary(p []byte) ([]byte, error) {
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		b := p[i]
		if b == '}' {
			i++
			if i == len(p) {
				return nil, fmt.Errorf("escape at end of binary data: %w", ErrMalformed)
			}
			b = p[i] ^ 0x20
		}
		out = append(out, b)
	}
	return out, nil
}
