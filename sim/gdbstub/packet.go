package gdbstub

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// MaxPacket is the largest packet payload accepted by ReadPacket, after
// run-length expansion. It is well above the PacketSize the stub advertises
// (0x4000) so that a client that slightly overshoots is still served.
const MaxPacket = 64 << 10

// Errors returned by the packet-level functions; test them with errors.Is.
var (
	// ErrChecksum means a frame arrived whole but its checksum did not match;
	// the server answers '-' so that the client retransmits.
	ErrChecksum = errors.New("gdbstub: bad packet checksum")
	// ErrMalformed means a frame or a payload broke the RSP encoding rules.
	ErrMalformed = errors.New("gdbstub: malformed packet")
	// ErrTooLong means a frame grew past MaxPacket before its end.
	ErrTooLong = errors.New("gdbstub: packet too long")
)

// ReadPacket reads one "$data#cs" frame from r and returns its payload with
// run-length encoding ("x*n": x repeated n-29 more times) expanded, exactly as
// GDB's own reader does. Binary escapes ('}' then byte^0x20) are left in place
// because only some packets (X, vFlashWrite, qXfer replies) carry binary data;
// DecodeBinary removes them.
//
// Bytes before the '$' (acknowledgements, noise) are skipped. A '$' inside a
// frame restarts the frame, as in GDB. The checksum covers the payload as
// transmitted. On a checksum mismatch the payload is returned together with an
// error wrapping ErrChecksum.
func ReadPacket(r *bufio.Reader) ([]byte, error) {
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
			hi, ok1 := unhex(cs[0])
			lo, ok2 := unhex(cs[1])
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
			// counts below one or above 126-29 never come from a real encoder.
			repeat := int(n) - 29
			if len(out) == 0 || repeat < 1 || n > 126 {
				return nil, fmt.Errorf("run-length count %q at offset %d: %w", n, len(out), ErrMalformed)
			}
			if len(out)+repeat > MaxPacket {
				return nil, ErrTooLong
			}
			c := out[len(out)-1]
			for range repeat {
				out = append(out, c)
			}
			continue
		}
		sum += b
		if len(out) >= MaxPacket {
			return nil, ErrTooLong
		}
		out = append(out, b)
	}
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendPacket appends the frame "$data#cs" to dst. data must not contain '$',
// '#' or '*' (binary data goes through AppendBinary first); no run-length
// encoding is applied, which every RSP reader accepts.
func AppendPacket(dst, data []byte) []byte {
	var sum byte
	for _, b := range data {
		sum += b
	}
	dst = append(dst, '$')
	dst = append(dst, data...)
	return append(dst, '#', hexDigits[sum>>4], hexDigits[sum&0xf])
}

// needsEscape reports whether b must be escaped in binary data. '*' is escaped
// as GDB does, so that a reader that expands run-length encoding on every packet
// cannot misread it.
func needsEscape(b byte) bool {
	return b == '#' || b == '$' || b == '}' || b == '*'
}

// AppendBinary appends p to dst with the RSP binary escapes applied: '#', '$',
// '}' and '*' become '}' followed by the byte xor 0x20.
func AppendBinary(dst, p []byte) []byte {
	for _, b := range p {
		if needsEscape(b) {
			dst = append(dst, '}', b^0x20)
			continue
		}
		dst = append(dst, b)
	}
	return dst
}

// DecodeBinary removes RSP binary escapes from p and returns the raw bytes in
// a new slice. A '}' at the very end has nothing to escape and is an error
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

const hexDigits = "0123456789abcdef"

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodeHex decodes an even-length hex string.
func decodeHex(s []byte) ([]byte, error) {
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("odd hex length %d: %w", len(s), ErrMalformed)
	}
	out := make([]byte, len(s)/2)
	for i := range out {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("bad hex %q: %w", s[2*i:2*i+2], ErrMalformed)
		}
		out[i] = hi<<4 | lo
	}
	return out, nil
}

func appendHex(dst, p []byte) []byte {
	for _, b := range p {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// parseHex32 parses a non-empty hex number that fits in 32 bits. Leading zeros
// are allowed beyond eight digits because a GDB set up for a 64-bit
// architecture pads addresses to sixteen.
func parseHex32(s []byte) (uint32, error) {
	if len(s) == 0 {
		return 0, fmt.Errorf("empty hex number: %w", ErrMalformed)
	}
	var v uint32
	for _, c := range s {
		d, ok := unhex(c)
		if !ok || v > 0x0fffffff {
			return 0, fmt.Errorf("hex number %q: %w", s, ErrMalformed)
		}
		v = v<<4 | uint32(d)
	}
	return v, nil
}
