// Package smp is the wire format of MCUmgr's Simple Management Protocol
// (SMP, formerly the newtmgr protocol NMP) over a serial console, shared by
// the bench's probe driver (probes/smp) and the simulated board's serial
// recovery (sim): the console framing, the 8-byte header and the CBOR
// bodies of the commands a bootloader's serial recovery answers (image
// state, image upload, echo, reset).
//
// A packet on the wire is base64 of [length (2 bytes, big-endian), header
// (8 bytes), CBOR body, CRC-16/XMODEM (2 bytes, big-endian)], where length
// counts the header, body and CRC and the CRC covers the header and body.
// The base64 text is cut into lines of at most 124 characters (a multiple
// of 4, so each line decodes on its own, as MCUboot decodes them); the
// first line starts with 0x06 0x09, each further one with 0x04 0x14, and
// every line ends with '\n'. Lines that start otherwise are console text.
//
// Decoders take bytes from outside and are bounded: a line, a packet and a
// CBOR body have maximum sizes, nesting, array and map lengths, and an
// error is returned rather than memory spent.
package smp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Operations (Header.Op).
const (
	OpRead     = 0
	OpReadRsp  = 1
	OpWrite    = 2
	OpWriteRsp = 3
	// OpMask is the op's bits of Header.Op; SMP version 2 sets bit 3
	// (the version, bits 3–4).
	OpMask = 0x07
)

// Groups and command IDs.
const (
	GroupDefault = 0
	GroupImage   = 1

	IDEcho  = 0 // default group
	IDReset = 5 // default group

	IDImageState  = 0 // image group: read lists, write tests or confirms
	IDImageUpload = 1 // image group
	IDImageErase  = 5 // image group
)

// HeaderLen is the size of the SMP header.
const HeaderLen = 8

// Header is the SMP header.
type Header struct {
	Op    uint8
	Flags uint8
	Len   uint16 // bytes of CBOR body
	Group uint16
	Seq   uint8
	ID    uint8
}

// Append appends the header's 8 bytes to b.
func (h Header) Append(b []byte) []byte {
	b = append(b, h.Op, h.Flags)
	b = binary.BigEndian.AppendUint16(b, h.Len)
	b = binary.BigEndian.AppendUint16(b, h.Group)
	return append(b, h.Seq, h.ID)
}

// ParseHeader reads a header from the first 8 bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("smp: header: %d bytes, want %d: %w", len(b), HeaderLen, ErrMalformed)
	}
	return Header{
		Op:    b[0],
		Flags: b[1],
		Len:   binary.BigEndian.Uint16(b[2:]),
		Group: binary.BigEndian.Uint16(b[4:]),
		Seq:   b[6],
		ID:    b[7],
	}, nil
}

// Response reports whether h is a response (read or write).
func (h Header) Response() bool {
	op := h.Op & OpMask
	return op == OpReadRsp || op == OpWriteRsp
}

// String names the command, e.g. "image upload".
func (h Header) String() string { return CommandName(h.Group, h.ID) }

// CommandName names a command by group and ID.
func CommandName(group uint16, id uint8) string {
	switch {
	case group == GroupDefault && id == IDEcho:
		return "echo"
	case group == GroupDefault && id == IDReset:
		return "reset"
	case group == GroupImage && id == IDImageState:
		return "image state"
	case group == GroupImage && id == IDImageUpload:
		return "image upload"
	case group == GroupImage && id == IDImageErase:
		return "image erase"
	}
	return fmt.Sprintf("group %d id %d", group, id)
}

// Packet is a header and its CBOR body.
type Packet struct {
	Header
	Body []byte
}

// ParsePacket splits a decoded frame's payload (header and body, the CRC
// already checked and removed) into a Packet. The body is what follows the
// header; a Len larger than that is an error.
func ParsePacket(b []byte) (Packet, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return Packet{}, err
	}
	body := b[HeaderLen:]
	if int(h.Len) > len(body) {
		return Packet{}, fmt.Errorf("smp: header says %d bytes of body, %d follow: %w", h.Len, len(body), ErrMalformed)
	}
	return Packet{Header: h, Body: body[:h.Len]}, nil
}

// Marshal returns the packet's header (with Len set from Body) and body.
func (p Packet) Marshal() []byte {
	h := p.Header
	h.Len = uint16(len(p.Body))
	b := make([]byte, 0, HeaderLen+len(p.Body))
	b = h.Append(b)
	return append(b, p.Body...)
}

// Errors.
var (
	// ErrMalformed: bytes that are not a well-formed SMP line, frame,
	// header or body.
	ErrMalformed = errors.New("smp: malformed")
	// ErrTooLarge: a line, frame or body over its bound.
	ErrTooLarge = errors.New("smp: too large")
)

// Management return codes (MGMT_ERR_*), the "rc" of a response.
const (
	RcOK        = 0
	RcEUnknown  = 1
	RcENoMem    = 2
	RcEInval    = 3
	RcETimeout  = 4
	RcENoEnt    = 5
	RcEBadState = 6
	RcEMsgSize  = 7
	RcENotSup   = 8
	RcECorrupt  = 9
	RcEBusy     = 10
)

// RcName names a return code, e.g. "ENOTSUP".
func RcName(rc int) string {
	switch rc {
	case RcOK:
		return "EOK"
	case RcEUnknown:
		return "EUNKNOWN"
	case RcENoMem:
		return "ENOMEM"
	case RcEInval:
		return "EINVAL"
	case RcETimeout:
		return "ETIMEOUT"
	case RcENoEnt:
		return "ENOENT"
	case RcEBadState:
		return "EBADSTATE"
	case RcEMsgSize:
		return "EMSGSIZE"
	case RcENotSup:
		return "ENOTSUP"
	case RcECorrupt:
		return "ECORRUPT"
	case RcEBusy:
		return "EBUSY"
	}
	return "unknown"
}

// RcError is a device's non-zero return code.
type RcError struct {
	Rc    int
	Group uint16 // the SMP v2 error's group, or the command's
}

func (e *RcError) Error() string { return fmt.Sprintf("rc %d %s", e.Rc, RcName(e.Rc)) }
