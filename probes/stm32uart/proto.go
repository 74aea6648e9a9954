package stm32uart

import (
	"errors"
	"fmt"
	"slices"

	"github.com/fudbench/fudbench/probes"
)

// AN3155 bytes.
const (
	bSync = 0x7F
	bACK  = 0x79
	bNACK = 0x1F
	// bBusy is sent by some bootloaders while an operation runs; the
	// answer follows.
	bBusy = 0x76
)

// Command codes.
const (
	cmdGet           = 0x00
	cmdGetVersion    = 0x01
	cmdGetID         = 0x02
	cmdRead          = 0x11
	cmdGo            = 0x21
	cmdWrite         = 0x31
	cmdErase         = 0x43
	cmdExtendedErase = 0x44
)

// maxChunk is the most one Read or Write Memory moves.
const maxChunk = 256

// errNACK is the device's refusal. Its text is the protocol's word so that
// errors read "…: write at 0x08000400: NACK".
type errNACK struct{}

func (errNACK) Error() string { return "NACK" }
func (errNACK) Unwrap() error { return probes.ErrProbe }

// ErrNACK: the bootloader answered NACK (0x1F). It wraps probes.ErrProbe.
var ErrNACK error = errNACK{}

func xorSum(b []byte) byte {
	var x byte
	for _, v := range b {
		x ^= v
	}
	return x
}

// addrFrame is an address as the bootloader takes it: big endian and an
// XOR checksum.
func addrFrame(a uint32) []byte {
	b := []byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}
	return append(b, xorSum(b))
}

// writeFrame is Write Memory's payload: N-1, the data, and the XOR of both.
// len(data) must be 1..256.
func writeFrame(data []byte) []byte {
	f := make([]byte, 0, len(data)+2)
	f = append(f, byte(len(data)-1))
	f = append(f, data...)
	return append(f, xorSum(f))
}

// eraseFrame is the payload of Erase (one byte per page, at most 255
// pages numbered below 256) or Extended Erase (two bytes, big endian).
func eraseFrame(extended bool, pages []uint32) ([]byte, error) {
	if len(pages) == 0 {
		return nil, errors.New("no pages to erase")
	}
	var f []byte
	if extended {
		if len(pages) > 0xFFF0 {
			return nil, fmt.Errorf("%d pages in one extended erase", len(pages))
		}
		n := len(pages) - 1
		f = append(f, byte(n>>8), byte(n))
		for _, p := range pages {
			if p > 0xFFFF {
				return nil, fmt.Errorf("page %d does not fit extended erase", p)
			}
			f = append(f, byte(p>>8), byte(p))
		}
	} else {
		if len(pages) > 255 {
			return nil, fmt.Errorf("%d pages in one erase (at most 255)", len(pages))
		}
		f = append(f, byte(len(pages)-1))
		for _, p := range pages {
			if p > 0xFF {
				return nil, fmt.Errorf("page %d is beyond what erase (0x43) can name; use extended erase", p)
			}
			f = append(f, byte(p))
		}
	}
	return append(f, xorSum(f)), nil
}

// getInfo is what Get tells: the bootloader version and its commands.
type getInfo struct {
	version byte
	cmds    []byte
}

func (g getInfo) has(cmd byte) bool { return slices.Contains(g.cmds, cmd) }

// parseGet parses Get's reply frame (N, then N+1 bytes: version and
// commands).
func parseGet(f []byte) (getInfo, error) {
	if len(f) < 2 || int(f[0])+2 != len(f) {
		return getInfo{}, fmt.Errorf("get reply % x is no frame", f)
	}
	return getInfo{version: f[1], cmds: slices.Clone(f[2:])}, nil
}

// parseID parses Get ID's reply frame (N, then N+1 bytes of which the
// first two are the product ID).
func parseID(f []byte) (uint16, error) {
	if len(f) < 3 || int(f[0])+2 != len(f) {
		return 0, fmt.Errorf("get id reply % x is no frame with a product id", f)
	}
	return uint16(f[1])<<8 | uint16(f[2]), nil
}
