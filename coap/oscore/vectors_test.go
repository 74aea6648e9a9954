package oscore

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// The test vectors of RFC 8613 Appendix C, every intermediate value
// checked byte for byte. The values are the RFC's; libcoap 4.3.5's
// tests/test_oscore.c carries the same inputs and messages.

func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// decodeCoAP decodes a whole CoAP datagram.
func decodeCoAP(t testing.TB, b []byte) message.Message {
	t.Helper()
	m := message.Message{Options: make(message.Options, 0, 32)}
	if _, err := coder.DefaultCoder.Decode(b, &m); err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return m
}

// encodeCoAP encodes m with the header fields (type, message ID, token) of
// hdr.
func encodeCoAP(t testing.TB, hdr message.Message, m Message) []byte {
	t.Helper()
	full := message.Message{Type: hdr.Type, MessageID: hdr.MessageID, Token: hdr.Token, Code: m.Code, Options: m.Options, Payload: m.Payload}
	n, _ := coder.DefaultCoder.Size(full)
	b := make([]byte, n)
	n, err := coder.DefaultCoder.Encode(full, b)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b[:n]
}

func body(m message.Message) Message {
	return Message{Code: m.Code, Options: m.Options, Payload: m.Payload}
}

func optionOf(t testing.TB, m Message) []byte {
	t.Helper()
	for _, o := range m.Options {
		if o.ID == OptionID {
			return o.Value
		}
	}
	t.Fatal("no OSCORE option")
	return nil
}

func eq(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

var (
	tvSecret = hx("0102030405060708090a0b0c0d0e0f10")
	tvSalt   = hx("9e7ca92223786340")
	tvIDCtx  = hx("37cbf3210017a2d3")
)

// reverse gives the peer's Params.
func reverse(p Params) Params {
	p.SenderID, p.RecipientID = p.RecipientID, p.SenderID
	return p
}

// TestKeyDerivationVectors: C.1 (with Master Salt), C.2 (without) and C.3
// (with ID Context), client and server.
func TestKeyDerivationVectors(t *testing.T) {
	for _, tc := range []struct {
		name                              string
		p                                 Params
		senderInfo, recipientInfo, ivInfo string
		senderKey, recipientKey, iv       string
		senderNonce, recipientNonce       string
	}{
		{"C.1.1", Params{MasterSecret: tvSecret, MasterSalt: tvSalt, SenderID: []byte{}, RecipientID: hx("01")},
			"8540f60a634b657910", "854101f60a634b657910", "8540f60a6249560d",
			"f0910ed7295e6ad4b54fc793154302ff", "ffb14e093c94c9cac9471648b4f98710", "4622d4dd6d944168eefb54987c",
			"4622d4dd6d944168eefb54987c", "4722d4dd6d944169eefb54987c"},
		{"C.1.2", Params{MasterSecret: tvSecret, MasterSalt: tvSalt, SenderID: hx("01"), RecipientID: []byte{}},
			"854101f60a634b657910", "8540f60a634b657910", "8540f60a6249560d",
			"ffb14e093c94c9cac9471648b4f98710", "f0910ed7295e6ad4b54fc793154302ff", "4622d4dd6d944168eefb54987c",
			"4722d4dd6d944169eefb54987c", "4622d4dd6d944168eefb54987c"},
		{"C.2.1", Params{MasterSecret: tvSecret, SenderID: hx("00"), RecipientID: hx("01")},
			"854100f60a634b657910", "854101f60a634b657910", "8540f60a6249560d",
			"321b26943253c7ffb6003b0b64d74041", "e57b5635815177cd679ab4bcec9d7dda", "be35ae297d2dace910c52e99f9",
			"bf35ae297d2dace910c52e99f9", "bf35ae297d2dace810c52e99f9"},
		{"C.2.2", Params{MasterSecret: tvSecret, SenderID: hx("01"), RecipientID: hx("00")},
			"854101f60a634b657910", "854100f60a634b657910", "8540f60a6249560d",
			"e57b5635815177cd679ab4bcec9d7dda", "321b26943253c7ffb6003b0b64d74041", "be35ae297d2dace910c52e99f9",
			"bf35ae297d2dace810c52e99f9", "bf35ae297d2dace910c52e99f9"},
		{"C.3.1", Params{MasterSecret: tvSecret, MasterSalt: tvSalt, SenderID: []byte{}, RecipientID: hx("01"), IDContext: tvIDCtx},
			"85404837cbf3210017a2d30a634b657910", "8541014837cbf3210017a2d30a634b657910", "85404837cbf3210017a2d30a6249560d",
			"af2a1300a5e95788b356336eeecd2b92", "e39a0c7c77b43f03b4b39ab9a268699f", "2ca58fb85ff1b81c0b7181b85e",
			"2ca58fb85ff1b81c0b7181b85e", "2da58fb85ff1b81d0b7181b85e"},
		{"C.3.2", Params{MasterSecret: tvSecret, MasterSalt: tvSalt, SenderID: hx("01"), RecipientID: []byte{}, IDContext: tvIDCtx},
			"8541014837cbf3210017a2d30a634b657910", "85404837cbf3210017a2d30a634b657910", "85404837cbf3210017a2d30a6249560d",
			"e39a0c7c77b43f03b4b39ab9a268699f", "af2a1300a5e95788b356336eeecd2b92", "2ca58fb85ff1b81c0b7181b85e",
			"2da58fb85ff1b81d0b7181b85e", "2ca58fb85ff1b81c0b7181b85e"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			eq(t, "sender info", appendInfo(nil, p.SenderID, p.IDContext, 10, "Key", 16), hx(tc.senderInfo))
			eq(t, "recipient info", appendInfo(nil, p.RecipientID, p.IDContext, 10, "Key", 16), hx(tc.recipientInfo))
			eq(t, "common IV info", appendInfo(nil, nil, p.IDContext, 10, "IV", 13), hx(tc.ivInfo))
			k, err := derive(p)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "sender key", k.sender[:], hx(tc.senderKey))
			eq(t, "recipient key", k.recipient[:], hx(tc.recipientKey))
			eq(t, "common IV", k.iv[:], hx(tc.iv))
			c, err := New(p)
			if err != nil {
				t.Fatal(err)
			}
			// "From the previous parameters and a Partial IV equal to 0"
			sn, rn := c.nonce(p.SenderID, []byte{0}), c.nonce(p.RecipientID, []byte{0})
			eq(t, "sender nonce", sn[:], hx(tc.senderNonce))
			eq(t, "recipient nonce", rn[:], hx(tc.recipientNonce))
			if c.sealFP != fingerprint(hx(tc.senderKey)) || c.openFP != fingerprint(hx(tc.recipientKey)) {
				t.Error("key fingerprints do not name the derived keys")
			}
		})
	}
}

