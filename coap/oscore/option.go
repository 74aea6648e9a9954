package oscore

import (
	"fmt"

	"github.com/fudbench/fudbench/internal/coapopt"
	"github.com/plgd-dev/go-coap/v3/message"
)

// Flag bits of the first byte of the OSCORE option value (§6.1).
const (
	flagReserved = 0xe0
	flagKIDCtx   = 0x10 // h: kid context present
	flagKID      = 0x08 // k: kid present
	flagPIVLen   = 0x07 // n: Partial IV length; 6 and 7 are reserved
)

// optionValue is a decoded OSCORE option value (§6.1). The slices point
// into the option.
type optionValue struct {
	piv       []byte // empty: none
	kid       []byte
	kidCtx    []byte
	hasKID    bool
	hasKIDCtx bool
}

// appendOptionValue encodes an OSCORE option value (§6.1). All flags zero
// give the empty value, as the RFC requires.
func appendOptionValue(b, piv, kid []byte, hasKID bool, kidCtx []byte, hasKIDCtx bool) []byte {
	f := byte(len(piv))
	if hasKID {
		f |= flagKID
	}
	if hasKIDCtx {
		f |= flagKIDCtx
	}
	if f == 0 {
		return b
	}
	b = append(append(b, f), piv...)
	if hasKIDCtx {
		b = append(append(b, byte(len(kidCtx))), kidCtx...)
	}
	if hasKID {
		b = append(b, kid...)
	}
	return b
}

// parseOptionValue decodes an OSCORE option value, refusing reserved bits
// and lengths that overrun it.
func parseOptionValue(v []byte) (o optionValue, err error) {
	if len(v) == 0 {
		return o, nil
	}
	f := v[0]
	if f&flagReserved != 0 {
		return o, fmt.Errorf("%w: reserved flag bits %#02x set in the OSCORE option", ErrMalformed, f&flagReserved)
	}
	n := int(f & flagPIVLen)
	if n > maxPIVLen {
		return o, fmt.Errorf("%w: reserved partial IV length %d", ErrMalformed, n)
	}
	rest := v[1:]
	if len(rest) < n {
		return o, fmt.Errorf("%w: partial IV of %d bytes overruns the OSCORE option", ErrMalformed, n)
	}
	o.piv, rest = rest[:n], rest[n:]
	if f&flagKIDCtx != 0 {
		if len(rest) < 1 || len(rest)-1 < int(rest[0]) {
			return o, fmt.Errorf("%w: kid context overruns the OSCORE option", ErrMalformed)
		}
		s := int(rest[0])
		o.kidCtx, o.hasKIDCtx, rest = rest[1:1+s], true, rest[1+s:]
	}
	if f&flagKID != 0 {
		o.kid, o.hasKID = rest, true
	} else if len(rest) != 0 {
		return o, fmt.Errorf("%w: %d stray bytes in the OSCORE option", ErrMalformed, len(rest))
	}
	return o, nil
}

// classU reports an option that stays outside, unprotected, for proxies
// (§4.1.2, Figure 5; Hop-Limit: RFC 8768). Observe is both inner and outer
// and OSCORE is neither: the callers handle them. Every other option,
// known or not, is Class E (§4.1): Block1/Block2/Size1/Size2 (inner
// block-wise, §4.1.3.4), Echo and Request-Tag (RFC 9175) among them.
func classU(id message.OptionID) bool {
	switch id {
	case message.URIHost, message.URIPort, hopLimitID, message.ProxyURI, message.ProxyScheme:
		return true
	}
	return false
}

// optionHeadLen is the size of an option's delta/length head (RFC 7252
// §3.1).
func optionHeadLen(delta, length int) int {
	return 1 + extLen(delta) + extLen(length)
}

func extLen(v int) int {
	switch {
	case v < 13:
		return 0
	case v < 269:
		return 1
	}
	return 2
}

// appendOption appends one option in CoAP format (RFC 7252 §3.1), after
// option number prev.
func appendOption(b []byte, prev int, id message.OptionID, v []byte) []byte {
	d, l := int(id)-prev, len(v)
	b = append(b, nibble(d)<<4|nibble(l))
	b = appendExt(b, d)
	b = appendExt(b, l)
	return append(b, v...)
}

func nibble(v int) byte {
	switch {
	case v < 13:
		return byte(v)
	case v < 269:
		return 13
	}
	return 14
}

func appendExt(b []byte, v int) []byte {
	switch {
	case v < 13:
		return b
	case v < 269:
		return append(b, byte(v-13))
	}
	v -= 269
	return append(b, byte(v>>8), byte(v))
}

// maxInnerOptions bounds the options parseOptions takes from one
// message, as coapopt.MaxOptions bounds the outer ones: a 64 KiB
// plaintext of one-byte options would otherwise decode into 65,000 of
// them, 10 MiB as the slice grows.
const maxInnerOptions = coapopt.MaxOptions

// parseOptions decodes CoAP options and the payload after them (RFC 7252
// §3.1), appending the options to dst, at most maxInnerOptions of them.
// Values point into b.
func parseOptions(dst []message.Option, b []byte) ([]message.Option, []byte, error) {
	id := 0
	for n := 0; len(b) > 0; n++ {
		if n == maxInnerOptions && b[0] != 0xff {
			return dst, nil, fmt.Errorf("%w: more than %d options", ErrMalformed, maxInnerOptions)
		}
		if b[0] == 0xff {
			if len(b) == 1 {
				return dst, nil, fmt.Errorf("%w: payload marker without payload", ErrMalformed)
			}
			return dst, b[1:], nil
		}
		d, l := int(b[0]>>4), int(b[0]&15)
		b = b[1:]
		var err error
		if d, b, err = parseExt(d, b); err != nil {
			return dst, nil, err
		}
		if l, b, err = parseExt(l, b); err != nil {
			return dst, nil, err
		}
		if id += d; id > 0xffff {
			return dst, nil, fmt.Errorf("%w: option number %d too large", ErrMalformed, id)
		}
		if len(b) < l {
			return dst, nil, fmt.Errorf("%w: option %d value of %d bytes overruns the message", ErrMalformed, id, l)
		}
		dst = append(dst, message.Option{ID: message.OptionID(id), Value: b[:l:l]})
		b = b[l:]
	}
	return dst, nil, nil
}

func parseExt(v int, b []byte) (int, []byte, error) {
	switch v {
	case 13:
		if len(b) < 1 {
			return 0, nil, fmt.Errorf("%w: truncated option", ErrMalformed)
		}
		return 13 + int(b[0]), b[1:], nil
	case 14:
		if len(b) < 2 {
			return 0, nil, fmt.Errorf("%w: truncated option", ErrMalformed)
		}
		return 269 + (int(b[0])<<8 | int(b[1])), b[2:], nil
	case 15:
		return 0, nil, fmt.Errorf("%w: reserved option nibble 15", ErrMalformed)
	}
	return v, b, nil
}
