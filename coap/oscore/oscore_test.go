package oscore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

var testParams = Params{MasterSecret: tvSecret, MasterSalt: tvSalt, SenderID: hx("c1"), RecipientID: hx("5e")}

// pair returns a client and a server context for p, the server's replay
// window started.
func pair(t testing.TB, p Params) (client, server *Context) {
	t.Helper()
	c, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(reverse(p))
	if err != nil {
		t.Fatal(err)
	}
	s.StartReplayWindow()
	return c, s
}

func opt(id message.OptionID, v string) message.Option {
	return message.Option{ID: id, Value: []byte(v)}
}

// sorted returns opts stably sorted by number, as the package returns them.
func sorted(opts message.Options) message.Options {
	o := slices.Clone(opts)
	slices.SortStableFunc(o, func(a, b message.Option) int { return int(a.ID) - int(b.ID) })
	return o
}

func sameOptions(a, b message.Options) bool {
	return slices.EqualFunc(a, b, func(x, y message.Option) bool {
		return x.ID == y.ID && bytes.Equal(x.Value, y.Value)
	})
}

func ids(opts message.Options) []message.OptionID {
	var r []message.OptionID
	for _, o := range opts {
		r = append(r, o.ID)
	}
	return r
}

// uploadBlock is a block-wise firmware upload request: options in no
// particular order, Block1 and friends inside.
func uploadBlock(num int, payload []byte) Message {
	return Message{
		Code: codes.PUT,
		Options: message.Options{
			opt(message.Block1, string([]byte{byte(num<<4 | 0x8 | 6)})),
			opt(message.URIPath, "fw"),
			opt(message.URIHost, "board-1"),
			opt(message.URIPath, "image"),
			opt(message.ContentFormat, "\x2a"),
			opt(message.Size1, "\x10\x00"),
			opt(message.RequestTag, "\x01\x02"),
			opt(EchoID, "12345678"),
			opt(message.URIPort, "\x16\x33"),
		},
		Payload: payload,
	}
}

