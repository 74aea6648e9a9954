package coap

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/fudbench/fudbench/coap/oscore"
)

// OSCORE is the bench's side of an OSCORE security context (RFC 8613),
// shared by every client that uses it: all requests under one Sender Key
// draw from one sequence of Partial IVs, whichever device they go to and
// whichever client sends them. Numbers are reserved a block at a time in
// a SeqFile before use (Appendix B.1.1), so the bench never uses one twice,
// across crashes and processes included.
type OSCORE struct {
	mu     sync.Mutex
	ctx    *oscore.Context
	seq    *SeqFile
	block  uint64
	limit  uint64 // first number not reserved
	params oscore.Params
}

// seqBlock is how many sender sequence numbers are reserved at once.
const seqBlock = 256

var (
	oscoreMu  sync.Mutex
	oscoreCtx = map[string]*OSCORE{}
)

// NewOSCORE returns the process's OSCORE context for p, made on first use:
// two boards configured with one context share it. seq keeps the sender
// sequence number (nil: DefaultSeqFile).
func NewOSCORE(p oscore.Params, seq *SeqFile) (*OSCORE, error) {
	ctx, err := oscore.New(p)
	if err != nil {
		return nil, fmt.Errorf("coap: oscore: %w", err)
	}
	if seq == nil {
		seq = NewSeqFile(DefaultSeqFile(p))
	}
	key := contextKey(p) + "\x00" + seq.Path()
	oscoreMu.Lock()
	defer oscoreMu.Unlock()
	if o := oscoreCtx[key]; o != nil {
		return o, nil
	}
	o := &OSCORE{ctx: ctx, seq: seq, block: seqBlock, params: p}
	oscoreCtx[key] = o
	return o, nil
}

// contextKey names a sender context without revealing its secret.
func contextKey(p oscore.Params) string {
	h := sha256.New()
	for _, b := range [][]byte{p.MasterSecret, p.MasterSalt, p.SenderID, p.RecipientID, p.IDContext} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// DefaultSeqFile is where the bench keeps its sender sequence number for
// context p when the bench file names no file: under the user's state
// directory, named after a fingerprint of the context.
func DefaultSeqFile(p oscore.Params) string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "fudbench", "oscore-"+contextKey(p)+".seq")
}

// protect protects a request, reserving sequence numbers first when the
// block is used up.
func (o *OSCORE) protect(m oscore.Message) (oscore.Message, *oscore.Exchange, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ctx.SenderSeq() >= o.limit {
		first, err := o.seq.Reserve(o.block)
		if err != nil {
			return oscore.Message{}, nil, fmt.Errorf("oscore: %w", err)
		}
		o.ctx.SetSenderSeq(max(first, o.ctx.SenderSeq()))
		o.limit = first + o.block
	}
	return o.ctx.ProtectRequest(m)
}

// unprotect opens a response to x.
func (o *OSCORE) unprotect(m oscore.Message, x *oscore.Exchange) (oscore.Message, oscore.Use, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ctx.UnprotectResponse(m, x)
}

// NonceSeen is one AEAD nonce the device used, as the client saw it in an
// authenticated message: the key's fingerprint (never the key), the nonce
// and a hash of the ciphertext, so that a byte-identical copy is told
// from a reuse.
type NonceSeen struct {
	Proto  string // "oscore" or "dtls"
	KeyFP  [8]byte
	Nonce  []byte
	CTHash uint64
	// Label names the nonce for a reader: "sender ID 0x01, partial IV 7".
	Label string
}

// pivNumber is a Partial IV as the sequence number it encodes.
func pivNumber(piv []byte) uint64 {
	var n uint64
	for _, b := range piv {
		n = n<<8 | uint64(b)
	}
	return n
}

