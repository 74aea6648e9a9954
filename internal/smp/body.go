package smp

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Bounds of a CBOR body a decoder accepts.
const (
	MaxBody     = 4096 // bytes
	maxNesting  = 8
	maxElements = 64 // array elements, map pairs
)

var (
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			MaxNestedLevels:  maxNesting,
			MaxArrayElements: maxElements,
			MaxMapPairs:      maxElements,
			IndefLength:      cbor.IndefLengthAllowed,
			DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	encMode = func() cbor.EncMode {
		m, err := cbor.EncOptions{Sort: cbor.SortNone}.EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// Unmarshal decodes a CBOR body into v, bounded by MaxBody and the nesting
// and length limits. Unknown keys are ignored, as MCUboot and the mcumgr
// CLI ignore them.
func Unmarshal(body []byte, v any) error {
	if len(body) > MaxBody {
		return fmt.Errorf("smp: body of %d bytes over %d: %w", len(body), MaxBody, ErrTooLarge)
	}
	if err := decMode.Unmarshal(body, v); err != nil {
		return fmt.Errorf("smp: cbor: %w: %w", ErrMalformed, err)
	}
	return nil
}

// Marshal encodes v as a CBOR body.
func Marshal(v any) []byte {
	b, err := encMode.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("smp: encode %T: %v", v, err)) // only our own types are encoded
	}
	return b
}

// ErrV2 is the error member of an SMP version 2 response.
type ErrV2 struct {
	Group int `cbor:"group"`
	Rc    int `cbor:"rc"`
}

// Status is the part every response may carry: a version 1 "rc" or a
// version 2 "err".
type Status struct {
	Rc  int    `cbor:"rc,omitempty"`
	Err *ErrV2 `cbor:"err,omitempty"`
}

// Check returns the device's error, if the body carries one: nil for a
// body with no rc or rc 0, an *RcError otherwise, a decoding error for a
// body that is not a CBOR map.
func Check(body []byte) error {
	var s Status
	if err := Unmarshal(body, &s); err != nil {
		return err
	}
	switch {
	case s.Rc != 0:
		return &RcError{Rc: s.Rc}
	case s.Err != nil && s.Err.Rc != 0:
		return &RcError{Rc: s.Err.Rc, Group: uint16(s.Err.Group)}
	}
	return nil
}

// RcRsp is a response that carries only a return code.
type RcRsp struct {
	Rc int `cbor:"rc"`
}

// EchoReq is the default group's echo request.
type EchoReq struct {
	D string `cbor:"d"`
}

// EchoRsp is its response.
type EchoRsp struct {
	R string `cbor:"r"`
}

// ResetReq is the default group's reset request (an empty map; newer
// devices take "force").
type ResetReq struct {
	Force bool `cbor:"force,omitempty"`
}

// ImageStateReq is an image state write: test (Confirm false) or confirm
// the image with Hash.
type ImageStateReq struct {
	Hash    []byte `cbor:"hash,omitempty"`
	Confirm bool   `cbor:"confirm"`
}

// ImageSlot is one image in an image state response.
type ImageSlot struct {
	Image     int    `cbor:"image,omitempty"`
	Slot      int    `cbor:"slot"`
	Version   string `cbor:"version"`
	Hash      []byte `cbor:"hash,omitempty"`
	Bootable  bool   `cbor:"bootable,omitempty"`
	Pending   bool   `cbor:"pending,omitempty"`
	Confirmed bool   `cbor:"confirmed,omitempty"`
	Active    bool   `cbor:"active,omitempty"`
	Permanent bool   `cbor:"permanent,omitempty"`
}

// ImageStateRsp is the answer to an image state read or write.
type ImageStateRsp struct {
	Images      []ImageSlot `cbor:"images"`
	SplitStatus int         `cbor:"splitStatus,omitempty"`
}

// UploadReq is one chunk of an image upload. Len, Sha and Upgrade go with
// the first chunk (Off 0) only.
type UploadReq struct {
	Image   int    `cbor:"image,omitempty"`
	Off     uint32 `cbor:"off"`
	Len     uint32 `cbor:"len,omitempty"`
	Sha     []byte `cbor:"sha,omitempty"`
	Upgrade bool   `cbor:"upgrade,omitempty"`
	Data    []byte `cbor:"data"`
}

// uploadReqIn decodes an UploadReq telling a missing "off" or "data"
// (which MCUboot refuses) from zero.
type uploadReqIn struct {
	Image   int     `cbor:"image"`
	Off     *uint32 `cbor:"off"`
	Len     uint32  `cbor:"len"`
	Sha     []byte  `cbor:"sha"`
	Upgrade bool    `cbor:"upgrade"`
	Data    *[]byte `cbor:"data"`
}

// ParseUploadReq decodes an upload request; a request without "off" or
// "data" is malformed.
func ParseUploadReq(body []byte) (UploadReq, error) {
	var in uploadReqIn
	if err := Unmarshal(body, &in); err != nil {
		return UploadReq{}, err
	}
	if in.Off == nil || in.Data == nil {
		return UploadReq{}, fmt.Errorf("smp: upload without off or data: %w", ErrMalformed)
	}
	return UploadReq{Image: in.Image, Off: *in.Off, Len: in.Len, Sha: in.Sha, Upgrade: in.Upgrade, Data: *in.Data}, nil
}

// UploadRsp is the answer to an upload chunk: the offset the device
// expects next.
type UploadRsp struct {
	Rc  int    `cbor:"rc"`
	Off uint32 `cbor:"off"`
}

// uploadOverhead is an upper bound of what an upload request adds to its
// data: header, CBOR keys and heads (off, len, sha with 32 bytes, upgrade,
// image), framing (length, CRC).
const uploadOverhead = HeaderLen + 4 + 80

// UploadChunk returns the most data bytes one upload request may carry so
// that its decoded frame, rounded up to whole base64 groups, fits mtu
// bytes (a device's receive buffer, MCUboot's
// MCUBOOT_SERIAL_MAX_RECEIVE_SIZE), a multiple of 8 when it can be (MCUboot
// writes whole write units and asks again for the rest); 0 when mtu
// leaves no room.
func UploadChunk(mtu int) int {
	n := mtu - uploadOverhead - 3 // the padding a receiver may count
	if n >= 8 {
		n &^= 7 // whole write units of flash up to 8 bytes: no bytes sent twice
	}
	return max(n, 0)
}