func TestRoundTrip(t *testing.T) {
	block := bytes.Repeat([]byte("firmware"), 128)
	for _, tc := range []struct {
		name   string
		p      Params
		req    Message
		resp   Message
		ownPIV bool
	}{
		{"block1 upload", testParams, uploadBlock(3, block),
			Message{Code: codes.Continue, Options: message.Options{opt(message.Block1, "\x3e")}}, false},
		{"block1 upload, own partial IV", testParams, uploadBlock(3, block),
			Message{Code: codes.Continue, Options: message.Options{opt(message.Block1, "\x3e")}}, true},
		{"GET without payload", testParams, Message{Code: codes.GET, Options: message.Options{opt(message.URIPath, "fw"), opt(message.URIPath, "state")}},
			Message{Code: codes.Content, Options: message.Options{opt(message.ContentFormat, "")}, Payload: []byte("idle")}, false},
		{"empty request, empty IDs, ID context", Params{MasterSecret: []byte("s"), SenderID: []byte{}, RecipientID: []byte{1}, IDContext: []byte{}},
			Message{Code: codes.POST}, Message{Code: codes.Changed}, true},
		{"error response", testParams, Message{Code: codes.DELETE, Options: message.Options{opt(message.URIPath, "x")}},
			Message{Code: codes.NotFound, Payload: []byte("no")}, false},
		{"long option", testParams, Message{Code: codes.POST, Options: message.Options{opt(message.URIQuery, strings.Repeat("q", 300)), opt(2000, "x")}},
			Message{Code: codes.Changed, Options: message.Options{opt(2000, strings.Repeat("y", 20))}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, srv := pair(t, tc.p)
			out, x, err := cl.ProtectRequest(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			wantCode := codes.POST
			if out.Code != wantCode {
				t.Errorf("outer code %v, want %v", out.Code, wantCode)
			}
			for _, o := range out.Options {
				if o.ID != OptionID && !classU(o.ID) {
					t.Errorf("option %d left outside", o.ID)
				}
			}
			if !slices.IsSortedFunc(out.Options, func(a, b message.Option) int { return int(a.ID) - int(b.ID) }) {
				t.Errorf("outer options not sorted: %v", ids(out.Options))
			}
			in, sx, err := srv.UnprotectRequest(out)
			if err != nil {
				t.Fatal(err)
			}
			if in.Code != tc.req.Code || !bytes.Equal(in.Payload, tc.req.Payload) || !sameOptions(in.Options, sorted(tc.req.Options)) {
				t.Fatalf("request came through as %v %v %q, want %v %v", in.Code, ids(in.Options), in.Payload, tc.req.Code, ids(sorted(tc.req.Options)))
			}
			if !sx.Fresh || !bytes.Equal(sx.KID, tc.p.SenderID) || !bytes.Equal(sx.PIV, x.PIV) || sx.Request.Nonce != x.Request.Nonce {
				t.Errorf("server exchange %+v, client %+v", sx, x)
			}

			rout, use, err := srv.ProtectResponse(tc.resp, sx, tc.ownPIV)
			if err != nil {
				t.Fatal(err)
			}
			if rout.Code != codes.Changed {
				t.Errorf("outer response code %v", rout.Code)
			}
			ov, err := parseOptionValue(optionOf(t, rout))
			if err != nil {
				t.Fatal(err)
			}
			if (len(ov.piv) > 0) != tc.ownPIV {
				t.Errorf("response partial IV %x, own partial IV %v", ov.piv, tc.ownPIV)
			}
			if !tc.ownPIV && use.Nonce != x.Request.Nonce {
				t.Error("a response without partial IV must reuse the request nonce")
			}
			rin, cuse, err := cl.UnprotectResponse(rout, x)
			if err != nil {
				t.Fatal(err)
			}
			if rin.Code != tc.resp.Code || !bytes.Equal(rin.Payload, tc.resp.Payload) || !sameOptions(rin.Options, sorted(tc.resp.Options)) {
				t.Fatalf("response came through as %v %v %q", rin.Code, ids(rin.Options), rin.Payload)
			}
			if cuse.Nonce != use.Nonce || cuse.KeyFP != use.KeyFP || !bytes.Equal(cuse.PIV, use.PIV) || !bytes.Equal(cuse.ID, use.ID) {
				t.Errorf("client use %+v, server use %+v", cuse, use)
			}
			if use.KeyFP == x.Request.KeyFP {
				t.Error("requests and responses share a key")
			}
		})
	}
}

// TestNoAliasing: results share no memory with their inputs, which
// callers reuse (the server's buffers, the client's).
func TestNoAliasing(t *testing.T) {
	cl, srv := pair(t, testParams)
	req := uploadBlock(1, []byte("payload"))
	out, _, err := cl.ProtectRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	for i := range req.Options {
		req.Options[i].Value[0] ^= 0xff
	}
	req.Payload[0] ^= 0xff
	in, _, err := srv.UnprotectRequest(out)
	if err != nil {
		t.Fatal(err)
	}
	for i := range out.Options {
		clear(out.Options[i].Value)
	}
	clear(out.Payload)
	if h, _ := in.Options.GetString(message.URIHost); h != "board-1" || string(in.Payload) != "payload" {
		t.Errorf("result changed with its input: host %q payload %q", h, in.Payload)
	}
}

func TestOptionClasses(t *testing.T) {
	for _, tc := range []struct {
		id           message.OptionID
		outer, inner bool
	}{
		{message.IfMatch, false, true},
		{message.URIHost, true, false},
		{message.ETag, false, true},
		{message.IfNoneMatch, false, true},
		{message.Observe, true, true},
		{message.URIPort, true, false},
		{message.LocationPath, false, true},
		{message.URIPath, false, true},
		{message.ContentFormat, false, true},
		{message.MaxAge, false, true},
		{message.URIQuery, false, true},
		{hopLimitID, true, false},
		{message.Accept, false, true},
		{message.LocationQuery, false, true},
		{message.Block2, false, true},
		{message.Block1, false, true},
		{message.Size2, false, true},
		{message.ProxyURI, true, false},
		{message.ProxyScheme, true, false},
		{message.Size1, false, true},
		{EchoID, false, true},
		{message.NoResponse, false, true},
		{message.RequestTag, false, true},
		{65000, false, true}, // unknown: Class E
	} {
		outer, inner := place(tc.id)
		if outer != tc.outer || inner != tc.inner {
			t.Errorf("option %d: outer %v inner %v, want %v %v", tc.id, outer, inner, tc.outer, tc.inner)
		}
	}
}

// TestOuterOptions: Class U options are readable and not protected; a
// Class E option added outside is dropped on the way in.
func TestOuterOptions(t *testing.T) {
	cl, srv := pair(t, testParams)
	out, _, err := cl.ProtectRequest(uploadBlock(0, []byte("p")))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(out.Options); !slices.Equal(got, []message.OptionID{message.URIHost, message.URIPort, OptionID}) {
		t.Fatalf("outer options %v", got)
	}
	// A proxy rewrites Uri-Host (Class U, not protected) and an attacker
	// adds a Uri-Path outside.
	out.Options[0].Value = []byte("proxy")
	out.Options = append(out.Options, opt(message.URIPath, "evil"))
	in, _, err := srv.UnprotectRequest(out)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := in.Options.GetString(message.URIHost); h != "proxy" {
		t.Errorf("Uri-Host %q", h)
	}
	if p, _ := in.Options.Path(); p != "/fw/image" {
		t.Errorf("path %q: an outer Class E option got in", p)
	}
}

func TestObserve(t *testing.T) {
	cl, srv := pair(t, testParams)
	req := Message{Code: codes.GET, Options: message.Options{opt(message.URIPath, "fw"), opt(message.Observe, "")}}
	out, x, err := cl.ProtectRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if out.Code != codes.FETCH || !x.Observe || !has(out.Options, message.Observe) {
		t.Fatalf("registration: outer code %v, observe %v, outer %v", out.Code, x.Observe, ids(out.Options))
	}
	in, sx, err := srv.UnprotectRequest(out)
	if err != nil {
		t.Fatal(err)
	}
	if in.Code != codes.GET || !sx.Observe {
		t.Fatalf("registration came through as %v observe %v", in.Code, sx.Observe)
	}
	notify := func(seq byte) Message {
		n := Message{Code: codes.Content, Options: message.Options{opt(message.Observe, string([]byte{seq}))}, Payload: []byte{seq}}
		p, use, err := srv.ProtectResponse(n, sx, false)
		if err != nil {
			t.Fatal(err)
		}
		if p.Code != codes.Content || len(use.PIV) == 0 || bytes.Equal(use.ID, sx.KID) {
			t.Fatalf("notification: outer code %v, partial IV %x", p.Code, use.PIV)
		}
		return p
	}
	n1, n2, n3 := notify(1), notify(2), notify(3)
	for _, n := range []struct {
		m    Message
		want error
	}{{n1, nil}, {n3, nil}, {n2, ErrReplay}, {n3, ErrReplay}} {
		got, _, err := cl.UnprotectResponse(n.m, x)
		if !errors.Is(err, n.want) {
			t.Fatalf("notification %x: %v, want %v", n.m.Payload, err, n.want)
		}
		if err == nil {
			if v, _ := got.Options.Observe(); v != uint32(got.Payload[0]) {
				t.Errorf("notification %d has Observe %d", got.Payload[0], v)
			}
		}
	}
}

// requests makes n protected requests from cl.
func requests(t testing.TB, cl *Context, n int) []Message {
	t.Helper()
	var r []Message
	for range n {
		m, _, err := cl.ProtectRequest(Message{Code: codes.GET, Options: message.Options{opt(message.URIPath, "s")}})
		if err != nil {
			t.Fatal(err)
		}
		r = append(r, m)
	}
	return r
}

func TestReplayWindow(t *testing.T) {
	type step struct {
		piv  int
		want error
	}
	for _, tc := range []struct {
		name   string
		window int
		steps  []step
	}{
		{"in order", 0, []step{{0, nil}, {1, nil}, {2, nil}, {5, nil}, {6, nil}}},
		{"duplicate", 0, []step{{0, nil}, {0, ErrReplay}, {1, nil}, {0, ErrReplay}, {1, ErrReplay}}},
		{"out of order within the window", 0, []step{{39, nil}, {10, nil}, {8, nil}, {38, nil}, {10, ErrReplay}}},
		{"too old", 0, []step{{39, nil}, {7, ErrReplay}, {8, nil}}},
		{"jump past the window forgets it", 0, []step{{1, nil}, {100, nil}, {1, ErrReplay}, {69, nil}, {68, ErrReplay}}},
		{"window of 4", 4, []step{{10, nil}, {7, nil}, {6, ErrReplay}, {11, nil}, {7, ErrReplay}, {8, nil}}},
		{"window of 64", 64, []step{{70, nil}, {7, nil}, {6, ErrReplay}, {7, ErrReplay}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testParams
			p.ReplayWindow = tc.window
			cl, srv := pair(t, p)
			reqs := requests(t, cl, 120)
			for _, s := range tc.steps {
				_, x, err := srv.UnprotectRequest(reqs[s.piv])
				if !errors.Is(err, s.want) {
					t.Fatalf("partial IV %d: %v, want %v", s.piv, err, s.want)
				}
				if err == nil && (!x.Fresh || pivValue(x.PIV) != uint64(s.piv)) {
					t.Fatalf("partial IV %d: exchange %+v", s.piv, x)
				}
			}
		})
	}
}

// TestEchoRecovery walks Appendix B.1.2: a server without its replay
// window verifies requests but cannot call them fresh, answers with its
// own Partial IV, and takes the request that returns its Echo value as the
// window's lower limit.
func TestEchoRecovery(t *testing.T) {
	cl, err := New(testParams)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(reverse(testParams)) // window not initialised
	if err != nil {
		t.Fatal(err)
	}
	reqs := requests(t, cl, 5)
	for range 2 { // not recorded: the same request twice
		_, x, err := srv.UnprotectRequest(reqs[1])
		if err != nil {
			t.Fatal(err)
		}
		if x.Fresh {
			t.Fatal("fresh without a replay window")
		}
		// The 4.01 with Echo must not reuse the request's nonce: the
		// request may be a replay that was answered before the reboot.
		echo := NewEcho()
		r, use, err := srv.ProtectResponse(Message{Code: codes.Unauthorized, Options: message.Options{{ID: EchoID, Value: echo}}}, x, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(use.PIV) == 0 || use.Nonce == x.Request.Nonce {
			t.Fatal("answer to an unverified request reused its nonce")
		}
		if ov, _ := parseOptionValue(optionOf(t, r)); len(ov.piv) == 0 {
			t.Fatal("no partial IV in the OSCORE option")
		}
	}
	// The client repeats with the Echo value; the server checks the value
	// (its business) and initialises the window.
	_, x3, err := srv.UnprotectRequest(reqs[3])
	if err != nil || x3.Fresh {
		t.Fatalf("request 3: %v fresh %v", err, x3.Fresh)
	}
	if err := srv.InitReplayWindow(x3); err != nil || !x3.Fresh {
		t.Fatalf("init: %v fresh %v", err, x3.Fresh)
	}
	if err := srv.InitReplayWindow(x3); err != nil {
		t.Fatalf("init again with a fresh exchange: %v", err)
	}
	for i, want := range []error{ErrReplay, ErrReplay, ErrReplay, ErrReplay, nil} {
		_, x, err := srv.UnprotectRequest(reqs[i])
		if !errors.Is(err, want) {
			t.Fatalf("request %d after init: %v, want %v", i, err, want)
		}
		if err == nil && !x.Fresh {
			t.Fatalf("request %d not fresh", i)
		}
	}
	// Once initialised, InitReplayWindow checks like any request.
	srv.ForgetReplayWindow()
	more := requests(t, cl, 3)
	_, a, _ := srv.UnprotectRequest(more[0])
	_, b, _ := srv.UnprotectRequest(more[1])
	if err := srv.InitReplayWindow(b); err != nil {
		t.Fatal(err)
	}
	if err := srv.InitReplayWindow(a); !errors.Is(err, ErrReplay) {
		t.Fatalf("older exchange into an initialised window: %v", err)
	}
	_, c, _ := srv.UnprotectRequest(more[2])
	if !c.Fresh {
		t.Fatal("not fresh after init")
	}
	_, cx, _ := cl.ProtectRequest(Message{Code: codes.GET})
	if err := srv.InitReplayWindow(cx); err == nil {
		t.Fatal("a client exchange initialised a server window")
	}
}

// TestResponseNonceOnce: a request's nonce protects one response at most;
// the client takes one response without partial IV per exchange.
func TestResponseNonceOnce(t *testing.T) {
	cl, srv := pair(t, testParams)
	out, x, _ := cl.ProtectRequest(Message{Code: codes.GET})
	_, sx, err := srv.UnprotectRequest(out)
	if err != nil {
		t.Fatal(err)
	}
	r1, u1, _ := srv.ProtectResponse(Message{Code: codes.Content}, sx, false)
	r2, u2, _ := srv.ProtectResponse(Message{Code: codes.Content}, sx, false)
	if u1.Nonce != x.Request.Nonce || u2.Nonce == u1.Nonce || len(u2.PIV) == 0 {
		t.Fatalf("second response nonce %x, first %x", u2.Nonce, u1.Nonce)
	}
	if _, _, err := cl.UnprotectResponse(r1, x); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.UnprotectResponse(r1, x); !errors.Is(err, ErrReplay) {
		t.Fatalf("the same response twice: %v", err)
	}
	if _, _, err := cl.UnprotectResponse(r2, x); err != nil {
		t.Fatal(err)
	}
	// A response is bound to its request: another exchange cannot take it.
	_, x2, _ := cl.ProtectRequest(Message{Code: codes.GET})
	if _, _, err := cl.UnprotectResponse(r2, x2); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("response to another request: %v", err)
	}
}

func TestTamper(t *testing.T) {
	cl, srv := pair(t, testParams)
	out, x, err := cl.ProtectRequest(Message{Code: codes.PUT, Options: message.Options{opt(message.URIPath, "fw")}, Payload: []byte("image")})
	if err != nil {
		t.Fatal(err)
	}
	for bit := range len(out.Payload) * 8 {
		m := out
		m.Payload = bytes.Clone(out.Payload)
		m.Payload[bit/8] ^= 1 << (bit % 8)
		if _, _, err := srv.UnprotectRequest(m); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("bit %d flipped: %v", bit, err)
		}
	}
	// Another partial IV: another nonce and AAD.
	m := out
	m.Options = message.Options{{ID: OptionID, Value: hx("0901c1")}}
	if _, _, err := srv.UnprotectRequest(m); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("partial IV changed: %v", err)
	}
	m.Options = message.Options{{ID: OptionID, Value: hx("0900c2")}}
	if _, _, err := srv.UnprotectRequest(m); !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("wrong kid: %v", err)
	}
	m.Options = message.Options{{ID: OptionID, Value: hx("19000101c1")}}
	if _, _, err := srv.UnprotectRequest(m); !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("kid context where the context has none: %v", err)
	}
	// Failures record nothing: the genuine request still goes through.
	_, sx, err := srv.UnprotectRequest(out)
	if err != nil {
		t.Fatalf("genuine after tampering: %v", err)
	}
	// A response under the wrong key.
	_, other := pair(t, Params{MasterSecret: []byte("other"), SenderID: testParams.SenderID, RecipientID: testParams.RecipientID})
	_, ox, _ := other.UnprotectRequest(out)
	if ox != nil {
		t.Fatal("another context took the request")
	}
	resp, _, err := srv.ProtectResponse(Message{Code: codes.Changed, Payload: []byte("ok")}, sx, true)
	if err != nil {
		t.Fatal(err)
	}
	for bit := range len(resp.Payload) * 8 {
		m := resp
		m.Payload = bytes.Clone(resp.Payload)
		m.Payload[bit/8] ^= 1 << (bit % 8)
		if _, _, err := cl.UnprotectResponse(m, x); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("response bit %d flipped: %v", bit, err)
		}
	}
	if _, _, err := cl.UnprotectResponse(resp, x); err != nil {
		t.Fatalf("genuine response: %v", err)
	}
}

