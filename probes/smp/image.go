package smp

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// MCUboot's image format (bootutil/image.h).
const (
	mcubootMagic      = 0x96f3b83d
	tlvInfoMagic      = 0x6907
	tlvProtInfoMagic  = 0x6908
	tlvSHA256         = 0x10
	mcubootHeaderSize = 32
)

// ImageHash returns the hash a device reports for data once it holds it
// in a slot, and what it is: for an MCUboot image, the SHA-256 over its
// header, body and protected TLVs (the SHA256 TLV's value, which it must
// match); for any other image, the SHA-256 of all its bytes.
func ImageHash(data []byte) (sum [32]byte, kind string, err error) {
	if len(data) < mcubootHeaderSize || binary.LittleEndian.Uint32(data) != mcubootMagic {
		return sha256.Sum256(data), "SHA-256", nil
	}
	hdrSize := int(binary.LittleEndian.Uint16(data[8:]))
	protSize := int(binary.LittleEndian.Uint16(data[10:]))
	imgSize := int(binary.LittleEndian.Uint32(data[12:]))
	end := hdrSize + imgSize
	if hdrSize < mcubootHeaderSize || imgSize < 0 || end+protSize > len(data) {
		return sum, "", fmt.Errorf("MCUboot image header: sizes (header %d, body %d, protected TLVs %d) pass the %d-byte file", hdrSize, imgSize, protSize, len(data))
	}
	sum = sha256.Sum256(data[:end+protSize])
	// The unprotected TLV area follows the protected one.
	off := end + protSize
	if off+4 > len(data) || binary.LittleEndian.Uint16(data[off:]) != tlvInfoMagic {
		return sum, "", errors.New("MCUboot image: no TLV area after the body")
	}
	areaEnd := off + int(binary.LittleEndian.Uint16(data[off+2:]))
	if areaEnd > len(data) {
		return sum, "", errors.New("MCUboot image: the TLV area passes the end of the file")
	}
	for off += 4; off+4 <= areaEnd; {
		typ := binary.LittleEndian.Uint16(data[off:])
		n := int(binary.LittleEndian.Uint16(data[off+2:]))
		off += 4
		if off+n > areaEnd {
			break
		}
		if typ == tlvSHA256 {
			if n != 32 || string(data[off:off+n]) != string(sum[:]) {
				return sum, "", errors.New("MCUboot image: its SHA256 TLV does not match its header, body and protected TLVs")
			}
			return sum, "MCUboot image hash", nil
		}
		off += n
	}
	return sum, "", errors.New("MCUboot image: no SHA256 TLV")
}