var (
	tvC1Client = Params{MasterSecret: tvSecret, MasterSalt: tvSalt, SenderID: []byte{}, RecipientID: hx("01")}
	tvC2Client = Params{MasterSecret: tvSecret, SenderID: hx("00"), RecipientID: hx("01")}
	tvC3Client = Params{MasterSecret: tvSecret, MasterSalt: tvSalt, SenderID: []byte{}, RecipientID: hx("01"), IDContext: tvIDCtx}

	tvC4Request   = hx("44015d1f00003974396c6f63616c686f737483747631")
	tvC4Protected = hx("44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e")
	tvResponse    = hx("64455d1f00003974ff48656c6c6f20576f726c6421")
)

// TestRequestVectors: C.4 (with Master Salt), C.5 (without) and C.6 (with
// ID Context), client Sender Sequence Number 20; then the server side of
// each.
func TestRequestVectors(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		p                       Params
		unprotected, protected  string
		piv, kid, aadArray, aad string
		plaintext, nonce        string
		option, ciphertext      string
	}{
		{"C.4", tvC1Client, "44015d1f00003974396c6f63616c686f737483747631",
			"44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e",
			"14", "", "8501810a40411440", "8368456e63727970743040488501810a40411440",
			"01b3747631", "4622d4dd6d944168eefb549868", "0914", "612f1092f1776f1c1668b3825e"},
		{"C.5", tvC2Client, "440171c30000b932396c6f63616c686f737483747631",
			"440271c30000b932396c6f63616c686f737463091400ff4ed339a5a379b0b8bc731fffb0",
			"14", "00", "8501810a4100411440", "8368456e63727970743040498501810a4100411440",
			"01b3747631", "bf35ae297d2dace910c52e99ed", "091400", "4ed339a5a379b0b8bc731fffb0"},
		{"C.6", tvC3Client, "44012f8eef9bbf7a396c6f63616c686f737483747631",
			"44022f8eef9bbf7a396c6f63616c686f73746b19140837cbf3210017a2d3ff72cd7273fd331ac45cffbe55c3",
			"14", "", "8501810a40411440", "8368456e63727970743040488501810a40411440",
			"01b3747631", "2ca58fb85ff1b81c0b7181b84a", "19140837cbf3210017a2d3", "72cd7273fd331ac45cffbe55c3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := New(tc.p)
			if err != nil {
				t.Fatal(err)
			}
			cl.SetSenderSeq(20)
			aad := appendAAD(nil, 10, hx(tc.kid), hx(tc.piv))
			eq(t, "AAD", aad, hx(tc.aad))
			eq(t, "aad_array", aad[12:], hx(tc.aadArray))
			nonce := cl.nonce(hx(tc.kid), hx(tc.piv))
			eq(t, "nonce", nonce[:], hx(tc.nonce))
			// The RFC's plaintext is what the RFC's ciphertext holds.
			pt, err := cl.seal.Open(nil, nonce[:], hx(tc.ciphertext), aad)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "plaintext", pt, hx(tc.plaintext))

			hdr := decodeCoAP(t, hx(tc.unprotected))
			out, x, err := cl.ProtectRequest(body(hdr))
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "OSCORE option", optionOf(t, out), hx(tc.option))
			eq(t, "ciphertext", out.Payload, hx(tc.ciphertext))
			eq(t, "protected request", encodeCoAP(t, hdr, out), hx(tc.protected))
			eq(t, "exchange kid", x.KID, hx(tc.kid))
			eq(t, "exchange partial IV", x.PIV, hx(tc.piv))
			eq(t, "reported nonce", x.Request.Nonce[:], hx(tc.nonce))
			if cl.SenderSeq() != 21 {
				t.Errorf("sender sequence number %d after the request, want 21", cl.SenderSeq())
			}

			srv, err := New(reverse(tc.p))
			if err != nil {
				t.Fatal(err)
			}
			srv.StartReplayWindow()
			wire := decodeCoAP(t, hx(tc.protected))
			in, sx, err := srv.UnprotectRequest(body(wire))
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "unprotected request", encodeCoAP(t, wire, in), hx(tc.unprotected))
			if !sx.Fresh || sx.Request.Nonce != nonce || sx.Request.KeyFP != x.Request.KeyFP {
				t.Errorf("server exchange: fresh %v nonce %x key %x, want true %x %x", sx.Fresh, sx.Request.Nonce, sx.Request.KeyFP, nonce, x.Request.KeyFP)
			}
			if tc.p.IDContext != nil {
				eq(t, "kid context", sx.KIDContext, tc.p.IDContext)
			}
		})
	}
}

