package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/sim/coapsrv"
	"github.com/fudbench/fudbench/sim/flash"
)

// startCoAP binds the board's CoAP endpoints for power epoch ep. Ports
// chosen on the first boot are kept, as a device keeps its address.
func (b *Board) startCoAP(ep uint64, r *ram) ([]*coapsrv.Server, error) {
	h := func(ctx context.Context, req *coapsrv.Request) *coapsrv.Response {
		return b.serve(ep, req)
	}
	opts := coapsrv.Options{Logger: b.log, QBlock1: true}
	oscoreH := func(ctx context.Context, req *coapsrv.Request) *coapsrv.Response {
		return b.serveOSCORE(ep, req)
	}
	b.mu.Lock()
	if b.udpAddrs == nil {
		b.udpAddrs = append([]string(nil), b.cfg.UDPAddrs...)
		b.dtlsAddr = b.cfg.DTLSAddr
	}
	udp, dtlsAddr := b.udpAddrs, b.dtlsAddr
	b.mu.Unlock()
	var servers []*coapsrv.Server
	fail := func(err error) ([]*coapsrv.Server, error) {
		for _, s := range servers {
			s.Detach()
		}
		return nil, err
	}
	// b.netMu is held: the board's sockets are bound once and kept.
	for i, a := range udp {
		sock, err := b.sock(i, a)
		if err != nil {
			return fail(fmt.Errorf("sim: board %s: coap %s: %w", b.cfg.Name, a, err))
		}
		s, err := coapsrv.ServeUDP(sock, h, opts)
		if err != nil {
			return fail(fmt.Errorf("sim: board %s: coap %s: %w", b.cfg.Name, a, err))
		}
		servers = append(servers, s)
		b.mu.Lock()
		b.udpAddrs[i] = s.Addr().String()
		b.mu.Unlock()
	}
	next := len(udp)
	if dtlsAddr != "-" {
		next++
		psk := func(id []byte) ([]byte, error) {
			want := []byte(b.cfg.PSKIdentity)
			// Recovery reuses the security context the record cached: only
			// the identity that prepared the update is accepted.
			if r.rec != nil && r.rec.PSKIdentity != nil {
				want = r.rec.PSKIdentity
			}
			if !bytes.Equal(id, want) {
				return nil, fmt.Errorf("sim: board %s: unknown PSK identity", b.cfg.Name)
			}
			return b.cfg.PSK, nil
		}
		sock, err := b.sock(len(udp), dtlsAddr)
		if err != nil {
			return fail(fmt.Errorf("sim: board %s: coaps %s: %w", b.cfg.Name, dtlsAddr, err))
		}
		dopts := coapsrv.DTLSOptions{DTLSCID: b.cfg.DTLSCache == DTLSCacheState}
		if b.cfg.DTLSCache == DTLSCacheSession {
			dopts.DTLSSessions = r.sec.sessions
		}
		s, err := coapsrv.ServeDTLSWith(sock, psk, h, opts, dopts)
		if err != nil {
			return fail(fmt.Errorf("sim: board %s: coaps %s: %w", b.cfg.Name, dtlsAddr, err))
		}
		servers = append(servers, s)
		b.restoreDTLS(r, s)
		b.mu.Lock()
		b.dtlsAddr = s.Addr().String()
		b.mu.Unlock()
	}
	if b.cfg.OSCORE != nil && b.cfg.OSCOREAddr != "-" {
		b.mu.Lock()
		if b.oscoreAddr == "" {
			b.oscoreAddr = b.cfg.OSCOREAddr
		}
		addr := b.oscoreAddr
		b.mu.Unlock()
		sock, err := b.sock(next, addr)
		if err != nil {
			return fail(fmt.Errorf("sim: board %s: oscore %s: %w", b.cfg.Name, addr, err))
		}
		oopts := opts
		oopts.OSCORE = true
		oopts.QBlock1 = false // Q-Block1 is not offered under OSCORE
		s, err := coapsrv.ServeUDP(sock, oscoreH, oopts)
		if err != nil {
			return fail(fmt.Errorf("sim: board %s: oscore %s: %w", b.cfg.Name, addr, err))
		}
		servers = append(servers, s)
		b.mu.Lock()
		b.oscoreAddr = s.Addr().String()
		b.mu.Unlock()
	}
	return servers, nil
}

