package smp

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

// FuzzImageHash reads image files as MCUboot images: no panic, and the
// hash of a file that is not an MCUboot image is its SHA-256.
func FuzzImageHash(f *testing.F) {
	hdr := make([]byte, 64+4+4+32)
	binary.LittleEndian.PutUint32(hdr, mcubootMagic)
	binary.LittleEndian.PutUint16(hdr[8:], 32)
	binary.LittleEndian.PutUint32(hdr[12:], 32)
	binary.LittleEndian.PutUint16(hdr[64:], tlvInfoMagic)
	binary.LittleEndian.PutUint16(hdr[66:], 40)
	binary.LittleEndian.PutUint16(hdr[68:], tlvSHA256)
	binary.LittleEndian.PutUint16(hdr[70:], 32)
	sum := sha256.Sum256(hdr[:64])
	copy(hdr[72:], sum[:])
	f.Add(hdr)
	f.Add([]byte("FUDI not an MCUboot image"))
	f.Add([]byte{0x3d, 0xb8, 0xf3, 0x96, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, kind, err := ImageHash(data)
		if len(data) < mcubootHeaderSize || binary.LittleEndian.Uint32(data) != mcubootMagic {
			if err != nil || got != sha256.Sum256(data) || kind != "SHA-256" {
				t.Fatalf("a plain file: %x %q %v", got, kind, err)
			}
		}
	})
}
