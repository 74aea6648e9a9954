// Package oscore implements OSCORE, Object Security for Constrained RESTful
// Environments (RFC 8613): end-to-end protection of CoAP requests and
// responses under a pre-shared Security Context. It serves the bench's CoAP
// client and the simulated device's CoAP server alike.
//
// A Context holds one Security Context (§3): the Common, Sender and
// Recipient Contexts derived from Params with HKDF. The client calls
// ProtectRequest and UnprotectResponse, the server UnprotectRequest and
// ProtectResponse; an Exchange binds a response to the request it answers.
// Messages are handled without their header (type, message ID, token),
// which OSCORE leaves to CoAP: callers encode and decode datagrams as
// before, with go-coap's option types.
//
// Uri-Host, Uri-Port, Hop-Limit, Proxy-Uri and Proxy-Scheme stay outside,
// readable by proxies (Class U); Observe goes both inside and outside; every
// other option is encrypted (Class E), Block1, Block2, Size1, Size2, Echo,
// Request-Tag and Max-Age among them, so block-wise transfer happens inside
// (§4.1.3.4). The outer code is POST (FETCH with Observe) for requests and
// 2.04 Changed (2.05 Content with Observe) for responses (§4.2). A request
// carries the kid context when the Params have an ID Context.
//
// Every protect and unprotect reports the AEAD nonce it used and a
// fingerprint of the key (Use), so that the bench can catch a device that
// reuses a nonce.
//
// The server side models the recovery of Appendix B.1.2: a new Context, or
// one whose replay window was forgotten (a reboot that lost RAM), cannot
// judge the freshness of requests. It still verifies them, but marks the
// Exchange as not Fresh and answers it under a Partial IV of its own; the
// device answers 4.01 with an Echo option (RFC 9175) and, when a request
// returns the Echo value, calls InitReplayWindow. StartReplayWindow is for
// a context known to be brand new.
//
// What it is not: only AES-CCM-16-64-128 (COSE algorithm 10) with
// HKDF-SHA-256 (-10) is implemented; a Context has one Recipient; there is
// no Group OSCORE, no re-derivation of the context (Appendix B.2), no
// decomposition of Proxy-Uri (§4.1.3.3) and no mapping to HTTP.
// Persisting the Sender Sequence Number across reboots (Appendix B.1.1) is
// the caller's business: SenderSeq and SetSenderSeq are the hooks.
package oscore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/pion/dtls/v3/pkg/crypto/ccm"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Option numbers.
const (
	// OptionID is the OSCORE option (RFC 8613 §2).
	OptionID message.OptionID = 9
	// EchoID is the Echo option (RFC 9175 §2.2), with which a server that
	// lost its replay window asks for proof of freshness.
	EchoID message.OptionID = 252
	// hopLimitID is the Hop-Limit option (RFC 8768), Class U.
	hopLimitID message.OptionID = 16
)

// Algorithms (COSE numbers), the only ones implemented.
const (
	AlgAESCCM16_64_128 = 10  // AEAD: AES-CCM, 128-bit key, 64-bit tag, 13-byte nonce
	AlgHKDFSHA256      = -10 // key derivation: HKDF with SHA-256
)

// Limits and defaults.
const (
	DefaultReplayWindow = 32 // §3.2.2
	MaxReplayWindow     = 64 // the window is one 64-bit word
	// MaxSenderSeq is the largest Sender Sequence Number (§7.2.1): a
	// Partial IV has at most 5 bytes.
	MaxSenderSeq = 1<<40 - 1

	keyLen    = 16
	nonceLen  = 13
	tagLen    = 8
	maxIDLen  = nonceLen - 6 // §3.3: an ID must fit the nonce
	maxPIVLen = 5
	// maxPlain is the largest plaintext CCM takes with a 13-byte nonce
	// (L = 2 length bytes).
	maxPlain = 1<<16 - 1
)