// Endpoints returns the board's CoAP addresses (host:port): UDP ones and
// the DTLS one ("" if disabled). They are fixed once the board first boots.
func (b *Board) Endpoints() (udp []string, dtls string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dtlsAddr
	if d == "-" {
		d = ""
	}
	return append([]string(nil), b.udpAddrs...), d
}

// OSCOREAddr is the board's OSCORE endpoint (host:port), "" if it has
// none; fixed once the board first boots.
func (b *Board) OSCOREAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.oscoreAddr
}

func cborResp(c codes.Code, v any) *coapsrv.Response {
	return &coapsrv.Response{Code: c, ContentFormat: fwproto.MediaTypeCBOR, Payload: fwproto.MustMarshal(v)}
}

func failure(c codes.Code, state, msg string) *coapsrv.Response {
	return cborResp(c, fwproto.Failure{State: state, Error: msg})
}

// serve is the firmware's request handler. It runs one request at a time
// (the board has one CPU) and answers nothing once power is gone.
func (b *Board) serve(ep uint64, req *coapsrv.Request) *coapsrv.Response {
	b.cpu.Lock()
	defer b.cpu.Unlock()
	r := b.current(ep)
	if r == nil {
		return nil
	}
	if s := req.DTLS; s != nil {
		if r.sec.restored && s.Restored() {
			// A record layer restored from the cache: the device cannot
			// tell an old request sent again from a new one until the
			// bench answers its Echo.
			ok, echo := r.challenge(req.Options)
			if !ok {
				if !b.guardDTLS(ep, r, s) {
					return nil
				}
				return echoResponse(echo)
			}
			if b.cfg.ReplayAfterBoot == ReplayChallenge {
				s.SetRecvFloor(s.LastRecvSeq())
			}
		}
		if !b.guardDTLS(ep, r, s) {
			return nil
		}
	}
	resp, reset := b.route(ep, r, req)
	if !b.alive(ep) {
		return nil // the cut came while handling: nothing is sent
	}
	if resp != nil && reset {
		resp.AfterSend = func() { b.resetFrom(ep) }
	}
	return resp
}

func (b *Board) route(ep uint64, r *ram, req *coapsrv.Request) (*coapsrv.Response, bool) {
	switch {
	case req.Path == fwproto.PathBoot && req.Code == codes.GET:
		b.mu.Lock()
		boot := fwproto.Boot{Mode: r.mode, Boots: b.boots, ResetCause: b.cause}
		b.mu.Unlock()
		if r.app != nil {
			boot.Version = r.app.Version
		}
		return cborResp(codes.Content, boot), false
	case req.Path == "/.well-known/core" && req.Code == codes.GET:
		return b.wellKnownCore(r, req), false
	case req.Path == fwproto.PathVersion && req.Code == codes.GET:
		if r.mode != ModeApp {
			return failure(codes.NotFound, r.state, "no application running (recovery mode)"), false
		}
		return cborResp(codes.Content, fwproto.Version{Version: r.app.Version, Seq: r.app.Seq, Digest: r.appDigest[:], Mode: fwproto.ModeApp}), false
	case req.Path == fwproto.PathState && req.Code == codes.GET:
		if r.mode != ModeRecovery {
			return failure(codes.NotFound, "", "not in recovery mode"), false
		}
		return cborResp(codes.Content, stateOf(r)), false
	case req.Path == fwproto.PathPrepare && req.Code == codes.POST:
		if b.cfg.Strategy.AB() {
			return b.abPrepareRefusal(), false
		}
		if b.cfg.Strategy != InplaceRecovery {
			return failure(codes.NotFound, "", "this firmware has no resumable update (naive-inplace)"), false
		}
		return b.prepare(ep, r, req)
	case req.Path == fwproto.PathFW && (req.Code == codes.PUT || req.Code == codes.POST):
		var write func(*coapsrv.Request) (*coapsrv.Response, bool)
		switch {
		case b.cfg.Strategy == NaiveInplace:
			write = func(req *coapsrv.Request) (*coapsrv.Response, bool) { return b.naiveBlock(r, req) }
		case b.cfg.Strategy.AB():
			write = func(req *coapsrv.Request) (*coapsrv.Response, bool) { return b.abBlock(r, req) }
		case r.mode != ModeRecovery:
			return failure(codes.MethodNotAllowed, "", "updates go through /fw/prepare and recovery"), false
		default:
			write = func(req *coapsrv.Request) (*coapsrv.Response, bool) { return b.recoveryBlock(ep, r, req) }
		}
		if _, q := req.QBlock1(); q {
			return b.qblockUpload(ep, r, req, func() uint32 { return b.qNext(r) }, write)
		}
		return write(req)
	}
	return failure(codes.NotFound, "", "no such resource"), false
}

