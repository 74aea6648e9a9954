package sim

// The device's security state across power cuts: what the recovery
// bootloader caches (the DTLS session or record-layer state, the OSCORE
// sender sequence number) and how it keeps its AEAD nonces unique — the
// seed's "everything cached" and its danger.
//
// The keystore models the protected storage a device keeps keys and
// counters in (a data-flash log with checksummed entries, a secure
// element): it survives power cuts and a reflash over the probe, and each
// write is atomic (a cut during one keeps the previous value). Each write
// costs the time of programming one 16-byte entry.

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap/oscore"
	"github.com/fudbench/fudbench/sim/coapsrv"
)

// DTLS cache modes: what of a DTLS session the recovery record keeps.
const (
	DTLSCacheNone    = "none"    // a full PSK handshake after each boot
	DTLSCacheSession = "session" // the session (ID, master secret): abbreviated handshake
	DTLSCacheState   = "state"   // the record layer (keys, epoch, sequence numbers): no handshake
)

// Sequence number persistence (RFC 8613 Appendix B.1.1).
const (
	// SSNWindow: the device stores its sender sequence number a window
	// ahead before using numbers past the stored one, and at boot jumps to
	// the stored value: a number is never used twice.
	SSNWindow = "window"
	// SSNNone is the classic bug: the recovery bootloader restores the
	// sequence number its record cached at prepare and persists nothing,
	// so after each cut it uses the same numbers again.
	SSNNone = "none"
)

// Replay protection after a reboot.
const (
	// ReplayChallenge: after a boot the device does not know which
	// requests it has seen; it answers the first secured request with
	// 4.01 and an Echo option (RFC 9175, RFC 8613 Appendix B.1.2) and
	// acts on a request only once its Echo value comes back.
	ReplayChallenge = "challenge"
	// ReplayAccept is the bug: the device takes its empty replay window
	// as valid and acts on an old request sent again.
	ReplayAccept = "accept"
)

const (
	defaultSSNWindow = 32
	keystoreEntry    = 16 // bytes programmed per keystore write
)

// DevOSCORE is the development OSCORE security context of simulated
// boards, from the device's side (the bench's has the IDs swapped). It is
// public: never use it on a real device.
func DevOSCORE() oscore.Params {
	return oscore.Params{
		MasterSecret: []byte("fudbench-dev-oscore-NOT-SECRET!!"),
		MasterSalt:   []byte{0x9e, 0x7c, 0xa9, 0x22, 0x23, 0x78, 0x63, 0x40},
		SenderID:     []byte{},     // the device
		RecipientID:  []byte{0x01}, // the bench
		ReplayWindow: 32,
	}
}

// keystore is the board's protected storage (see the file comment).
type keystore struct {
	mu       sync.Mutex
	oscMark  uint64 // OSCORE: next sender sequence number not yet covered
	dtlsMark uint64 // DTLS (state): next record sequence number not yet covered
	cache    secCache
	writes   uint64
}

// secCache is what the app caches at prepare for the recovery
// bootloader: the security context of the session that prepared the
// update.
type secCache struct {
	valid       bool
	oscSSN      uint64 // the sender sequence number at prepare
	dtlsSession dtls.Session
	dtlsState   []byte
	dtlsSeq     uint64 // the next record sequence number at prepare
}

// secRAM is the security state of one boot.
type secRAM struct {
	osc   *oscore.Context
	echo  []byte // the Echo value this boot challenges with
	fresh bool   // a request's freshness was verified since boot
	// restored is set when the DTLS record layer was restored from the
	// cache (no handshake): freshness must then be verified too.
	restored bool
	sessions *sessionStore
	echoes   int
}

// persist writes the keystore; false if power went during the write.
func (b *Board) persist(ep uint64, f func(ks *keystore)) bool {
	if !b.sleep(ep, b.scaled(b.cfg.ProgramTime*keystoreEntry/time.Duration(max(b.cfg.WriteAlign, 1)))) {
		return false
	}
	b.ks.mu.Lock()
	defer b.ks.mu.Unlock()
	if !b.alive(ep) {
		return false
	}
	f(&b.ks)
	b.ks.writes++
	return true
}