// Errors, for errors.Is; each is returned wrapped with detail. ErrorCode
// maps them to the response a server sends.
var (
	// ErrNotOSCORE: the message carries no OSCORE option.
	ErrNotOSCORE = errors.New("oscore: no OSCORE option")
	// ErrMalformed: the OSCORE option value, the ciphertext or the decrypted
	// plaintext does not decode (§8.2 step 2: 4.02 Bad Option).
	ErrMalformed = errors.New("oscore: malformed message")
	// ErrUnknownKID: the kid (or kid context) names no Recipient of this
	// Context (§8.2 step 2: 4.01 Unauthorized).
	ErrUnknownKID = errors.New("oscore: security context not found")
	// ErrDecrypt: the AEAD tag does not verify (§8.2 step 6: 4.00 Bad
	// Request).
	ErrDecrypt = errors.New("oscore: decryption failed")
	// ErrReplay: the Partial IV was seen before or is older than the replay
	// window (§7.4: 4.01 Unauthorized).
	ErrReplay = errors.New("oscore: replay detected")
	// ErrSeqExhausted: the Sender Sequence Number passed MaxSenderSeq
	// (§7.2.1); the context must be replaced.
	ErrSeqExhausted = errors.New("oscore: sender sequence number exhausted")
)

// ErrorCode returns the response code and diagnostic payload that RFC 8613
// §7.4 and §8.2 prescribe for a failed UnprotectRequest. The error response
// is sent unprotected; the RFC also suggests an Outer Max-Age of 0.
// ErrNotOSCORE has no prescribed answer: 4.01 is what a resource that
// requires OSCORE says. Other errors map to 5.00; nil maps to (0, "").
func ErrorCode(err error) (codes.Code, string) {
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, ErrMalformed):
		return codes.BadOption, "Failed to decode COSE"
	case errors.Is(err, ErrUnknownKID):
		return codes.Unauthorized, "Security context not found"
	case errors.Is(err, ErrDecrypt):
		return codes.BadRequest, "Decryption failed"
	case errors.Is(err, ErrReplay):
		return codes.Unauthorized, "Replay detected"
	case errors.Is(err, ErrNotOSCORE):
		return codes.Unauthorized, ""
	}
	return codes.InternalServerError, ""
}

// Params are the input parameters of a Security Context (§3.2).
type Params struct {
	MasterSecret []byte
	MasterSalt   []byte // nil or empty: the default, empty salt
	SenderID     []byte // at most 7 bytes; may be empty
	RecipientID  []byte // at most 7 bytes; may be empty; differs from SenderID
	IDContext    []byte // nil: absent; at most 255 bytes (it travels in the kid context)
	AEAD         int    // COSE AEAD algorithm; 0 means AlgAESCCM16_64_128, the only one
	HKDF         int    // COSE HKDF algorithm; 0 means AlgHKDFSHA256, the only one
	ReplayWindow int    // replay window size, 1 to MaxReplayWindow; 0 means DefaultReplayWindow
	// SSNFreq is how often, in messages, the caller stores its Sender
	// Sequence Number (Appendix B.1.1, libcoap's ssn_freq). The Context does
	// not use it; it is carried for the configuration file. 0: unset.
	SSNFreq int
}

// String leaves the Master Secret out, so that printing Params cannot leak
// it.
func (p Params) String() string {
	return fmt.Sprintf("{MasterSecret:(%d bytes) MasterSalt:%x SenderID:%x RecipientID:%x IDContext:%x AEAD:%d HKDF:%d ReplayWindow:%d SSNFreq:%d}",
		len(p.MasterSecret), p.MasterSalt, p.SenderID, p.RecipientID, p.IDContext, p.AEAD, p.HKDF, p.ReplayWindow, p.SSNFreq)
}

// check validates p; the messages name fields, never their values.
func (p Params) check() error {
	switch {
	case len(p.MasterSecret) == 0:
		return errors.New("empty master secret")
	case p.AEAD != 0 && p.AEAD != AlgAESCCM16_64_128:
		return fmt.Errorf("AEAD algorithm %d not supported (only %d, AES-CCM-16-64-128)", p.AEAD, AlgAESCCM16_64_128)
	case p.HKDF != 0 && p.HKDF != AlgHKDFSHA256:
		return fmt.Errorf("HKDF algorithm %d not supported (only %d, HKDF-SHA-256)", p.HKDF, AlgHKDFSHA256)
	case len(p.SenderID) > maxIDLen:
		return fmt.Errorf("sender ID of %d bytes is longer than %d", len(p.SenderID), maxIDLen)
	case len(p.RecipientID) > maxIDLen:
		return fmt.Errorf("recipient ID of %d bytes is longer than %d", len(p.RecipientID), maxIDLen)
	case bytes.Equal(p.SenderID, p.RecipientID):
		// §3.3: equal IDs would give both directions one key and nonces.
		return errors.New("sender and recipient ID are equal")
	case len(p.IDContext) > 255:
		return fmt.Errorf("ID context of %d bytes is longer than 255", len(p.IDContext))
	case p.ReplayWindow < 0 || p.ReplayWindow > MaxReplayWindow:
		return fmt.Errorf("replay window %d out of range 1..%d", p.ReplayWindow, MaxReplayWindow)
	case p.SSNFreq < 0:
		return fmt.Errorf("negative ssn_freq %d", p.SSNFreq)
	}
	return nil
}

