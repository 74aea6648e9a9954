package esprom

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"testing"

	wire "github.com/fudbench/fudbench/internal/esprom"
)

func req(op byte, chk uint32, words ...uint32) []byte {
	var b []byte
	for _, w := range words {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return wire.Request{Op: op, Checksum: chk, Data: b}.Marshal()
}

// FuzzHandle feeds the device a begin, then arbitrary frames: no panic,
// every answer a well-formed response, and the flash keeps its size.
func FuzzHandle(f *testing.F) {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(bytes.Repeat([]byte{1, 2, 3}, 500))
	zw.Close()
	blk := append(binary.LittleEndian.AppendUint32(nil, uint32(z.Len())), make([]byte, 12)...)
	f.Add(req(wire.OpFlashDeflBegin, 0, 1500, 1, 0x400, 0x1000), wire.Request{Op: wire.OpFlashDeflData, Checksum: wire.Checksum(z.Bytes()), Data: append(blk, z.Bytes()...)}.Marshal())
	f.Add(req(wire.OpFlashBegin, 0, 0x1000, 4, 0x400, 0), req(wire.OpSPIFlashMD5, 0, 0, 0x1000, 0, 0))
	f.Add(req(wire.OpSync, 0), req(wire.OpWriteReg, 0, spiCmd, spiCmdUsr, 0, 0))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d := newDevice(Options{})
		for _, fr := range [][]byte{a, b, b} {
			out := d.handle(fr)
			if len(out) == 0 {
				continue
			}
			sp := wire.NewSplitter(0)
			for _, c := range out {
				if p, ok := sp.Feed(c); ok {
					if _, err := wire.DecodeResponse(p); err != nil {
						t.Fatalf("answer % x: %v", p, err)
					}
				}
			}
		}
		if len(d.flash) != FlashSize {
			t.Fatalf("flash of %d bytes", len(d.flash))
		}
	})
}
