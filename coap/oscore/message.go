package oscore

import (
	"bytes"
	"cmp"
	"crypto/cipher"
	"errors"
	"fmt"
	"slices"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Message is a CoAP request or response without its header fields (type,
// message ID, token), which OSCORE leaves to CoAP.
//
// On input, Options may come in any order. A returned Message has its
// Options sorted by number (stably: repeated options keep their order),
// ready for go-coap's encoder, and shares no memory with the input.
type Message struct {
	Code    codes.Code
	Options message.Options
	Payload []byte
}

// Use tells which key and nonce one AEAD operation used. An honest peer
// never protects two different plaintexts under the same (KeyFP, Nonce):
// the pair seen again with another ciphertext is nonce reuse (the same
// ciphertext again is a retransmission). The slices must not be modified.
type Use struct {
	KeyFP [8]byte        // the first 8 bytes of SHA-256 of the key: names it, never reveals it
	Nonce [nonceLen]byte // the AEAD nonce (§5.2)
	ID    []byte         // the Sender ID the nonce was built from
	PIV   []byte         // the Partial IV the nonce was built from
}

// Exchange binds responses to the request they answer: the request's kid
// and Partial IV go into every response's AAD, and a response without a
// Partial IV of its own reuses the request's nonce (§5.4, §8.3). It also
// holds the per-request replay state. The slices must not be modified.
type Exchange struct {
	KID        []byte // the request's kid: the client's Sender ID
	PIV        []byte // the request's Partial IV
	KIDContext []byte // the request's kid context; nil when absent
	// Fresh (server side) reports that the replay window vouched for the
	// request and recorded its Partial IV. It is false while the window
	// is not initialised (after New or ForgetReplayWindow): the request
	// verified, but may be a replay. Answer it 4.01 with an Echo option,
	// and call InitReplayWindow for the request that returns the Echo
	// value (Appendix B.1.2).
	Fresh bool
	// Observe reports an Observe option in the request (RFC 7641).
	Observe bool
	// Request is the nonce and key that protected the request.
	Request Use

	owner     *Context
	client    bool   // made by ProtectRequest
	seq       uint64 // the request's Partial IV as a number
	responded bool   // server: the request's nonce protected a response
	gotPlain  bool   // client: a response without Partial IV was accepted
	gotPIV    bool   // client: a response with a Partial IV was accepted...
	lastPIV   uint64 // ...the highest of them
	buf       [maxIDLen + maxPIVLen]byte
	// aad is the AAD of the request and of all its responses (§5.4); here
	// rather than on the stack, where the AEAD interface would make it
	// escape anyway.
	aad    []byte
	aadBuf [aadBuf]byte
}

// Again returns a copy of a client's exchange for the request sent again
// byte for byte (a replay test): a response to it is opened as a first
// one, whatever answered the original.
func (x *Exchange) Again() *Exchange {
	y := *x
	y.aad = y.aadBuf[:len(x.aad)]
	y.gotPlain, y.gotPIV, y.lastPIV = false, false, 0
	return &y
}

// newExchange starts an exchange for the request (kid, piv) and computes
// its AAD.
func newExchange(c *Context, client bool, kid, piv []byte) *Exchange {
	x := &Exchange{owner: c, client: client, seq: pivValue(piv)}
	n := copy(x.buf[:], kid)
	m := copy(x.buf[n:], piv)
	x.KID, x.PIV = x.buf[:n:n], x.buf[n:n+m:n+m]
	x.aad = appendAAD(x.aadBuf[:0], AlgAESCCM16_64_128, x.KID, x.PIV)
	return x
}

// Sizes of the stack buffers for the AAD (§5.4: at most 20 + 8 + 6 bytes)
// and the OSCORE option value (flags, PIV, kid context, kid).
const (
	aadBuf    = 64
	optionBuf = 1 + maxPIVLen + 1 + 255 + maxIDLen
)

// ProtectRequest protects a client's request (§8.1) with the next Sender
// Sequence Number. The outer code is POST, or FETCH when the request
// carries Observe (§4.2). The Exchange is for UnprotectResponse.
func (c *Context) ProtectRequest(m Message) (Message, *Exchange, error) {
	if !isRequest(m.Code) {
		return Message{}, nil, fmt.Errorf("oscore: %v is not a request code", m.Code)
	}
	var pb [maxPIVLen]byte
	c.mu.Lock()
	piv, err := c.nextPIV(&pb)
	c.mu.Unlock()
	if err != nil {
		return Message{}, nil, err
	}
	x := newExchange(c, true, c.senderID, piv)
	x.Observe = has(m.Options, message.Observe)
	x.Request = Use{KeyFP: c.sealFP, Nonce: c.nonce(c.senderID, piv), ID: x.KID, PIV: x.PIV}
	var ob [optionBuf]byte
	ov := appendOptionValue(ob[:0], piv, c.senderID, true, c.idContext, c.idContext != nil)
	out, err := protect(c.seal, &x.Request.Nonce, x.aad, m, true, ov)
	if err != nil {
		return Message{}, nil, err
	}
	out.Code = codes.POST
	if x.Observe {
		out.Code = codes.FETCH
	}
	return out, x, nil
}

// UnprotectRequest verifies and decrypts a request (§8.2). The result has
// the inner code, the decrypted options with the outer Class U ones, and
// the payload. With an initialised replay window a replayed or too old
// Partial IV is ErrReplay, and an accepted one is recorded (x.Fresh); with
// an uninitialised one the request is verified but not Fresh. ErrorCode
// gives the answer to a failure.
func (c *Context) UnprotectRequest(m Message) (Message, *Exchange, error) {
	ov, err := findOption(m.Options)
	if err != nil {
		return Message{}, nil, err
	}
	if !ov.hasKID || len(ov.piv) == 0 {
		return Message{}, nil, fmt.Errorf("%w: a request needs a kid and a partial IV", ErrMalformed)
	}
	if !bytes.Equal(ov.kid, c.recipientID) {
		return Message{}, nil, fmt.Errorf("%w: kid %x", ErrUnknownKID, ov.kid)
	}
	if ov.hasKIDCtx && (c.idContext == nil || !bytes.Equal(ov.kidCtx, c.idContext)) {
		return Message{}, nil, fmt.Errorf("%w: kid context %x", ErrUnknownKID, ov.kidCtx)
	}
	x := newExchange(c, false, ov.kid, ov.piv)
	x.Request = Use{KeyFP: c.openFP, Nonce: c.nonce(ov.kid, ov.piv), ID: x.KID, PIV: x.PIV}

	// Held from the replay check to the record, so that two copies of a
	// request cannot both pass.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rw.init && !c.rw.check(x.seq, c.window) {
		return Message{}, nil, fmt.Errorf("%w: partial IV %d", ErrReplay, x.seq)
	}
	in, err := unprotect(c.open, &x.Request.Nonce, x.aad, m, true)
	if err != nil {
		return Message{}, nil, err
	}
	x.Observe = has(in.Options, message.Observe)
	if ov.hasKIDCtx {
		x.KIDContext = bytes.Clone(ov.kidCtx)
	}
	if c.rw.init {
		c.rw.mark(x.seq)
		x.Fresh = true
	}
	return in, x, nil
}

// ProtectResponse protects a server's response to x (§8.3). The outer
// code is 2.04 Changed, or 2.05 Content when the response carries Observe
// (§4.2).
//
// With ownPIV the response takes the next Sender Sequence Number as its
// Partial IV and a nonce of its own; without, it reuses the request's
// nonce. A Partial IV is used regardless whenever reusing the nonce could
// repeat it: when x is not Fresh (the request may be a replay that was
// answered before a reboot, Appendix B.1.2), when x's nonce already
// protected a response, and for Observe notifications.
func (c *Context) ProtectResponse(m Message, x *Exchange, ownPIV bool) (Message, Use, error) {
	if x == nil || x.owner != c || x.client {
		return Message{}, Use{}, errors.New("oscore: the exchange is not a request received by this context")
	}
	if !isResponse(m.Code) {
		return Message{}, Use{}, fmt.Errorf("oscore: %v is not a response code", m.Code)
	}
	observe := has(m.Options, message.Observe)
	var pb [maxPIVLen]byte
	var piv []byte
	var nonce [nonceLen]byte
	c.mu.Lock()
	usePIV := ownPIV || observe || !x.Fresh || x.responded
	if usePIV {
		var err error
		if piv, err = c.nextPIV(&pb); err != nil {
			c.mu.Unlock()
			return Message{}, Use{}, err
		}
		nonce = c.nonce(c.senderID, piv)
	} else {
		x.responded = true
		nonce = x.Request.Nonce
	}
	c.mu.Unlock()

	var ob [optionBuf]byte
	ov := appendOptionValue(ob[:0], piv, nil, false, nil, false)
	out, err := protect(c.seal, &nonce, x.aad, m, false, ov)
	if err != nil {
		return Message{}, Use{}, err
	}
	out.Code = codes.Changed
	if observe {
		out.Code = codes.Content
	}
	use := Use{KeyFP: c.sealFP, Nonce: nonce, ID: x.KID, PIV: x.PIV}
	if usePIV {
		use.ID, use.PIV = c.senderID, bytes.Clone(piv)
	}
	return out, use, nil
}

// UnprotectResponse verifies and decrypts a response to x (§8.4). Within
// one exchange a response without a Partial IV is accepted once, and
// responses with one (notifications) only in increasing order (§7.4.1):
// anything else is ErrReplay. A kid or kid context in a response is
// ignored: it would only matter for Appendix B.2.
func (c *Context) UnprotectResponse(m Message, x *Exchange) (Message, Use, error) {
	if x == nil || x.owner != c || !x.client {
		return Message{}, Use{}, errors.New("oscore: the exchange is not a request sent by this context")
	}
	ov, err := findOption(m.Options)
	if err != nil {
		return Message{}, Use{}, err
	}
	use := Use{KeyFP: c.openFP, ID: x.KID, PIV: x.PIV, Nonce: x.Request.Nonce}
	if len(ov.piv) > 0 {
		use.ID, use.PIV = c.recipientID, bytes.Clone(ov.piv)
		use.Nonce = c.nonce(c.recipientID, ov.piv)
	}
	seq := pivValue(ov.piv)

	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case len(ov.piv) == 0 && x.gotPlain:
		return Message{}, Use{}, fmt.Errorf("%w: a second response without partial IV", ErrReplay)
	case len(ov.piv) > 0 && x.gotPIV && seq <= x.lastPIV:
		return Message{}, Use{}, fmt.Errorf("%w: response partial IV %d, already at %d", ErrReplay, seq, x.lastPIV)
	}
	in, err := unprotect(c.open, &use.Nonce, x.aad, m, false)
	if err != nil {
		return Message{}, Use{}, err
	}
	if len(ov.piv) == 0 {
		x.gotPlain = true
	} else {
		x.gotPIV, x.lastPIV = true, seq
	}
	return in, use, nil
}

