package gdbrsp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// maxPacket bounds one reply payload after run-length expansion, so that
// a broken or hostile server cannot make the client grow without end.
const maxPacket = 1 << 20

// Framing errors of readPacket.
var (
	errChecksum  = errors.New("bad packet checksum")
	errMalformed = errors.New("malformed packet")
	errTooLong   = errors.New("packet too long")
)

// readPacket reads one "$data#cs" frame from r and returns its payload with
// run-length encoding ("x*n": x repeated n-29 more times) expanded, as GDB
// does for every reply. Binary escapes are left in place (decodeBinary
// removes them where a reply carries binary data). Bytes before the '$'
// (acknowledgements, noise) are skipped; a '$' inside a frame restarts it.
// A checksum mismatch returns an error wrapping errChecksum.
func readPacket(r *bufio.Reader) ([]byte, error) {
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
				return nil, fmt.Errorf("checksum digits %q: %w", cs[:], errMalformed)
			}
			if got := hi<<4 | lo; got != sum {
				return nil, fmt.Errorf("got %02x, computed %02x: %w", got, sum, errChecksum)
			}
			return out, nil
		case '*':
			sum += b
			n, err := r.ReadByte()
			if err != nil {
				return nil, unexpectedEOF(err)
			}
			sum += n
			// n encodes n-29 extra copies of the previous byte; '#' and
			// '$' are never counts, and nothing above '~' is printable.
			repeat := int(n) - 29
			if len(out) == 0 || repeat < 1 || n > '~' || n == '#' || n == '$' {
				return nil, fmt.Errorf("run-length count %q at offset %d: %w", n, len(out), errMalformed)
			}
			if len(out)+repeat > maxPacket {
				return nil, errTooLong
			}
			c := out[len(out)-1]
			for range repeat {
				out = append(out, c)
			}
			continue
		}
		sum += b
		if len(out) >= maxPacket {
			return nil, errTooLong
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

// appendPacket appends the frame "$data#cs" to dst. data must already have
// its binary parts escaped; no run-length encoding is applied.
func appendPacket(dst, data []byte) []byte {
	var sum byte
	for _, b := range data {
		sum += b
	}
	dst = append(dst, '$')
	dst = append(dst, data...)
	return append(dst, '#', hexDigits[sum>>4], hexDigits[sum&0xf])
}

// needsEscape: '#', '$' and '}' frame packets; '*' is escaped too so that
// a server that expands run-length encoding everywhere cannot misread it.
func needsEscape(b byte) bool {
	return b == '#' || b == '$' || b == '}' || b == '*'
}

// appendBinary appends as much of p to dst, escaped, as fits in max bytes
// of escaped output, and returns how many bytes of p it took.
func appendBinary(dst, p []byte, max int) ([]byte, int) {
	used := 0
	for i, b := range p {
		if needsEscape(b) {
			if used+2 > max {
				return dst, i
			}
			dst = append(dst, '}', b^0x20)
			used += 2
			continue
		}
		if used+1 > max {
			return dst, i
		}
		dst = append(dst, b)
		used++
	}
	return dst, len(p)
}

// decodeBinary removes binary escapes ('}' then byte^0x20) from p.
func decodeBinary(p []byte) ([]byte, error) {
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		b := p[i]
		if b == '}' {
			i++
			if i == len(p) {
				return nil, fmt.Errorf("escape at end of binary data: %w", errMalformed)
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

func appendHex(dst, p []byte) []byte {
	for _, b := range p {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// decodeHex decodes an even-length hex string.
func decodeHex(s []byte) ([]byte, error) {
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("odd hex length %d: %w", len(s), errMalformed)
	}
	out := make([]byte, len(s)/2)
	for i := range out {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("bad hex %q: %w", s[2*i:2*i+2], errMalformed)
		}
		out[i] = hi<<4 | lo
	}
	return out, nil
}

// Reply kinds, as classify sees a reply payload.
const (
	replyOK      = iota // "OK"
	replyEmpty          // "": the server does not know the command
	replyError          // "Exx" or "E.text"
	replyConsole        // "O" + hex: console output
	replyData           // anything else
)

// classify sorts a reply payload. "OK" is no console output although it
// starts with 'O': console output is 'O' followed by hex digits.
func classify(p []byte) int {
	switch {
	case len(p) == 0:
		return replyEmpty
	case string(p) == "OK":
		return replyOK
	case isError(p):
		return replyError
	case p[0] == 'O' && len(p) > 1 && len(p)%2 == 1 && isHex(p[1:]):
		return replyConsole
	}
	return replyData
}

// isError: "Exx" with two hex digits, or "E." followed by text (the
// textual error form newer servers use, e.g. E.memtype).
func isError(p []byte) bool {
	if len(p) < 2 || p[0] != 'E' {
		return false
	}
	if p[1] == '.' {
		return true
	}
	return len(p) == 3 && isHex(p[1:])
}

func isHex(p []byte) bool {
	for _, c := range p {
		if _, ok := unhex(c); !ok {
			return false
		}
	}
	return true
}

// parseSupported parses a qSupported reply ("PacketSize=4000;qXfer:memory-
// map:read+;...") into feature → value, where a "+" or "-" feature maps to
// "+" or "-".
func parseSupported(p []byte) map[string]string {
	f := map[string]string{}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != ';' {
			continue
		}
		item := string(p[start:i])
		start = i + 1
		if item == "" {
			continue
		}
		if k, v, ok := cutByte(item, '='); ok {
			f[k] = v
			continue
		}
		switch last := item[len(item)-1]; last {
		case '+', '-', '?':
			f[item[:len(item)-1]] = string(last)
		default:
			f[item] = "+"
		}
	}
	return f
}

func cutByte(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// packetSizeOf reads PacketSize (hex) from qSupported features; it falls
// back to def when missing or absurd.
func packetSizeOf(f map[string]string, def int) int {
	v, ok := f["PacketSize"]
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(v, 16, 32)
	if err != nil || n < 64 {
		return def
	}
	return int(min(n, maxPacket))
}
