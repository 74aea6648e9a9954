package coap

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
)

// pionCoAPServer is a DTLS server that is pion through and through
// (listener, handshake and records), offering connection IDs: it answers
// every confirmable request with a piggybacked 2.05 carrying the request's
// path bytes, built by hand.
func pionCoAPServer(t *testing.T, suite piondtls.CipherSuiteID, key []byte) net.Addr {
	t.Helper()
	l, err := piondtls.ListenWithOptions("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)},
		piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		piondtls.WithCipherSuites(suite),
		piondtls.WithConnectionIDGenerator(piondtls.RandomCIDGenerator(6)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 2048)
				for {
					n, err := conn.Read(buf)
					if err != nil {
						return
					}
					req := buf[:n]
					if n < 4 || req[0]>>4&3 != 0 {
						continue
					}
					tkl := int(req[0] & 15)
					resp := []byte{0x60 | byte(tkl), 0x45, req[2], req[3]}
					resp = append(resp, req[4:4+tkl]...)
					resp = append(resp, 0xff)
					resp = append(resp, req[4+tkl:]...)
					if _, err := conn.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr()
}

// TestCIDRecordsAgainstPion proves the client's tls12_cid records against
// pion's: pion accepts nothing but CID records once a CID is agreed, and
// sends CID records to a client that gave one.
func TestCIDRecordsAgainstPion(t *testing.T) {
	key := []byte("cid-test-key-0123")
	for _, suite := range []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256} {
		for _, recvCID := range []int{0, 5} {
			t.Run(suite.String()+"/recvCID="+string(rune('0'+recvCID)), func(t *testing.T) {
				addr := pionCoAPServer(t, suite, key)
				cache, err := NewDTLSCache(DTLSCacheState)
				if err != nil {
					t.Fatal(err)
				}
				cache.recvCIDLen = recvCID
				c, err := Dial(context.Background(), addr.String(), &PSK{Identity: "id", Key: key, Cache: cache}, Transmission{AckTimeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				var seen []RecordSeen
				c.OnRecord = func(r RecordSeen) { seen = append(seen, r) }
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				for i, path := range []string{"a", "bb", "ccc"} {
					r, err := c.Get(ctx, path)
					if err != nil {
						t.Fatalf("GET %s: %v", path, err)
					}
					if !bytes.Contains(r.Payload, []byte(path)) {
						t.Fatalf("GET %s: payload %q", path, r.Payload)
					}
					if len(seen) < i+1 {
						t.Fatalf("%d records seen after %d answers", len(seen), i+1)
					}
				}
				if got := c.DTLSRecords(); got != "client" {
					t.Fatalf("records kept by %q", got)
				}
				if len(c.rl.sendCID) != 6 || len(c.rl.recvCID) != recvCID {
					t.Fatalf("CIDs of %d and %d bytes", len(c.rl.sendCID), len(c.rl.recvCID))
				}
				if d := c.LastRequestDatagram(); len(d) < 13+6 || d[0] != ctCID || !bytes.Equal(d[11:17], c.rl.sendCID) {
					t.Fatalf("request datagram % x is no tls12_cid record with the device's CID", d)
				}
				for i, r := range seen {
					if r.Epoch != 1 || r.KeyFP != c.rl.keyFP || (i > 0 && r.Seq <= seen[i-1].Seq) {
						t.Fatalf("records seen %+v", seen)
					}
				}
			})
		}
	}
}

// TestCIDRecordOpen covers what pion does not send: padding in the inner
// plaintext, a wrong CID, a CID record where none was agreed.
func TestCIDRecordOpen(t *testing.T) {
	rl := testRecordLayer(t, false)
	rl.sendCID, rl.recvCID = []byte{1, 2, 3}, []byte{1, 2, 3}
	rec := rl.seal(nil, ctApplicationData, []byte("hi"))
	if rec[0] != ctCID || !bytes.Equal(rec[11:14], rl.sendCID) {
		t.Fatalf("record % x", rec)
	}
	pt, ok, rest, err := rl.open(nil, rec, nil)
	if !ok || err != nil || string(pt) != "hi" || len(rest) != 0 {
		t.Fatalf("open: %q %v %v", pt, ok, err)
	}

	// A padded inner plaintext, sealed by hand.
	padded := sealCIDRecord(rl, 9, append([]byte("pad"), ctApplicationData, 0, 0, 0, 0))
	if pt, ok, _, _ := rl.open(nil, padded, nil); !ok || string(pt) != "pad" {
		t.Fatalf("padded record: %q %v", pt, ok)
	}
	// All padding, no content type: not a record.
	if _, ok, _, _ := rl.open(nil, sealCIDRecord(rl, 10, []byte{0, 0, 0}), nil); ok {
		t.Fatal("an inner plaintext of zeros opened")
	}
	// Two records in one datagram: the second is handed back.
	two := append(rl.seal(nil, ctApplicationData, []byte("one")), rl.seal(nil, ctApplicationData, []byte("two"))...)
	pt, ok, rest, _ = rl.open(nil, two, nil)
	if !ok || string(pt) != "one" {
		t.Fatalf("first of two: %q %v", pt, ok)
	}
	if pt, ok, _, _ = rl.open(nil, rest, nil); !ok || string(pt) != "two" {
		t.Fatalf("second of two: %q %v", pt, ok)
	}

	wrong := bytes.Clone(rec)
	wrong[12] ^= 1
	if _, ok, _, _ := rl.open(nil, wrong, nil); ok {
		t.Fatal("a record with another CID opened")
	}
	plain := testRecordLayer(t, false)
	if _, ok, _, _ := plain.open(nil, rec, nil); ok {
		t.Fatal("a CID record opened where no CID was agreed")
	}
	// Once a CID is agreed, a record without one is refused.
	plain.seq = 40
	if _, ok, _, _ := rl.open(nil, plain.seal(nil, ctApplicationData, []byte("x")), nil); ok {
		t.Fatal("a record without the agreed CID opened")
	}
}

// sealCIDRecord seals inner as the DTLSInnerPlaintext of a tls12_cid record
// with sequence number seq.
func sealCIDRecord(rl *recordLayer, seq uint64, inner []byte) []byte {
	seq64 := uint64(rl.epoch)<<48 | seq
	hl := recordHeaderLen + len(rl.sendCID)
	h := make([]byte, hl+explicitNonceLen)
	h[0], h[1], h[2] = ctCID, 0xfe, 0xfd
	for i := range 8 {
		h[3+i] = byte(seq64 >> (56 - 8*i))
		h[hl+i] = byte(seq64 >> (56 - 8*i))
	}
	copy(h[11:], rl.sendCID)
	n := explicitNonceLen + len(inner) + rl.local.Overhead()
	h[hl-2], h[hl-1] = byte(n>>8), byte(n)
	var nonce [12]byte
	copy(nonce[:4], rl.localIV[:])
	copy(nonce[4:], h[hl:])
	aad := bytes.Clone(rl.setAADCID(seq64, rl.sendCID, len(inner)))
	return rl.local.Seal(h, nonce[:], inner, aad)
}
