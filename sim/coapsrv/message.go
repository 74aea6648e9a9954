package coapsrv

import (
	"net"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/internal/coapopt"
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
	DTLS        *DTLSSession // the DTLS session the request came on; nil over plain UDP

	origin Origin
}

// Origin is where the request came from, for a separate response
// (Origin.Send) after the handler has returned.
func (r *Request) Origin() Origin { return r.origin }

// Block is the value of a Block1 or Block2 option (RFC 7959 §2.2).
type Block struct {
	Num  uint32 // block number, < 1<<20
	More bool
	SZX  uint8 // block size is 16 << SZX; 0–6 (7 is reserved)
}

// Size is the block size in bytes that SZX stands for.
func (b Block) Size() int { return 16 << b.SZX }

// value is the option value of b.
func (b Block) value() uint32 {
	v := b.Num<<4 | uint32(b.SZX&7)
	if b.More {
		v |= 8
	}
	return v
}

// Option is b as an option numbered id (Block1, Q-Block1 …), its value
// in the shortest form.
func (b Block) Option(id message.OptionID) message.Option {
	var buf [4]byte
	return message.Option{ID: id, Value: coapopt.PutUint(buf[:], b.value())}
}

// Block1 returns the request's Block1 option. ok is false when it is
// absent, longer than 3 bytes, or uses the reserved SZX 7.
func (r *Request) Block1() (Block, bool) { return r.block(message.Block1) }

func (r *Request) block(id message.OptionID) (Block, bool) {
	v, ok := coapopt.Uint(r.Options, id, 3)
	if !ok || v&7 == 7 {
		return Block{}, false
	}
	return Block{Num: v >> 4, More: v&8 != 0, SZX: uint8(v & 7)}, true
}

// QBlock1 returns the request's Q-Block1 option (RFC 9177 §4), whose value
// is that of Block1. ok is false when it is absent, longer than 3 bytes,
// or uses the reserved SZX 7.
func (r *Request) QBlock1() (Block, bool) { return r.block(message.QBlock1) }

// Block2 returns the request's Block2 option (RFC 7959 §2.2): the block of
// the response body asked for.
func (r *Request) Block2() (Block, bool) { return r.block(message.Block2) }

// QBlock2 returns the request's Q-Block2 option (RFC 9177 §4).
func (r *Request) QBlock2() (Block, bool) { return r.block(message.QBlock2) }

// Size1 returns the request's Size1 option (RFC 7959 §4), the size of the
// whole body the client means to send.
func (r *Request) Size1() (uint32, bool) {
	return coapopt.Uint(r.Options, message.Size1, 4)
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
	v, ok := coapopt.Uint(r.Options, message.ContentFormat, 2)
	return message.MediaType(v), ok
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
