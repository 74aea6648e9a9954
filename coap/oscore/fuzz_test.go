package oscore

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Fuzz modes: bit 0 seals the payload as a valid ciphertext of an
// arbitrary plaintext, so that the inner decoding is reached; bit 1 drops
// the server's replay window.
const (
	fuzzSeal   = 1
	fuzzForget = 2
)

// fuzzMessage assembles a message from fuzz input: the OSCORE option
// value, more outer options in CoAP format (what does not decode is
// dropped), and the payload.
func fuzzMessage(code codes.Code, ov, outer, payload []byte) Message {
	m := Message{Code: code, Payload: payload, Options: message.Options{{ID: OptionID, Value: ov}}}
	extra, _, _ := parseOptions(nil, outer)
	m.Options = append(m.Options, extra...)
	return m
}

func valueBytes(m Message) int {
	n := len(m.Payload)
	for _, o := range m.Options {
		n += len(o.Value)
	}
	return n
}

// checkResult: sorted options, no OSCORE option, nothing made from
// nothing.
func checkResult(t *testing.T, in, out Message) {
	t.Helper()
	if !slices.IsSortedFunc(out.Options, func(a, b message.Option) int { return int(a.ID) - int(b.ID) }) {
		t.Fatalf("options not sorted: %v", ids(out.Options))
	}
	if has(out.Options, OptionID) {
		t.Fatal("an OSCORE option in the result")
	}
	if valueBytes(out) > valueBytes(in) {
		t.Fatalf("%d bytes out of %d", valueBytes(out), valueBytes(in))
	}
}

func fuzzSeeds(f *testing.F, protected ...Message) {
	for _, m := range protected {
		var outer []byte
		prev := 0
		for _, o := range m.Options {
			if o.ID != OptionID {
				outer = appendOption(outer, prev, o.ID, o.Value)
				prev = int(o.ID)
			}
		}
		f.Add(optionOf(f, m), outer, m.Payload, byte(0))
		f.Add(optionOf(f, m), outer, m.Payload, byte(fuzzForget))
	}
	f.Add([]byte{}, []byte{}, []byte{}, byte(0))
	f.Add([]byte{0x09, 0x00}, []byte{0x39, 'h', 'o', 's', 't'}, []byte{0x01, 0xb2, 'f', 'w', 0xff, 'x'}, byte(fuzzSeal))
	f.Add([]byte{0x1f}, []byte{0xf0}, []byte{0x01, 0xe0, 0xff, 0xff}, byte(fuzzSeal|fuzzForget))
}

