// Package coapopt reads and writes CoAP uint option values (RFC 7252
// §3.2) without allocating, decodes messages with a bound on their
// options, and reads and writes Q-Block1's missing-blocks lists (RFC 9177
// §5), for the bench's CoAP client and the simulated board's server
// alike. It is a leaf: it imports go-coap's message types
// and nothing of fudbench.
package coapopt

import (
	"errors"
	"fmt"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// Uint decodes the first option id as a CoAP uint of at most maxLen bytes.
// An over-long value is reported as absent rather than silently truncated.
func Uint(opts message.Options, id message.OptionID, maxLen int) (uint32, bool) {
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

// PutUint writes v as a minimal CoAP uint (no leading zero bytes; 0 is
// empty) into buf, which must hold 4 bytes, and returns the value.
func PutUint(buf []byte, v uint32) []byte {
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

// MaxOptions bounds the options of one message Decode takes. The bench and
// the simulated board exchange messages of at most about ten (Uri-Path
// segments, Block1, Size1, Request-Tag, Content-Format, OSCORE, Echo); a
// datagram can hold 65,000 one-byte options, 2 MiB once decoded.
const MaxOptions = 64

// ErrTooManyOptions marks a message with more than MaxOptions options.
var ErrTooManyOptions = errors.New("coap: too many options")

// Decode decodes the datagram data into m with go-coap's UDP coder,
// growing m.Options when the message carries more options than it has
// room for, up to MaxOptions: a message with more is refused (an error
// wrapping ErrTooManyOptions) having allocated at most MaxOptions options.
// m.Options keeps its room for the next message.
func Decode(data []byte, m *message.Message) error {
	for {
		_, err := coder.DefaultCoder.Decode(data, m)
		if !errors.Is(err, message.ErrOptionsTooSmall) {
			return err
		}
		if cap(m.Options) >= MaxOptions {
			return fmt.Errorf("%w: more than %d in a %d-byte datagram", ErrTooManyOptions, MaxOptions, len(data))
		}
		m.Options = make(message.Options, 0, min(max(2*cap(m.Options), 16), MaxOptions))
	}
}