// findOption finds and decodes the one OSCORE option.
func findOption(opts message.Options) (optionValue, error) {
	var v []byte
	n := 0
	for _, o := range opts {
		if o.ID == OptionID {
			v = o.Value
			n++
		}
	}
	switch n {
	case 0:
		return optionValue{}, ErrNotOSCORE
	case 1:
		return parseOptionValue(v)
	}
	return optionValue{}, fmt.Errorf("%w: %d OSCORE options", ErrMalformed, n)
}

// protect builds the outer message (§4, §5.3): the Class U options and
// Observe plus the OSCORE option value ov, and as payload the ciphertext
// of m's code, Class E options and payload. Observe is also inner: with its
// value in a request, empty in a response (§4.1.3.5). The outer code is
// the caller's. Everything lands in one allocation besides the options.
func protect(aead cipher.AEAD, nonce *[nonceLen]byte, aad []byte, m Message, request bool, ov []byte) (Message, error) {
	var scratch [16]message.Option
	opts := append(scratch[:0], m.Options...)
	slices.SortStableFunc(opts, func(a, b message.Option) int { return cmp.Compare(a.ID, b.ID) })

	// Size everything first.
	ptLen, outerLen, nOuter, prev := 1, len(ov), 1, 0
	for _, o := range opts {
		if o.ID == OptionID {
			return Message{}, errors.New("oscore: the message already carries an OSCORE option")
		}
		outer, inner := place(o.ID)
		if outer {
			nOuter++
			outerLen += len(o.Value)
		}
		if inner {
			v := innerValue(o, request)
			ptLen += optionHeadLen(int(o.ID)-prev, len(v)) + len(v)
			prev = int(o.ID)
		}
	}
	if len(m.Payload) > 0 {
		ptLen += 1 + len(m.Payload)
	}
	if ptLen > maxPlain {
		return Message{}, fmt.Errorf("oscore: plaintext of %d bytes is longer than %d", ptLen, maxPlain)
	}

	buf := make([]byte, 0, outerLen+ptLen+tagLen)
	out := Message{Options: make(message.Options, 0, nOuter)}
	buf = append(buf, ov...)
	oscore := message.Option{ID: OptionID, Value: buf[:len(ov):len(ov)]}
	for _, o := range opts {
		if outer, _ := place(o.ID); !outer {
			continue
		}
		if oscore.ID != 0 && o.ID > OptionID {
			out.Options, oscore.ID = append(out.Options, oscore), 0
		}
		i := len(buf)
		buf = append(buf, o.Value...)
		out.Options = append(out.Options, message.Option{ID: o.ID, Value: buf[i:len(buf):len(buf)]})
	}
	if oscore.ID != 0 {
		out.Options = append(out.Options, oscore)
	}

	p0 := len(buf)
	buf = append(buf, byte(m.Code))
	prev = 0
	for _, o := range opts {
		if _, inner := place(o.ID); inner {
			buf = appendOption(buf, prev, o.ID, innerValue(o, request))
			prev = int(o.ID)
		}
	}
	if len(m.Payload) > 0 {
		buf = append(append(buf, 0xff), m.Payload...)
	}
	// In place: Seal allows dst to alias the plaintext exactly, and buf
	// has room for the tag.
	pt := buf[p0:]
	out.Payload = aead.Seal(pt[:0], nonce[:], pt, aad)
	return out, nil
}