// prepare writes the recovery record (power-safely) and reboots into
// recovery once the reply is out.
func (b *Board) prepare(ep uint64, r *ram, req *coapsrv.Request) (*coapsrv.Response, bool) {
	p, err := fwproto.DecodePrepare(req.Payload)
	if err != nil {
		return failure(codes.BadRequest, "", err.Error()), false
	}
	if int(p.Size) > b.lay.AppSize() {
		resp := failure(codes.RequestEntityTooLarge, "", fmt.Sprintf("image of %d bytes exceeds the %d-byte app slot", p.Size, b.lay.AppSize()))
		resp.Size1 = uint32(b.lay.AppSize())
		return resp, false
	}
	if n := fwproto.Blocks(p.Size, p.SZX); int(n) > b.lay.JournalBlocks() {
		return failure(codes.RequestEntityTooLarge, "", fmt.Sprintf("%d blocks exceed the journal's %d; use a larger block size", n, b.lay.JournalBlocks())), false
	}
	rec := &record{Size: p.Size, SZX: p.SZX, Tag: p.Tag, PSKIdentity: bytes.Clone(req.PSKIdentity)}
	copy(rec.Digest[:], p.Digest)
	if req.Peer != nil {
		rec.Peer = req.Peer.String()
	}
	cur, sector := b.activeRecord()
	target := b.lay.RecA
	if cur != nil {
		rec.Gen = cur.Gen + 1
		if sector == b.lay.RecA {
			target = b.lay.RecB
		}
	}
	// The security context of the session that prepares the update, for
	// the recovery bootloader.
	if !b.cacheSecurity(ep, r, req) {
		return nil, false
	}
	// Journal first: a cut after this leaves the old record, which is
	// either done (the app boots) or a transfer that restarts from 0.
	if err := b.fl.EraseSector(b.lay.Journal); err != nil {
		return nil, false
	}
	if err := b.fl.EraseSector(target); err != nil {
		return nil, false
	}
	if err := b.fl.Program(b.recordOff(target), rec.encode(b.cfg.WriteAlign, b.fl.Config().Erased)); err != nil {
		return nil, false
	}
	b.console.Printf("APP update prepared size=%d szx=%d blocks=%d; rebooting into recovery", p.Size, p.SZX, rec.blocks())
	return &coapsrv.Response{Code: codes.Changed}, true
}

