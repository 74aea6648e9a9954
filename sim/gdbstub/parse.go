package gdbstub

import (
	"bytes"
	"fmt"

	"github.com/fudbench/fudbench/internal/rsp"
)

// MaxPacket is the largest request payload the stub accepts, after
// run-length expansion. It is well above the PacketSize the stub advertises
// (0x4000) so that a client that slightly overshoots is still served.
const MaxPacket = 64 << 10

// parseHex32 parses a non-empty hex number that fits in 32 bits. Leading zeros
// are allowed beyond eight digits because a GDB set up for a 64-bit
// architecture pads addresses to sixteen.
func parseHex32(s []byte) (uint32, error) {
	if len(s) == 0 {
		return 0, fmt.Errorf("empty hex number: %w", rsp.ErrMalformed)
	}
	var v uint32
	for _, c := range s {
		d, ok := rsp.Unhex(c)
		if !ok || v > 0x0fffffff {
			return 0, fmt.Errorf("hex number %q: %w", s, rsp.ErrMalformed)
		}
		v = v<<4 | uint32(d)
	}
	return v, nil
}

// parseAddrLen parses "ADDR,LENGTH" in hex; the range must not pass 4 GiB.
func parseAddrLen(b []byte) (uint32, uint32, error) {
	a, l, ok := bytes.Cut(b, []byte(","))
	if !ok {
		return 0, 0, fmt.Errorf("want addr,length in %q: %w", b, rsp.ErrMalformed)
	}
	addr, err := parseHex32(a)
	if err != nil {
		return 0, 0, err
	}
	length, err := parseHex32(l)
	if err != nil {
		return 0, 0, err
	}
	if uint64(addr)+uint64(length) > 1<<32 {
		return 0, 0, fmt.Errorf("range 0x%x+0x%x passes 4 GiB: %w", addr, length, rsp.ErrMalformed)
	}
	return addr, length, nil
}