// place tells where an option goes: Class U outside, Class E inside, and
// Observe both (§4.1).
func place(id message.OptionID) (outer, inner bool) {
	switch {
	case id == message.Observe:
		return true, true
	case classU(id):
		return true, false
	}
	return false, true
}

// innerValue is the value o takes inside: an Observe in a response is
// empty there, its value being only for the outer option (§4.1.3.5.2).
func innerValue(o message.Option, request bool) []byte {
	if o.ID == message.Observe && !request {
		return nil
	}
	return o.Value
}

// unprotect verifies and decrypts m's payload and merges the inner options
// with m's outer Class U ones (§8.2, §8.4). Outer Class E options are
// dropped: they are not protected (§4.1.1). Observe: a request's inner one
// counts; a response's inner one is empty and takes the outer value.
func unprotect(aead cipher.AEAD, nonce *[nonceLen]byte, aad []byte, m Message, request bool) (Message, error) {
	if len(m.Payload) < tagLen+1 {
		return Message{}, fmt.Errorf("%w: ciphertext of %d bytes is too short", ErrMalformed, len(m.Payload))
	}
	if len(m.Payload) > maxPlain+tagLen {
		return Message{}, fmt.Errorf("%w: ciphertext of %d bytes is too long", ErrMalformed, len(m.Payload))
	}
	outerLen, nOuter := 0, 0
	var observe []byte
	hasObserve := false
	for _, o := range m.Options {
		switch {
		case classU(o.ID):
			outerLen += len(o.Value)
			nOuter++
		case o.ID == message.Observe && !request && !hasObserve:
			observe, hasObserve = o.Value, true
			outerLen += len(o.Value)
		}
	}
	buf := make([]byte, 0, len(m.Payload)-tagLen+outerLen)
	pt, err := aead.Open(buf, nonce[:], m.Payload, aad)
	if err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	code := codes.Code(pt[0])
	if request && !isRequest(code) || !request && !isResponse(code) {
		return Message{}, fmt.Errorf("%w: inner code %v", ErrMalformed, code)
	}
	opts, payload, err := parseOptions(make(message.Options, 0, 8+nOuter), pt[1:])
	if err != nil {
		return Message{}, err
	}
	buf = pt
	if hasObserve {
		// One copy, however many inner Observe options point at it.
		j := len(buf)
		buf = append(buf, observe...)
		observe = buf[j:len(buf):len(buf)]
	}
	for i, o := range opts {
		switch o.ID {
		case OptionID:
			return Message{}, fmt.Errorf("%w: an OSCORE option inside", ErrMalformed)
		case message.Observe:
			if hasObserve {
				opts[i].Value = observe
			}
		}
	}
	for _, o := range m.Options {
		if classU(o.ID) {
			j := len(buf)
			buf = append(buf, o.Value...)
			opts = append(opts, message.Option{ID: o.ID, Value: buf[j:len(buf):len(buf)]})
		}
	}
	slices.SortStableFunc(opts, func(a, b message.Option) int { return cmp.Compare(a.ID, b.ID) })
	return Message{Code: code, Options: opts, Payload: payload}, nil
}

func has(opts message.Options, id message.OptionID) bool {
	for _, o := range opts {
		if o.ID == id {
			return true
		}
	}
	return false
}

// isRequest reports a request code: class 0, not Empty.
func isRequest(c codes.Code) bool { return c != codes.Empty && c < 32 }

// isResponse reports a response code: class 2, 4 or 5 (the others are
// reserved or signalling).
func isResponse(c codes.Code) bool {
	switch c >> 5 {
	case 2, 4, 5:
		return true
	}
	return false
}