// recoveryBlock handles one Block1 PUT in recovery mode.
func (b *Board) recoveryBlock(ep uint64, r *ram, req *coapsrv.Request) (*coapsrv.Response, bool) {
	resync := func(why string) (*coapsrv.Response, bool) {
		b.log.Debug("resync", "why", why, "next", r.next)
		return cborResp(codes.RequestEntityIncomplete, stateOf(r)), false
	}
	if r.rec == nil {
		return failure(codes.ServiceUnavailable, r.state, "no transfer prepared: "+r.failure), false
	}
	blk, ok := req.Block1()
	if !ok {
		return resync("no Block1 option")
	}
	num, more, szx := blk.Num, blk.More, blk.SZX
	if tag, _ := req.RequestTag(); !bytes.Equal(tag, r.rec.Tag) {
		return resync("request-tag differs from the prepared tag")
	}
	if szx != r.rec.SZX {
		return resync("block size differs from the prepared one")
	}
	n := r.rec.blocks()
	if r.state == fwproto.StateFailed {
		return failure(codes.NotAcceptable, r.state, r.failure), false
	}
	echo := &coapsrv.Block{Num: num, More: more, SZX: szx}
	if num < r.next {
		// Already durable: acknowledge again without rewriting.
		if num == n-1 {
			return &coapsrv.Response{Code: codes.Changed, Block1: echo}, false
		}
		return &coapsrv.Response{Code: codes.Continue, Block1: echo}, false
	}
	if num > r.next {
		return resync(fmt.Sprintf("block %d is ahead of next %d", num, r.next))
	}
	bs := uint32(fwproto.BlockSize(szx))
	want := bs
	if num == n-1 {
		want = r.rec.Size - num*bs
	}
	if uint32(len(req.Payload)) != want || more != (num < n-1) {
		return failure(codes.BadRequest, r.state, fmt.Sprintf("block %d: %d bytes more=%v, want %d bytes more=%v", num, len(req.Payload), more, want, num < n-1)), false
	}
	r.writing.Store(int64(num))
	if err := b.writeBlock(b.lay.AppStart, num, bs, req.Payload); err != nil {
		if errors.Is(err, errPower) {
			return nil, false
		}
		r.writing.Store(-1)
		return failure(codes.InternalServerError, r.state, err.Error()), false
	}
	if err := b.journalMark(num); err != nil {
		return nil, false
	}
	r.writing.Store(-1)
	r.next = num + 1
	if step := max(n/10, 1); r.next%step == 0 || r.next == n {
		b.console.Printf("RECOVERY block %d/%d", r.next, n)
	}
	if r.next < n {
		r.lastAcked.Store(int64(num))
		return &coapsrv.Response{Code: codes.Continue, Block1: echo}, false
	}
	b.finishRecovery(r)
	if !b.alive(ep) {
		return nil, false
	}
	if r.mode != ModeApp {
		c := codes.NotAcceptable
		if bytes.HasPrefix([]byte(r.failure), []byte("digest")) {
			c = codes.BadRequest
		}
		return failure(c, r.state, r.failure), false
	}
	r.lastAcked.Store(int64(num))
	return &coapsrv.Response{Code: codes.Changed, Block1: echo}, true
}

var errPower = errors.New("power lost")

// writeBlock erases the sector a block starts (when it is the sector's
// first block) and programs it at base, padding to the write unit.
func (b *Board) writeBlock(base int, num, bs uint32, data []byte) error {
	off := base + int(num*bs)
	_, start, _, err := b.fl.Sector(off)
	if err != nil {
		return err
	}
	if start == off {
		if err := b.fl.EraseSector(mustSector(b, off)); err != nil {
			return wrapPower(err)
		}
	}
	a := b.cfg.WriteAlign
	buf := data
	if len(buf)%a != 0 {
		buf = make([]byte, (len(data)+a-1)/a*a)
		copy(buf, data)
		for i := len(data); i < len(buf); i++ {
			buf[i] = b.fl.Config().Erased
		}
	}
	return wrapPower(b.fl.Program(off, buf))
}

func mustSector(b *Board, off int) int {
	i, _, _, _ := b.fl.Sector(off)
	return i
}

func wrapPower(err error) error {
	if errors.Is(err, flash.ErrPowerLost) {
		return fmt.Errorf("%w: %w", errPower, err)
	}
	return err
}

// naiveBlock is the naive-inplace firmware: each block goes straight over
// the running image, starting at block 0, with no record of any kind.
func (b *Board) naiveBlock(r *ram, req *coapsrv.Request) (*coapsrv.Response, bool) {
	return b.blockUpload(r, req, uploadTarget{base: b.lay.AppStart, size: b.lay.AppSize(), name: "app slot"})
}