// Context is one OSCORE Security Context. Its methods are safe for
// concurrent use.
type Context struct {
	senderID, recipientID []byte
	idContext             []byte // nil: absent
	iv                    [nonceLen]byte
	seal, open            cipher.AEAD // Sender Key, Recipient Key
	sealFP, openFP        [8]byte
	window                int

	mu  sync.Mutex
	ssn uint64 // next Sender Sequence Number
	rw  replayWindow
}

// keys is the output of the derivation (§3.2.1).
type keys struct {
	sender, recipient [keyLen]byte
	iv                [nonceLen]byte
}

// derive runs the key derivation of §3.2.1 on checked params.
func derive(p Params) (keys, error) {
	var k keys
	var buf [300]byte // info: at most 5 + 8 + 258 + 1 + 4 + 1 bytes
	for _, d := range []struct {
		id  []byte
		typ string
		out []byte
	}{
		{p.SenderID, "Key", k.sender[:]},
		{p.RecipientID, "Key", k.recipient[:]},
		{nil, "IV", k.iv[:]},
	} {
		info := appendInfo(buf[:0], d.id, p.IDContext, AlgAESCCM16_64_128, d.typ, len(d.out))
		// An empty salt is HMAC's all-zero key, which is the RFC's default.
		v, err := hkdf.Key(sha256.New, p.MasterSecret, p.MasterSalt, string(info), len(d.out))
		if err != nil {
			return keys{}, fmt.Errorf("hkdf: %w", err)
		}
		copy(d.out, v)
		clear(v)
	}
	return k, nil
}

// New derives a Security Context from p. Its Sender Sequence Number starts
// at 0 and its replay window is not initialised (see UnprotectRequest).
func New(p Params) (*Context, error) {
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("oscore: %w", err)
	}
	k, err := derive(p)
	if err != nil {
		return nil, fmt.Errorf("oscore: %w", err)
	}
	defer clear(k.sender[:])
	defer clear(k.recipient[:])
	c := &Context{
		senderID:    bytes.Clone(p.SenderID),
		recipientID: bytes.Clone(p.RecipientID),
		iv:          k.iv,
		window:      p.ReplayWindow,
	}
	if c.senderID == nil {
		c.senderID = []byte{}
	}
	if c.recipientID == nil {
		c.recipientID = []byte{}
	}
	if p.IDContext != nil {
		c.idContext = bytes.Clone(p.IDContext)
	}
	if c.window == 0 {
		c.window = DefaultReplayWindow
	}
	if c.seal, err = newAEAD(k.sender[:]); err != nil {
		return nil, err
	}
	if c.open, err = newAEAD(k.recipient[:]); err != nil {
		return nil, err
	}
	c.sealFP, c.openFP = fingerprint(k.sender[:]), fingerprint(k.recipient[:])
	return c, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("oscore: aes: %w", err)
	}
	a, err := ccm.NewCCM(b, tagLen, nonceLen)
	if err != nil {
		return nil, fmt.Errorf("oscore: ccm: %w", err)
	}
	return a, nil
}

// fingerprint names a key without revealing it: a truncated SHA-256.
func fingerprint(key []byte) (fp [8]byte) {
	s := sha256.Sum256(key)
	copy(fp[:], s[:])
	return fp
}

// SenderSeq returns the Sender Sequence Number the next protected message
// with a Partial IV will use.
func (c *Context) SenderSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ssn
}

// SetSenderSeq sets the next Sender Sequence Number, e.g. to a value
// restored after a reboot (Appendix B.1.1). Setting it back to a number
// already used makes nonces repeat: never do that outside a test.
func (c *Context) SetSenderSeq(n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ssn = n
}