// sealRaw protects pt, an arbitrary plaintext, as a request from cl.
func sealRaw(cl *Context, pt []byte) Message {
	var pb [maxPIVLen]byte
	cl.mu.Lock()
	piv, _ := cl.nextPIV(&pb)
	cl.mu.Unlock()
	nonce := cl.nonce(cl.senderID, piv)
	aad := appendAAD(nil, 10, cl.senderID, piv)
	return Message{
		Code:    codes.POST,
		Options: message.Options{{ID: OptionID, Value: appendOptionValue(nil, piv, cl.senderID, true, nil, false)}},
		Payload: cl.seal.Seal(nil, nonce[:], pt, aad),
	}
}

func TestMalformed(t *testing.T) {
	cl, srv := pair(t, testParams)
	good, _, _ := cl.ProtectRequest(Message{Code: codes.GET})
	for _, tc := range []struct {
		name string
		m    Message
		want error
	}{
		{"no OSCORE option", Message{Code: codes.GET}, ErrNotOSCORE},
		{"two OSCORE options", Message{Code: codes.POST, Options: message.Options{good.Options[0], good.Options[0]}, Payload: good.Payload}, ErrMalformed},
		{"no kid", Message{Code: codes.POST, Options: message.Options{{ID: OptionID, Value: hx("0100")}}, Payload: good.Payload}, ErrMalformed},
		{"no partial IV", Message{Code: codes.POST, Options: message.Options{{ID: OptionID, Value: hx("08c1")}}, Payload: good.Payload}, ErrMalformed},
		{"empty option", Message{Code: codes.POST, Options: message.Options{{ID: OptionID}}, Payload: good.Payload}, ErrMalformed},
		{"reserved bits", Message{Code: codes.POST, Options: message.Options{{ID: OptionID, Value: hx("2900c1")}}, Payload: good.Payload}, ErrMalformed},
		{"short ciphertext", Message{Code: codes.POST, Options: good.Options, Payload: good.Payload[:tagLen]}, ErrMalformed},
		{"no ciphertext", Message{Code: codes.POST, Options: good.Options}, ErrMalformed},
		{"response code inside", sealRaw(cl, []byte{byte(codes.Content)}), ErrMalformed},
		{"empty code inside", sealRaw(cl, []byte{0}), ErrMalformed},
		{"OSCORE option inside", sealRaw(cl, []byte{1, 0x90}), ErrMalformed},
		{"bad option inside", sealRaw(cl, []byte{1, 0xf1, 0}), ErrMalformed},
		{"truncated option inside", sealRaw(cl, []byte{1, 0xb5, 'a'}), ErrMalformed},
		{"payload marker without payload", sealRaw(cl, []byte{1, 0xff}), ErrMalformed},
		{"extended option inside", sealRaw(cl, []byte{1, 0xe0, 0xfc, 0xdb, 0xff, 'o', 'k'}), nil},
		{"option number past 65535 inside", sealRaw(cl, []byte{1, 0xe0, 0xfe, 0xf4}), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := srv.UnprotectRequest(tc.m)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOptionValue(t *testing.T) {
	for _, tc := range []struct {
		v             string
		piv, kid, ctx string
		hasKID, hasCt bool
		err           bool
	}{
		{v: ""},
		{v: "0914", piv: "14", hasKID: true},
		{v: "091400", piv: "14", kid: "00", hasKID: true},
		{v: "19140837cbf3210017a2d3", piv: "14", ctx: "37cbf3210017a2d3", hasKID: true, hasCt: true},
		{v: "0107", piv: "07"},
		{v: "0100", piv: "00"},
		{v: "050102030405", piv: "0102030405"},
		{v: "0825", kid: "25", hasKID: true},
		{v: "1000", hasCt: true},
		{v: "20", err: true},
		{v: "80", err: true},
		{v: "06010203040506", err: true},
		{v: "07", err: true},
		{v: "0301", err: true},
		{v: "110105", err: true},
		{v: "10", err: true},
		{v: "010109", err: true},
	} {
		o, err := parseOptionValue(hx(tc.v))
		if (err != nil) != tc.err {
			t.Errorf("%s: %v", tc.v, err)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: %v is not ErrMalformed", tc.v, err)
			}
			continue
		}
		if !bytes.Equal(o.piv, hx(tc.piv)) || !bytes.Equal(o.kid, hx(tc.kid)) || !bytes.Equal(o.kidCtx, hx(tc.ctx)) || o.hasKID != tc.hasKID || o.hasKIDCtx != tc.hasCt {
			t.Errorf("%s: decoded %+v", tc.v, o)
		}
		if got := appendOptionValue(nil, o.piv, o.kid, o.hasKID, o.kidCtx, o.hasKIDCtx); !bytes.Equal(got, hx(tc.v)) {
			t.Errorf("%s: encodes back as %x", tc.v, got)
		}
	}
}

func TestPartialIV(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{{0, "00"}, {1, "01"}, {20, "14"}, {255, "ff"}, {256, "0100"}, {65536, "010000"}, {1<<32 - 1, "ffffffff"}, {MaxSenderSeq, "ffffffffff"}} {
		var b [maxPIVLen]byte
		got := putPIV(&b, tc.n)
		eq(t, fmt.Sprint(tc.n), got, hx(tc.want))
		if pivValue(got) != tc.n {
			t.Errorf("%d decodes as %d", tc.n, pivValue(got))
		}
	}
}

func TestSequenceExhausted(t *testing.T) {
	cl, srv := pair(t, testParams)
	cl.SetSenderSeq(MaxSenderSeq)
	out, x, err := cl.ProtectRequest(Message{Code: codes.GET})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "last partial IV", x.PIV, hx("ffffffffff"))
	if _, _, err := cl.ProtectRequest(Message{Code: codes.GET}); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("past the last: %v", err)
	}
	_, sx, err := srv.UnprotectRequest(out)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetSenderSeq(MaxSenderSeq + 1)
	if _, _, err := srv.ProtectResponse(Message{Code: codes.Changed}, sx, true); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("server past the last: %v", err)
	}
	// Without a partial IV of its own the server needs no number.
	if _, _, err := srv.ProtectResponse(Message{Code: codes.Changed}, sx, false); err != nil {
		t.Fatal(err)
	}
}

