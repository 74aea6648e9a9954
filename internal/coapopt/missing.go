package coapopt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MediaTypeMissingBlocks is application/missing-blocks+cbor-seq (RFC 9177
// §5): the payload of a 4.08 that lists the blocks a server still lacks,
// as a CBOR sequence of unsigned integers in ascending order. Both ends of
// a Q-Block1 transfer use this codec.
const MediaTypeMissingBlocks = 272

// ErrMissingBlocks marks a missing-blocks payload that does not decode.
var ErrMissingBlocks = errors.New("coap: bad missing-blocks payload")

// DecodeMissingBlocks decodes an application/missing-blocks+cbor-seq
// payload: a CBOR sequence of unsigned integers (block numbers, at most
// 2^20-1 each). At most max numbers are accepted.
func DecodeMissingBlocks(p []byte, max int) ([]uint32, error) {
	var out []uint32
	for len(p) > 0 {
		if len(out) >= max {
			return nil, fmt.Errorf("%w: more than %d block numbers", ErrMissingBlocks, max)
		}
		b := p[0]
		if b>>5 != 0 {
			return nil, fmt.Errorf("%w: major type %d, not an unsigned integer", ErrMissingBlocks, b>>5)
		}
		ai := b & 31
		var v uint64
		var n int
		switch {
		case ai < 24:
			v, n = uint64(ai), 1
		case ai == 24 && len(p) >= 2:
			v, n = uint64(p[1]), 2
		case ai == 25 && len(p) >= 3:
			v, n = uint64(binary.BigEndian.Uint16(p[1:3])), 3
		case ai == 26 && len(p) >= 5:
			v, n = uint64(binary.BigEndian.Uint32(p[1:5])), 5
		case ai == 27 && len(p) >= 9:
			v, n = binary.BigEndian.Uint64(p[1:9]), 9
		default:
			return nil, fmt.Errorf("%w: truncated or indefinite item", ErrMissingBlocks)
		}
		if v >= 1<<20 {
			return nil, fmt.Errorf("%w: block number %d out of range", ErrMissingBlocks, v)
		}
		out = append(out, uint32(v))
		p = p[n:]
	}
	return out, nil
}

// AppendMissingBlocks appends nums as a CBOR sequence of unsigned integers
// in their shortest form.
func AppendMissingBlocks(b []byte, nums []uint32) []byte {
	for _, v := range nums {
		switch {
		case v < 24:
			b = append(b, byte(v))
		case v < 1<<8:
			b = append(b, 24, byte(v))
		case v < 1<<16:
			b = append(b, 25, byte(v>>8), byte(v))
		default:
			b = append(b, 26, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		}
	}
	return b
}