func FuzzUnprotectRequest(f *testing.F) {
	cl, _ := pair(f, testParams)
	a, _, _ := cl.ProtectRequest(uploadBlock(2, []byte("block")))
	b, _, _ := cl.ProtectRequest(Message{Code: codes.GET, Options: message.Options{opt(message.Observe, "")}})
	fuzzSeeds(f, a, b, body(decodeCoAP(f, tvC4Protected)))
	f.Fuzz(func(t *testing.T, ov, outer, payload []byte, mode byte) {
		cl, srv := pair(t, testParams)
		if mode&fuzzForget != 0 {
			srv.ForgetReplayWindow()
		}
		m := fuzzMessage(codes.POST, ov, outer, payload)
		if mode&fuzzSeal != 0 {
			s := sealRaw(cl, payload)
			m.Options[0].Value, m.Payload = s.Options[0].Value, s.Payload
		}
		var (
			in  Message
			x   *Exchange
			err error
		)
		// Bounded: the plaintext and its options, at most 64 bytes a byte
		// of the message (an option a byte, 32 bytes each, twice with the
		// slice's growth) plus 4 KiB and alloccheck.FuzzSlack.
		alloccheck.Bound(t, "UnprotectRequest", valueBytes(m), 64, 4<<10+alloccheck.FuzzSlack, func() { in, x, err = srv.UnprotectRequest(m) })
		if err != nil {
			if x != nil || in.Options != nil {
				t.Fatal("a result with an error")
			}
			return
		}
		checkResult(t, m, in)
		if x.Fresh == (mode&fuzzForget != 0) {
			t.Fatalf("fresh %v with mode %d", x.Fresh, mode)
		}
		// What came in protects and unprotects to itself (on a server
		// that has seen nothing, whatever the partial IVs).
		again, _, err := cl.ProtectRequest(in)
		if err != nil {
			t.Fatal(err)
		}
		_, srv2 := pair(t, testParams)
		back, _, err := srv2.UnprotectRequest(again)
		if err != nil {
			t.Fatal(err)
		}
		if back.Code != in.Code || !bytes.Equal(back.Payload, in.Payload) || !sameOptions(back.Options, in.Options) {
			t.Fatalf("round trip: %v %v %x, was %v %v %x", back.Code, ids(back.Options), back.Payload, in.Code, ids(in.Options), in.Payload)
		}
		if _, _, err := srv.ProtectResponse(Message{Code: codes.Changed}, x, false); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzUnprotectResponse(f *testing.F) {
	cl, srv := pair(f, testParams)
	req, _, _ := cl.ProtectRequest(Message{Code: codes.GET})
	_, sx, _ := srv.UnprotectRequest(req)
	r1, _, _ := srv.ProtectResponse(Message{Code: codes.Content, Payload: []byte("state")}, sx, false)
	r2, _, _ := srv.ProtectResponse(Message{Code: codes.Content, Options: message.Options{opt(message.Observe, "\x07")}}, sx, true)
	fuzzSeeds(f, r1, r2, body(decodeCoAP(f, hx("64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e"))))
	f.Fuzz(func(t *testing.T, ov, outer, payload []byte, mode byte) {
		cl, srv := pair(t, testParams)
		_, x, err := cl.ProtectRequest(Message{Code: codes.GET})
		if err != nil {
			t.Fatal(err)
		}
		m := fuzzMessage(codes.Changed, ov, outer, payload)
		if mode&fuzzSeal != 0 {
			// A genuine response of arbitrary plaintext, reusing the
			// request nonce.
			aad := appendAAD(nil, 10, x.KID, x.PIV)
			m.Options[0].Value = nil
			m.Payload = srv.seal.Seal(nil, x.Request.Nonce[:], payload, aad)
		}
		var (
			in  Message
			use Use
		)
		// Bounded like UnprotectRequest.
		alloccheck.Bound(t, "UnprotectResponse", valueBytes(m), 64, 4<<10+alloccheck.FuzzSlack, func() { in, use, err = cl.UnprotectResponse(m, x) })
		if err != nil {
			if in.Options != nil || use.ID != nil {
				t.Fatal("a result with an error")
			}
			return
		}
		checkResult(t, m, in)
		if !isResponse(in.Code) {
			t.Fatalf("inner code %v", in.Code)
		}
		if _, _, err := cl.UnprotectResponse(m, x); err == nil {
			t.Fatal("the same response twice")
		}
	})
}

func FuzzParseConf(f *testing.F) {
	f.Add(manServerConf)
	f.Add(manClientConf)
	f.Add("master_secret,ascii,s\nsender_id,hex,\"\"\nrecipient_id,ascii,\"x\"\nid_context,hex,\"\"\nssn_freq,integer,1\n")
	f.Add("master_secret,hex,\"0\"\n")
	f.Add("# c\n\n\r\nmaster_salt,ascii,\"\nrfc8613_b_2,bool,false\naead_alg,text,AES-CCM-16-64-128\n")
	// Bounded: at most 16 bytes allocated a byte of the file plus 16 KiB
	// and alloccheck.FuzzSlack (the scanner's line buffer grows to the
	// longest line, at most maxConfLine).
	f.Fuzz(func(t *testing.T, conf string) {
		var (
			p   Params
			err error
		)
		alloccheck.Bound(t, "ParseConf", len(conf), 16, 16<<10+alloccheck.FuzzSlack, func() { p, err = ParseConf(strings.NewReader(conf)) })
		if err != nil {
			if !reflect.DeepEqual(p, Params{}) {
				t.Fatal("params with an error")
			}
			return
		}
		if _, err := New(p); err != nil {
			t.Fatalf("accepted params that New refuses: %v", err)
		}
		back, err := ParseConf(bytes.NewReader(p.MarshalConf()))
		if err != nil {
			t.Fatalf("marshalled params do not parse: %v", err)
		}
		if !reflect.DeepEqual(back, p) {
			t.Fatalf("round trip: %v, was %v", back, p)
		}
	})
}