func TestMisuse(t *testing.T) {
	cl, srv := pair(t, testParams)
	out, x, _ := cl.ProtectRequest(Message{Code: codes.GET})
	_, sx, _ := srv.UnprotectRequest(out)
	_, other := pair(t, testParams)
	for name, err := range map[string]error{
		"response code as request": second(cl.ProtectRequest(Message{Code: codes.Content})),
		"empty code as request":    second(cl.ProtectRequest(Message{})),
		"OSCORE option given":      second(cl.ProtectRequest(Message{Code: codes.GET, Options: message.Options{{ID: OptionID}}})),
		"plaintext too long":       second(cl.ProtectRequest(Message{Code: codes.POST, Payload: make([]byte, maxPlain)})),
		"request code as response": third(srv.ProtectResponse(Message{Code: codes.GET}, sx, false)),
		"client exchange":          third(srv.ProtectResponse(Message{Code: codes.Changed}, x, false)),
		"another server's":         third(other.ProtectResponse(Message{Code: codes.Changed}, sx, false)),
		"nil exchange":             third(srv.ProtectResponse(Message{Code: codes.Changed}, nil, false)),
		"server exchange":          third(cl.UnprotectResponse(out, sx)),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func second[A, B any](_ A, _ B, err error) error { return err }
func third[A, B any](_ A, _ B, err error) error  { return err }

func TestNew(t *testing.T) {
	for name, p := range map[string]Params{
		"no secret":        {SenderID: []byte{1}},
		"AEAD 11":          {MasterSecret: tvSecret, SenderID: []byte{1}, AEAD: 11},
		"HKDF -11":         {MasterSecret: tvSecret, SenderID: []byte{1}, HKDF: -11},
		"long sender ID":   {MasterSecret: tvSecret, SenderID: make([]byte, 8)},
		"long recipient":   {MasterSecret: tvSecret, RecipientID: make([]byte, 8)},
		"equal IDs":        {MasterSecret: tvSecret, SenderID: []byte{1}, RecipientID: []byte{1}},
		"both IDs empty":   {MasterSecret: tvSecret},
		"long ID context":  {MasterSecret: tvSecret, SenderID: []byte{1}, IDContext: make([]byte, 256)},
		"window 65":        {MasterSecret: tvSecret, SenderID: []byte{1}, ReplayWindow: 65},
		"negative window":  {MasterSecret: tvSecret, SenderID: []byte{1}, ReplayWindow: -1},
		"negative SSNFreq": {MasterSecret: tvSecret, SenderID: []byte{1}, SSNFreq: -1},
	} {
		if _, err := New(p); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "0102030405") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
	p := Params{MasterSecret: tvSecret, SenderID: []byte{1}, RecipientID: []byte{}, AEAD: 10, HKDF: -10, ReplayWindow: 64, IDContext: make([]byte, 255)}
	if _, err := New(p); err != nil {
		t.Error(err)
	}
	if s := fmt.Sprint(p); strings.Contains(s, "0102") || !strings.Contains(s, "16 bytes") {
		t.Errorf("Params print as %s", s)
	}
}

func TestErrorCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
		diag string
	}{
		{fmt.Errorf("%w: x", ErrMalformed), codes.BadOption, "Failed to decode COSE"},
		{fmt.Errorf("%w: x", ErrUnknownKID), codes.Unauthorized, "Security context not found"},
		{fmt.Errorf("%w: x", ErrDecrypt), codes.BadRequest, "Decryption failed"},
		{fmt.Errorf("%w: x", ErrReplay), codes.Unauthorized, "Replay detected"},
		{ErrNotOSCORE, codes.Unauthorized, ""},
		{ErrSeqExhausted, codes.InternalServerError, ""},
		{errors.New("other"), codes.InternalServerError, ""},
		{nil, 0, ""},
	} {
		if c, d := ErrorCode(tc.err); c != tc.code || d != tc.diag {
			t.Errorf("%v: %v %q, want %v %q", tc.err, c, d, tc.code, tc.diag)
		}
	}
}