// nextPIV takes the next Sender Sequence Number as a Partial IV; c.mu is
// held.
func (c *Context) nextPIV(buf *[maxPIVLen]byte) ([]byte, error) {
	if c.ssn > MaxSenderSeq {
		return nil, fmt.Errorf("%w: next would be %d", ErrSeqExhausted, c.ssn)
	}
	c.ssn++
	return putPIV(buf, c.ssn-1), nil
}

// putPIV encodes n as a Partial IV: big-endian without leading zero bytes,
// 0 as one zero byte (§6.1).
func putPIV(buf *[maxPIVLen]byte, n uint64) []byte {
	i := maxPIVLen - 1
	buf[i] = byte(n)
	for n >>= 8; n != 0; n >>= 8 {
		i--
		buf[i] = byte(n)
	}
	return buf[i:]
}

// pivValue decodes a Partial IV of at most 5 bytes.
func pivValue(piv []byte) uint64 {
	var n uint64
	for _, b := range piv {
		n = n<<8 | uint64(b)
	}
	return n
}

// nonce computes the AEAD nonce of §5.2 from the ID of the endpoint that
// chose the Partial IV.
func (c *Context) nonce(id, piv []byte) (n [nonceLen]byte) {
	n[0] = byte(len(id))
	copy(n[1+maxIDLen-len(id):1+maxIDLen], id)
	copy(n[nonceLen-len(piv):], piv)
	for i := range n {
		n[i] ^= c.iv[i]
	}
	return n
}

// replayWindow is the sliding window of §7.4: top is the highest Partial IV
// accepted, and bit i of seen stands for top-i.
type replayWindow struct {
	init bool
	top  uint64
	seen uint64
}

// check reports whether seq may be accepted; window is the size.
func (w *replayWindow) check(seq uint64, window int) bool {
	switch {
	case seq > w.top:
		return true
	case w.top-seq >= uint64(window):
		return false // older than the window
	}
	return w.seen&(1<<(w.top-seq)) == 0
}

// mark records seq, which check accepted.
func (w *replayWindow) mark(seq uint64) {
	if seq > w.top {
		d := seq - w.top
		if d >= 64 {
			w.seen = 0
		} else {
			w.seen <<= d
		}
		w.top = seq
		w.seen |= 1
		return
	}
	w.seen |= 1 << (w.top - seq)
}

// StartReplayWindow initialises an empty replay window: no Partial IV seen
// yet. It is for a Security Context known to be new, whose peer has sent
// nothing under it before; after a reboot use the Echo recovery instead
// (InitReplayWindow).
func (c *Context) StartReplayWindow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rw = replayWindow{init: true}
}

// ForgetReplayWindow models a reboot that lost the replay window: until
// InitReplayWindow, requests are verified but not Fresh.
func (c *Context) ForgetReplayWindow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rw = replayWindow{}
}

// InitReplayWindow initialises the replay window from x, a request the
// caller has found fresh by its Echo option (Appendix B.1.2): x's Partial
// IV becomes the lower limit, so it and every older one count as seen, and
// x becomes Fresh. If the window is already initialised (another request
// came first), x is checked and recorded as any request is, and a replay
// is ErrReplay. x must come from c's UnprotectRequest.
func (c *Context) InitReplayWindow(x *Exchange) error {
	if x == nil || x.owner != c || x.client {
		return errors.New("oscore: the exchange is not a request received by this context")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if x.Fresh {
		return nil
	}
	if !c.rw.init {
		c.rw = replayWindow{init: true, top: x.seq, seen: ^uint64(0)}
		x.Fresh = true
		return nil
	}
	if !c.rw.check(x.seq, c.window) {
		return fmt.Errorf("%w: partial IV %d", ErrReplay, x.seq)
	}
	c.rw.mark(x.seq)
	x.Fresh = true
	return nil
}

// NewEcho returns a fresh Echo option value (RFC 9175 §2.2): 8 random
// bytes, unpredictable to a client that would pre-compute requests.
func NewEcho() []byte {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

// Echo returns the value of the first Echo option in opts.
func Echo(opts message.Options) ([]byte, bool) {
	for _, o := range opts {
		if o.ID == EchoID {
			return o.Value, true
		}
	}
	return nil, false
}
