package coap

import (
	"bytes"
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
	ctx    *oscore.Context
	sender *senderSeq
}

// senderSeq is the one sequence of Partial IVs under a Sender Key: the
// contexts of every recipient that the key serves draw from it (their
// nonces differ in nothing else).
type senderSeq struct {
	mu    sync.Mutex
	file  *SeqFile
	path  string // the file's absolute path
	next  uint64 // the next number to use
	limit uint64 // the first number not reserved
}

// seqBlock is how many sender sequence numbers are reserved at once.
const seqBlock = 256

var (
	oscoreMu  sync.Mutex
	oscoreCtx = map[string]*OSCORE{}    // by contextKey
	senders   = map[string]*senderSeq{} // by senderKey
)

// NewOSCORE returns the process's OSCORE context for p, made on first use:
// two boards configured with one context share it, and contexts for
// several recipients under one Sender Key share its sequence numbers. seq
// keeps the sender sequence number (nil: DefaultSeqFile). One Sender Key
// has one sequence file in a process: naming another for it is an error,
// as the two sequences would repeat each other's nonces.
func NewOSCORE(p oscore.Params, seq *SeqFile) (*OSCORE, error) {
	ctx, err := oscore.New(p)
	if err != nil {
		return nil, fmt.Errorf("coap: oscore: %w", err)
	}
	if seq == nil {
		seq = NewSeqFile(DefaultSeqFile(p))
	}
	path, err := filepath.Abs(seq.Path())
	if err != nil {
		return nil, fmt.Errorf("coap: oscore: sequence file %s: %w", seq.Path(), err)
	}
	oscoreMu.Lock()
	defer oscoreMu.Unlock()
	sk := senderKey(p)
	s := senders[sk]
	switch {
	case s == nil:
		s = &senderSeq{file: seq, path: path}
	case s.path != path:
		return nil, fmt.Errorf("coap: oscore: sender ID %x under this master secret already keeps its sequence number in %s, not %s: two sequences under one key would repeat nonces", p.SenderID, s.path, path)
	}
	key := contextKey(p)
	if o := oscoreCtx[key]; o != nil {
		return o, nil
	}
	senders[sk] = s
	o := &OSCORE{ctx: ctx, sender: s}
	oscoreCtx[key] = o
	return o, nil
}

// senderKey names a Sender Key and the nonces made with it (RFC 8613
// §3.2.1, §5.2) without revealing the secret: the inputs of both, which
// leave the Recipient ID out.
func senderKey(p oscore.Params) string {
	return paramsKey(p.MasterSecret, p.MasterSalt, p.SenderID, p.IDContext)
}

// contextKey names a whole context, its recipient included.
func contextKey(p oscore.Params) string {
	return paramsKey(p.MasterSecret, p.MasterSalt, p.SenderID, p.IDContext, p.RecipientID)
}

// paramsKey is a fingerprint of the byte strings in fields.
func paramsKey(fields ...[]byte) string {
	h := sha256.New()
	for _, b := range fields {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// DefaultSeqFile is where the bench keeps its sender sequence number for
// context p when the bench file names no file: under the user's state
// directory, named after a fingerprint of p's Sender Key, which the
// contexts for all its recipients share.
func DefaultSeqFile(p oscore.Params) string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "fudbench", "oscore-"+senderKey(p)+".seq")
}

// protect protects a request under the next sender sequence number,
// reserving a block first when the reserved ones are used up. The block
// starts past every number used, even when the file was found behind
// them (removed, or restored from an old copy), so the file always
// covers the number used.
func (o *OSCORE) protect(m oscore.Message) (oscore.Message, *oscore.Exchange, error) {
	s := o.sender
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next >= s.limit {
		first, err := s.file.reserve(s.next, seqBlock)
		if err != nil {
			return oscore.Message{}, nil, fmt.Errorf("oscore: %w", err)
		}
		s.next, s.limit = first, first+seqBlock
	}
	o.ctx.SetSenderSeq(s.next)
	out, x, err := o.ctx.ProtectRequest(m)
	// A number taken is used up, even by a request that failed.
	s.next = max(s.next, o.ctx.SenderSeq())
	return out, x, err
}

// unprotect opens a response to x.
func (o *OSCORE) unprotect(m oscore.Message, x *oscore.Exchange) (oscore.Message, oscore.Use, error) {
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
// its OSCORE message and keeps its exchange for the response, and a copy
// of it as it was sent for Capture.
func (c *Client) protectRequest(code codes.Code, opts message.Options, payload []byte) (codes.Code, message.Options, []byte, error) {
	m, x, err := c.osc.protect(oscore.Message{Code: code, Options: opts, Payload: payload})
	if err != nil {
		return 0, nil, nil, err
	}
	c.oscX, c.oscSent = x, *x
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
	// OSCORE: the request's exchange as it was sent, before any answer
	// (an exchange takes one answer without a Partial IV: a device that
	// acts on the request again answers under the same nonce), and the
	// context that opens answers to it.
	x    *oscore.Exchange
	osc  *OSCORE
	dtls bool
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lastReq) == 0 {
		return nil
	}
	cp := &Captured{datagram: bytes.Clone(c.lastReq), dtls: c.dtlsOpts != nil}
	if c.oscX != nil {
		x := c.oscSent
		cp.x, cp.osc = &x, c.osc
	}
	return cp
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
		// Each replay is checked against the request as it was sent: the
		// device's answer under the request's nonce is one the original
		// exchange already took.
		in, _, err := cp.osc.unprotect(oscore.Message{Code: m.Code, Options: m.Options, Payload: m.Payload}, cp.x.Again())
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
