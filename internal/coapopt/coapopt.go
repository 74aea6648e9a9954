// Package coapopt reads and writes CoAP uint option values (RFC 7252
// §3.2) without allocating, for the bench's CoAP client and the simulated
// board's server alike. It is a leaf: it imports go-coap's message types
// and nothing of fudbench.
package coapopt

import "github.com/plgd-dev/go-coap/v3/message"

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