// initSecurity sets up a boot's security state: the OSCORE context with
// its sender sequence number restored (B.1.1, or the cached one with
// ssn_persist: none in recovery), the session store for abbreviated DTLS
// handshakes.
func (b *Board) initSecurity(ep uint64, r *ram) bool {
	r.sec.fresh = b.cfg.ReplayAfterBoot == ReplayAccept
	r.sec.sessions = &sessionStore{b: b}
	if b.cfg.OSCORE == nil {
		return true
	}
	osc, err := oscore.New(*b.cfg.OSCORE)
	if err != nil {
		b.log.Error("oscore context", "err", err)
		return true
	}
	r.sec.osc = osc
	b.ks.mu.Lock()
	mark, cache := b.ks.oscMark, b.ks.cache
	b.ks.mu.Unlock()
	if r.mode == ModeRecovery && b.cfg.SSNPersist == SSNNone && cache.valid {
		osc.SetSenderSeq(cache.oscSSN)
		b.console.Printf("BL oscore: sender sequence number %d restored from the recovery record", cache.oscSSN)
	} else {
		osc.SetSenderSeq(mark)
		next := mark + b.ssnWindow()
		if !b.persist(ep, func(ks *keystore) { ks.oscMark = max(ks.oscMark, next) }) {
			return false
		}
	}
	if r.sec.fresh {
		osc.StartReplayWindow()
	}
	return true
}

func (b *Board) ssnWindow() uint64 {
	if b.cfg.SSNWindowSize > 0 {
		return uint64(b.cfg.SSNWindowSize)
	}
	return defaultSSNWindow
}

// guardOSCORE stores the sender sequence number a window ahead before the
// device uses a number the keystore does not cover yet.
func (b *Board) guardOSCORE(ep uint64, r *ram) bool {
	if b.cfg.SSNPersist == SSNNone && r.mode == ModeRecovery {
		return true
	}
	return b.guardSeq(ep, r.sec.osc.SenderSeq(), func(ks *keystore) *uint64 { return &ks.oscMark })
}

// guardDTLS does the same for the record sequence numbers of a restored
// DTLS record layer.
func (b *Board) guardDTLS(ep uint64, r *ram, s *coapsrv.DTLSSession) bool {
	if b.cfg.DTLSCache != DTLSCacheState || s == nil || (b.cfg.SSNPersist == SSNNone && r.mode == ModeRecovery) {
		return true
	}
	// The answer, and an alert after it.
	return b.guardSeq(ep, s.NextSendSeq()+1, func(ks *keystore) *uint64 { return &ks.dtlsMark })
}

// guardSeq stores the mark a window past seq unless the stored one
// already covers seq; false if power went during the write.
func (b *Board) guardSeq(ep, seq uint64, mark func(*keystore) *uint64) bool {
	b.ks.mu.Lock()
	covered := seq < *mark(&b.ks)
	b.ks.mu.Unlock()
	if covered {
		return true
	}
	next := seq + b.ssnWindow()
	return b.persist(ep, func(ks *keystore) { m := mark(ks); *m = max(*m, next) })
}

// cacheSecurity is the app's part of prepare: the context of the session
// that prepared the update goes into the record for the recovery
// bootloader.
func (b *Board) cacheSecurity(ep uint64, r *ram, req *coapsrv.Request) bool {
	c := secCache{valid: true}
	if r.sec.osc != nil {
		c.oscSSN = r.sec.osc.SenderSeq()
	}
	if s := req.DTLS; s != nil {
		switch b.cfg.DTLSCache {
		case DTLSCacheSession:
			if sess, ok := s.Session(); ok {
				c.dtlsSession = sess
			}
		case DTLSCacheState:
			st, err := s.State()
			if err != nil {
				b.log.Warn("dtls state not cached", "err", err)
				break
			}
			c.dtlsState, c.dtlsSeq = st, s.NextSendSeq()
		}
	}
	return b.persist(ep, func(ks *keystore) { ks.cache = c })
}