func ctHash(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// hasOption reports whether opts hold id.
func hasOption(opts message.Options, id message.OptionID) bool {
	for _, o := range opts {
		if o.ID == id {
			return true
		}
	}
	return false
}

// UseOSCORE protects every request of the client with o (RFC 8613): the
// client then speaks OSCORE over plain UDP, inner block-wise. Set it
// before the first request.
func (c *Client) UseOSCORE(o *OSCORE) { c.osc = o }

// protectRequest turns the plain request (code, options, payload) into
// its OSCORE message and keeps its exchange for the response.
func (c *Client) protectRequest(code codes.Code, opts message.Options, payload []byte) (codes.Code, message.Options, []byte, error) {
	m, x, err := c.osc.protect(oscore.Message{Code: code, Options: opts, Payload: payload})
	if err != nil {
		return 0, nil, nil, err
	}
	c.oscX = x
	return m.Code, m.Options, m.Payload, nil
}

// unprotectResponse replaces the decoded response in c.msg with the one
// inside its OSCORE protection, and reports the device's nonce. A
// response without the OSCORE option is the device's OSCORE layer
// refusing the request (RFC 8613 §8.2: such errors go unprotected) and is
// taken as it is; one that does not verify is no answer at all.
func (c *Client) unprotectResponse() bool {
	m := &c.msg
	if !hasOption(m.Options, oscore.OptionID) {
		return true
	}
	if c.oscX == nil {
		return false
	}
	ct := ctHash(m.Payload)
	in, use, err := c.osc.unprotect(oscore.Message{Code: m.Code, Options: m.Options, Payload: m.Payload}, c.oscX)
	if err != nil {
		return false
	}
	if c.OnNonce != nil {
		c.OnNonce(NonceSeen{Proto: "oscore", KeyFP: use.KeyFP, Nonce: use.Nonce[:], CTHash: ct,
			Label: fmt.Sprintf("sender ID %q, partial IV %d", fmt.Sprintf("%x", use.ID), pivNumber(use.PIV))})
	}
	m.Code, m.Options, m.Payload = in.Code, in.Options, in.Payload
	return true
}

// Captured is a request as it went on the wire, kept so that it can be
// sent again byte for byte after a power cut.
type Captured struct {
	datagram []byte
	x        *oscore.Exchange // OSCORE: the request's exchange, to open answers
	dtls     bool
}

func (cp *Captured) String() string {
	switch {
	case cp.x != nil:
		return fmt.Sprintf("OSCORE, partial IV %x", cp.x.PIV)
	case cp.dtls:
		return "a DTLS record"
	}
	return "plain CoAP"
}

// Capture returns the last request the client sent, as it went on the
// wire (nil before the first).
func (c *Client) Capture() *Captured {
	d := c.LastRequestDatagram()
	if d == nil {
		return nil
	}
	return &Captured{datagram: d, x: c.oscX, dtls: c.dtlsOpts != nil}
}

// What a device did with a request sent again after a power cut.
const (
	ReplayAccepted   = "accepted"   // it acted on it: a 2.xx answer
	ReplayRejected   = "rejected"   // an error answer (4.01 Replay detected)
	ReplayChallenged = "challenged" // 4.01 with an Echo option (RFC 9175)
	ReplayIgnored    = "ignored"    // no answer: a record it no longer opens, or dropped
)

// Replay sends cp again exactly as it went and reports what the device
// did with it within wait.
func (c *Client) Replay(ctx context.Context, cp *Captured, wait time.Duration) (string, error) {
	data, err := c.SendRaw(ctx, cp.datagram, wait)
	if err != nil {
		return "", err
	}
	if data == nil {
		return ReplayIgnored, nil
	}
	var m message.Message
	m.Options = make(message.Options, 0, 16)
	if _, err := coder.DefaultCoder.Decode(data, &m); err != nil {
		return ReplayRejected, nil
	}
	code, opts := m.Code, m.Options
	if cp.x != nil && hasOption(m.Options, oscore.OptionID) {
		in, _, err := c.osc.unprotect(oscore.Message{Code: m.Code, Options: m.Options, Payload: m.Payload}, cp.x.Again())
		if err != nil {
			// Not an answer to the replayed request that verifies: the
			// device did not act on it.
			return ReplayRejected, nil
		}
		code, opts = in.Code, in.Options
	}
	switch {
	case code>>5 == 2:
		return ReplayAccepted, nil
	case code == codes.Unauthorized && hasOption(opts, oscore.EchoID):
		return ReplayChallenged, nil
	}
	return ReplayRejected, nil
}
