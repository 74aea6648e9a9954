package rsp

import "fmt"

const hexDigits = "0123456789abcdef"

// Unhex returns the value of one hex digit, either case.
func Unhex(c byte) (byte, bool) {
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

// AppendHex appends p to dst as lower-case hex, two digits a byte.
func AppendHex(dst, p []byte) []byte {
	for _, b := range p {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// DecodeHex decodes an even-length hex string; anything else is an error
// wrapping ErrMalformed.
func DecodeHex(s []byte) ([]byte, error) {
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("odd hex length %d: %w", len(s), ErrMalformed)
	}
	out := make([]byte, len(s)/2)
	for i := range out {
		hi, ok1 := Unhex(s[2*i])
		lo, ok2 := Unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("bad hex %q: %w", s[2*i:2*i+2], ErrMalformed)
		}
		out[i] = hi<<4 | lo
	}
	return out, nil
}