func TestEcho(t *testing.T) {
	a, b := NewEcho(), NewEcho()
	if len(a) != 8 || bytes.Equal(a, b) {
		t.Errorf("echo values %x %x", a, b)
	}
	if v, ok := Echo(message.Options{opt(message.URIPath, "x"), {ID: EchoID, Value: a}}); !ok || !bytes.Equal(v, a) {
		t.Error("Echo not found")
	}
	if _, ok := Echo(nil); ok {
		t.Error("Echo found in nothing")
	}
}

// TestConcurrent: under the race detector, one context serves many
// goroutines, and every request gets its own partial IV.
func TestConcurrent(t *testing.T) {
	cl, srv := pair(t, testParams)
	const workers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				out, x, err := cl.ProtectRequest(Message{Code: codes.GET})
				if err != nil {
					errs <- err
					return
				}
				_, sx, err := srv.UnprotectRequest(out)
				if err != nil {
					errs <- err
					continue
				}
				r, _, err := srv.ProtectResponse(Message{Code: codes.Content}, sx, false)
				if err == nil {
					_, _, err = cl.UnprotectResponse(r, x)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		// The window is 32 wide: a goroutine that was stalled long can
		// fall behind it, which is what a window is for.
		if !errors.Is(err, ErrReplay) {
			t.Fatal(err)
		}
	}
	if cl.SenderSeq() != workers*each {
		t.Errorf("sender sequence number %d, want %d", cl.SenderSeq(), workers*each)
	}
}