// TestResponseVectors: C.7 (the response reuses the request's nonce) and
// C.8 (the server's own Partial IV, Sender Sequence Number 0), answering
// the C.4 request; then the client side of each.
func TestResponseVectors(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ownPIV        bool
		nonce, option string
		ciphertext    string
		protected     string
		ssnAfter      uint64
	}{
		{"C.7", false, "4622d4dd6d944168eefb549868", "", "dbaad1e9a7e7b2a813d3c31524378303cdafae119106",
			"64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106", 0},
		{"C.8", true, "4722d4dd6d944169eefb54987c", "0100", "4d4c13669384b67354b2b6175ff4b8658c666a6cf88e",
			"64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const (
				aad       = "8368456e63727970743040488501810a40411440"
				plaintext = "45ff48656c6c6f20576f726c6421"
			)
			srv, err := New(reverse(tvC1Client))
			if err != nil {
				t.Fatal(err)
			}
			srv.StartReplayWindow()
			_, sx, err := srv.UnprotectRequest(body(decodeCoAP(t, tvC4Protected)))
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "AAD", appendAAD(nil, 10, sx.KID, sx.PIV), hx(aad))
			pt, err := srv.seal.Open(nil, hx(tc.nonce), hx(tc.ciphertext), hx(aad))
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "plaintext", pt, hx(plaintext))

			hdr := decodeCoAP(t, tvResponse)
			out, use, err := srv.ProtectResponse(body(hdr), sx, tc.ownPIV)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "nonce", use.Nonce[:], hx(tc.nonce))
			eq(t, "OSCORE option", optionOf(t, out), hx(tc.option))
			eq(t, "ciphertext", out.Payload, hx(tc.ciphertext))
			eq(t, "protected response", encodeCoAP(t, hdr, out), hx(tc.protected))
			if srv.SenderSeq() != tc.ssnAfter {
				t.Errorf("server sequence number %d, want %d", srv.SenderSeq(), tc.ssnAfter)
			}

			cl, err := New(tvC1Client)
			if err != nil {
				t.Fatal(err)
			}
			cl.SetSenderSeq(20)
			creq, x, err := cl.ProtectRequest(body(decodeCoAP(t, tvC4Request)))
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "request payload", creq.Payload, body(decodeCoAP(t, tvC4Protected)).Payload)
			wire := decodeCoAP(t, hx(tc.protected))
			in, cuse, err := cl.UnprotectResponse(body(wire), x)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "unprotected response", encodeCoAP(t, wire, in), tvResponse)
			if cuse.Nonce != use.Nonce || cuse.KeyFP != use.KeyFP {
				t.Errorf("client reports nonce %x key %x, server %x %x", cuse.Nonce, cuse.KeyFP, use.Nonce, use.KeyFP)
			}
		})
	}
}

// TestCBOR: the integer and head encodings against RFC 8949 Appendix A.
func TestCBOR(t *testing.T) {
	for _, tc := range []struct {
		v    int
		want string
	}{
		{0, "00"}, {10, "0a"}, {23, "17"}, {24, "1818"}, {100, "1864"}, {1000, "1903e8"},
		{1000000, "1a000f4240"}, {1000000000000, "1b000000e8d4a51000"},
		{-1, "20"}, {-10, "29"}, {-100, "3863"}, {-1000, "3903e7"},
	} {
		eq(t, fmt.Sprint(tc.v), appendInt(nil, tc.v), hx(tc.want))
	}
	eq(t, "h''", appendBytes(nil, nil), hx("40"))
	eq(t, "h'01020304'", appendBytes(nil, hx("01020304")), hx("4401020304"))
	long := appendBytes(nil, make([]byte, 255))
	eq(t, "255-byte head", long[:2], hx("58ff"))
	long = appendBytes(nil, make([]byte, 256))
	eq(t, "256-byte head", long[:3], hx("590100"))
}
