package coapsrv

import (
	"net"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Request is one decoded CoAP request as the handler sees it.
//
// A Request and every slice in it (Token, Query, Options and their values,
// Payload, PSKIdentity) belong to the server and are reused for the next
// datagram: they are valid only until the handler returns. Copy what must be
// kept (a flash model copies the block it writes anyway).
type Request struct {
	Peer        net.Addr
	PSKIdentity []byte // nil over plain UDP
	Code        codes.Code
	Type        message.Type // message.Confirmable or message.NonConfirmable
	MessageID   uint16
	Token       message.Token
	Path        string   // Uri-Path options joined: "/fw/state"; "/" when there are none
	Query       []string // Uri-Query options in order; nil when there are none
	Options     message.Options
	Payload     []byte
}

// Block is the value of a Block1 or Block2 option (RFC 7959 §2.2).
type Block struct {
	Num  uint32 // block number, < 1<<20
	More bool
	SZX  uint8 // block size is 16 << SZX; 0–6 (7 is reserved)
}

// Size is the block size in bytes that SZX stands for.
func (b Block) Size() int { return 16 << b.SZX }

// Block1 returns the request's Block1 option. ok is false when it is
// absent, longer than 3 bytes, or uses the reserved SZX 7.
func (r *Request) Block1() (Block, bool) {
	v, ok := optUint(r.Options, message.Block1, 3)
	if !ok || v&7 == 7 {
		return Block{}, false
	}
	return Block{Num: v >> 4, More: v&8 != 0, SZX: uint8(v & 7)}, true
}

// Size1 returns the request's Size1 option (RFC 7959 §4), the size of the
// whole body the client means to send.
func (r *Request) Size1() (uint32, bool) {
	return optUint(r.Options, message.Size1, 4)
}

// RequestTag returns the value of the Request-Tag option (292, RFC 9175).
// A present option may be empty.
func (r *Request) RequestTag() ([]byte, bool) {
	for _, o := range r.Options {
		if o.ID == message.RequestTag {
			return o.Value, true
		}
	}
	return nil, false
}

// ContentFormat returns the request's Content-Format option.
func (r *Request) ContentFormat() (message.MediaType, bool) {
	v, ok := optUint(r.Options, message.ContentFormat, 2)
	return message.MediaType(v), ok
}

// optUint decodes the first option id as a CoAP uint of at most maxLen
// bytes, by hand so that an over-long value is reported instead of being
// silently truncated.
func optUint(opts message.Options, id message.OptionID, maxLen int) (uint32, bool) {
	for _, o := range opts {
		if o.ID != id {
			continue
		}
		if len(o.Value) > maxLen {
			return 0, false
		}
		var v uint32
		for _, b := range o.Value {
			v = v<<8 | uint32(b)
		}
		return v, true
	}
	return 0, false
}

// NoContentFormat leaves the Content-Format option out of a Response.
const NoContentFormat = -1

// Response is what a handler answers. The server sends it piggybacked in the
// ACK of a confirmable request, or as a non-confirmable message otherwise,
// with the request's token.
type Response struct {
	Code codes.Code
	// ContentFormat is the Content-Format option; NoContentFormat (or any
	// negative value) leaves it out. It is sent only with a non-empty Payload,
	// because it describes the payload: so a bare 2.31 Continue needs no
	// care, while 0 (text/plain) with a payload is sent as such.
	ContentFormat int
	Payload       []byte
	Block1        *Block          // echoed Block1 option; nil: none
	Size1         uint32          // Size1 option (with 4.13); 0: none
	Options       message.Options // further options, in any order
	// AfterSend, if set, runs once the reply has been written, still in
	// the server's handling turn: a device that reboots after answering.
	AfterSend func()
}

// encodeUint writes v as a minimal CoAP uint into buf and returns the value.
func encodeUint(buf []byte, v uint32) []byte {
	n := 0
	for x := v; x != 0; x >>= 8 {
		n++
	}
	for i := n - 1; i >= 0; i-- {
		buf[i] = byte(v)
		v >>= 8
	}
	return buf[:n]
}