// uploadTarget is where a plain Block1 upload goes and what the firmware
// does around it.
type uploadTarget struct {
	base, size int    // the slot's image area
	name       string // "app slot", "secondary slot", "slot B"
	where      string // in a sentence: "the secondary slot", "slot B"
	// begin runs at block 0 before anything is written, end after the
	// last block is written and before it is acknowledged; nil does
	// nothing. Errors wrapping errPower end the request unanswered.
	begin, end func() error
	done       string // what the console line says end did
}

// blockUpload takes one block of a plain RFC 7959 Block1 upload (or a
// single-message one) into t, in order from block 0, and reboots once the
// last block is written.
func (b *Board) blockUpload(r *ram, req *coapsrv.Request, t uploadTarget) (*coapsrv.Response, bool) {
	blk, ok := req.Block1()
	num, more, szx := blk.Num, blk.More, blk.SZX
	if !ok {
		// A single-message upload: one block of everything.
		num, more, szx = 0, false, 6
		if len(req.Payload) > 1024 {
			return failure(codes.RequestEntityTooLarge, "", "send large images with Block1"), false
		}
	}
	if num == 0 {
		if s1, ok := req.Size1(); ok && int(s1) > t.size {
			resp := failure(codes.RequestEntityTooLarge, "", fmt.Sprintf("image of %d bytes exceeds the %d-byte %s", s1, t.size, t.name))
			resp.Size1 = uint32(t.size)
			return resp, false
		}
		r.naiveBusy, r.naiveNext, r.naiveSZX, r.naiveSize = true, 0, szx, 0
		r.naiveTotal, _ = req.Size1()
	}
	if r.naiveBusy && more && num+1 == r.naiveNext && szx == r.naiveSZX {
		// The block just taken, sent again because its answer was lost:
		// acknowledge it again without writing it twice.
		return &coapsrv.Response{Code: codes.Continue, Block1: &coapsrv.Block{Num: num, More: more, SZX: szx}}, false
	}
	if !r.naiveBusy || num != r.naiveNext || szx != r.naiveSZX {
		return failure(codes.RequestEntityIncomplete, "", fmt.Sprintf("expected block %d", r.naiveNext)), false
	}
	bs := uint32(fwproto.BlockSize(szx))
	if more && uint32(len(req.Payload)) != bs || uint32(len(req.Payload)) > bs && ok {
		return failure(codes.BadRequest, "", "block payload does not match its size"), false
	}
	if int(num*bs)+len(req.Payload) > t.size {
		resp := failure(codes.RequestEntityTooLarge, "", fmt.Sprintf("image exceeds the %d-byte %s", t.size, t.name))
		resp.Size1 = uint32(t.size)
		return resp, false
	}
	r.writing.Store(int64(num))
	step := func(f func() error) (*coapsrv.Response, bool) {
		if f == nil {
			return nil, true
		}
		if err := f(); err != nil {
			if errors.Is(err, errPower) {
				return nil, false
			}
			r.writing.Store(-1)
			return failure(codes.InternalServerError, "", err.Error()), false
		}
		return nil, true
	}
	if num == 0 {
		if resp, ok := step(t.begin); !ok {
			return resp, false
		}
	}
	if resp, ok := step(func() error { return b.writeBlock(t.base, num, bs, req.Payload) }); !ok {
		return resp, false
	}
	if !more {
		if resp, ok := step(t.end); !ok {
			return resp, false
		}
	}
	r.writing.Store(-1)
	r.lastAcked.Store(int64(num))
	r.naiveNext++
	r.naiveSize += uint32(len(req.Payload))
	echo := &coapsrv.Block{Num: num, More: more, SZX: szx}
	if !ok {
		echo = nil
	}
	if more {
		return &coapsrv.Response{Code: codes.Continue, Block1: echo}, false
	}
	if t.done != "" {
		b.console.Printf("APP received %d bytes into %s; %s; rebooting", r.naiveSize, t.where, t.done)
	} else {
		b.console.Printf("APP received %d bytes; rebooting", r.naiveSize)
	}
	return &coapsrv.Response{Code: codes.Changed, Block1: echo}, true
}