// restoreDTLS gives a boot's DTLS server the cached record layer, so the
// bench's session goes on without a handshake.
func (b *Board) restoreDTLS(r *ram, s *coapsrv.Server) {
	if b.cfg.DTLSCache != DTLSCacheState {
		return
	}
	b.ks.mu.Lock()
	c, mark := b.ks.cache, b.ks.dtlsMark
	b.ks.mu.Unlock()
	if !c.valid || c.dtlsState == nil {
		return
	}
	// B.1.1's jump past the stored window, or the bug: the number the
	// record cached at prepare.
	seq := max(mark, c.dtlsSeq)
	if b.cfg.SSNPersist == SSNNone && r.mode == ModeRecovery {
		seq = c.dtlsSeq
	} else {
		// Store the next window at boot, before the first record, as
		// OSCORE's sender sequence number is: the first answer need not
		// wait for a keystore write.
		next := seq + b.ssnWindow()
		if !b.persist(r.epoch, func(ks *keystore) { ks.dtlsMark = max(ks.dtlsMark, next) }) {
			return
		}
	}
	if err := s.RestoreDTLS(c.dtlsState, seq, 0); err != nil {
		b.log.Warn("dtls state not restored", "err", err)
		return
	}
	r.sec.restored = true
	b.console.Printf("BL dtls: session restored from the recovery record (epoch state, next record %d), no handshake", seq)
}

// sessionStore is the device's DTLS session cache: sessions of this boot
// in RAM, and the one the recovery record cached.
type sessionStore struct {
	b    *Board
	mu   sync.Mutex
	live map[string]dtls.Session
}

func (s *sessionStore) Set(key []byte, sess dtls.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live == nil {
		s.live = map[string]dtls.Session{}
	}
	s.live[string(key)] = sess
	return nil
}

func (s *sessionStore) Get(key []byte) (dtls.Session, error) {
	s.mu.Lock()
	sess, ok := s.live[string(key)]
	s.mu.Unlock()
	if ok {
		return sess, nil
	}
	if s.b.cfg.DTLSCache == DTLSCacheSession {
		s.b.ks.mu.Lock()
		c := s.b.ks.cache
		s.b.ks.mu.Unlock()
		if c.valid && c.dtlsSession.ID != nil && bytes.Equal(c.dtlsSession.ID, key) {
			return c.dtlsSession, nil
		}
	}
	return dtls.Session{}, nil
}

func (s *sessionStore) Del(key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.live, string(key))
	return nil
}

// challenge checks a secured request's freshness after a boot: nil when
// the device may act on it, else the 4.01 answer carrying an Echo value.
func (r *ram) challenge(opts message.Options) (verified bool, echo []byte) {
	if r.sec.fresh {
		return true, nil
	}
	for _, o := range opts {
		if o.ID == message.Echo && r.sec.echo != nil && bytes.Equal(o.Value, r.sec.echo) {
			r.sec.fresh = true
			return true, nil
		}
	}
	if r.sec.echo == nil {
		r.sec.echo = make([]byte, 8)
		_, _ = rand.Read(r.sec.echo)
	}
	r.sec.echoes++
	return false, r.sec.echo
}

func echoResponse(echo []byte) *coapsrv.Response {
	return &coapsrv.Response{Code: codes.Unauthorized, ContentFormat: coapsrv.NoContentFormat,
		Options: message.Options{{ID: message.Echo, Value: echo}}}
}

// serveOSCORE is the handler of the board's OSCORE endpoint: it removes
// the protection, checks freshness after a boot, runs the firmware's
// handler on the inner request and protects the answer.
func (b *Board) serveOSCORE(ep uint64, req *coapsrv.Request) *coapsrv.Response {
	b.cpu.Lock()
	defer b.cpu.Unlock()
	r := b.current(ep)
	if r == nil || r.sec.osc == nil {
		return nil
	}
	osc := r.sec.osc
	in, x, err := osc.UnprotectRequest(oscore.Message{Code: req.Code, Options: req.Options, Payload: req.Payload})
	if err != nil {
		code, diag := oscore.ErrorCode(err)
		b.log.Debug("oscore request refused", "err", err)
		return &coapsrv.Response{Code: code, Payload: []byte(diag), ContentFormat: coapsrv.NoContentFormat}
	}
	var resp *coapsrv.Response
	reset := false
	ownPIV := false
	wasFresh := x.Fresh
	if !x.Fresh {
		ok, echo := r.challenge(in.Options)
		if ok {
			if err := osc.InitReplayWindow(x); err != nil {
				code, diag := oscore.ErrorCode(err)
				return &coapsrv.Response{Code: code, Payload: []byte(diag), ContentFormat: coapsrv.NoContentFormat}
			}
		} else {
			resp, ownPIV = echoResponse(echo), true
		}
	}
	if resp == nil {
		inner := innerRequest(req, in)
		resp, reset = b.route(ep, r, inner)
		if !b.alive(ep) {
			return nil
		}
		if resp == nil {
			return nil
		}
		// The first answers after a boot carry the device's own Partial
		// IV (RFC 8613 §7.5.2): the request's nonce may have been used
		// before the boot.
		ownPIV = !wasFresh
	}
	if ownPIV && !b.guardOSCORE(ep, r) {
		return nil
	}
	out, _, err := osc.ProtectResponse(responseMessage(resp), x, ownPIV)
	if err != nil {
		b.log.Error("oscore response not protected", "err", err)
		return &coapsrv.Response{Code: codes.InternalServerError, ContentFormat: coapsrv.NoContentFormat}
	}
	prot := &coapsrv.Response{Code: out.Code, ContentFormat: coapsrv.NoContentFormat, Payload: out.Payload, Options: out.Options}
	if reset {
		prot.AfterSend = func() { b.resetFrom(ep) }
	}
	return prot
}

// innerRequest is the request inside an OSCORE message as the firmware's
// handler sees it.
func innerRequest(outer *coapsrv.Request, in oscore.Message) *coapsrv.Request {
	r := &coapsrv.Request{Peer: outer.Peer, Code: in.Code, Type: outer.Type, MessageID: outer.MessageID,
		Token: outer.Token, Options: in.Options, Payload: in.Payload}
	var path []byte
	for _, o := range in.Options {
		switch o.ID {
		case message.URIPath:
			path = append(path, '/')
			path = append(path, o.Value...)
		case message.URIQuery:
			r.Query = append(r.Query, string(o.Value))
		}
	}
	if len(path) == 0 {
		path = []byte{'/'}
	}
	r.Path = string(path)
	return r
}

// responseMessage is a handler's answer as the message OSCORE protects.
func responseMessage(resp *coapsrv.Response) oscore.Message {
	m := oscore.Message{Code: resp.Code, Payload: resp.Payload}
	buf := make([]byte, 12)
	if resp.ContentFormat >= 0 && len(resp.Payload) > 0 {
		m.Options = m.Options.Add(message.Option{ID: message.ContentFormat, Value: putUint(buf[0:4], uint32(resp.ContentFormat))})
	}
	if bl := resp.Block1; bl != nil {
		v := bl.Num<<4 | uint32(bl.SZX&7)
		if bl.More {
			v |= 8
		}
		m.Options = m.Options.Add(message.Option{ID: message.Block1, Value: putUint(buf[4:8], v)})
	}
	if resp.Size1 != 0 {
		m.Options = m.Options.Add(message.Option{ID: message.Size1, Value: putUint(buf[8:12], resp.Size1)})
	}
	for _, o := range resp.Options {
		m.Options = m.Options.Add(o)
	}
	return m
}

func putUint(b []byte, v uint32) []byte {
	n := 0
	for x := v; x > 0; x >>= 8 {
		n++
	}
	for i := n - 1; i >= 0; i-- {
		b[n-1-i] = byte(v >> (8 * i))
	}
	return b[:n]
}

// securityInfo describes the board's security for its console and Info.
func (b *Board) securityInfo() string {
	return fmt.Sprintf("dtls_cache=%s ssn_persist=%s replay_after_boot=%s", b.cfg.DTLSCache, b.cfg.SSNPersist, b.cfg.ReplayAfterBoot)
}
