package fwimage

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

func fuzzSeeds(f *testing.F) {
	good := mustBuild(f, Spec{Version: "1.0.0", Seq: 1, Size: HeaderSize + 40, Seed: 1}, DevKey())
	f.Add(good)
	f.Add(good[:HeaderSize])
	f.Add(good[:100])
	f.Add([]byte{})
	f.Add([]byte("FUDI"))
	f.Add(append(bytes.Clone(good), 0))
	full := mustBuild(f, Spec{Version: string(bytes.Repeat([]byte("z"), 32)), Size: HeaderSize, Seed: 2}, DevKey())
	f.Add(full)
	huge := bytes.Clone(good)
	binary.LittleEndian.PutUint32(huge[12:], 0xFFFFFFFF)
	f.Add(huge)
	bad := bytes.Clone(good)
	bad[100] = 1
	f.Add(bad)
}

// FuzzParseHeader checks that ParseHeader never panics, returns only
// sentinel errors, and accepts only canonical headers: a parsed header
// re-encodes to exactly the bytes it came from.
func FuzzParseHeader(f *testing.F) {
	fuzzSeeds(f)
	// Bounded: a header is fixed-size, whatever follows it: at most 4 KiB
	// (and alloccheck.FuzzSlack) allocated, nothing per byte.
	f.Fuzz(func(t *testing.T, b []byte) {
		var (
			h   *Header
			err error
		)
		alloccheck.Bound(t, "ParseHeader", len(b), 0, 4<<10+alloccheck.FuzzSlack, func() { h, err = ParseHeader(b) })
		if err != nil {
			if h != nil {
				t.Fatalf("header %+v with error %v", h, err)
			}
			if !isSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		var enc [HeaderSize]byte
		putHeader(enc[:], h)
		if !bytes.Equal(enc[:], b[:HeaderSize]) {
			t.Fatalf("header %+v re-encodes to\n% x\nfrom\n% x", h, enc, b[:HeaderSize])
		}
	})
}

// FuzzVerify checks that Verify never panics, returns only sentinel errors,
// and that what it accepts is consistent with its header.
func FuzzVerify(f *testing.F) {
	fuzzSeeds(f)
	pub := DevKey().Public().(ed25519.PublicKey)
	// Bounded like ParseHeader: Verify hashes in place, whatever the
	// payload size the header claims.
	f.Fuzz(func(t *testing.T, img []byte) {
		var (
			h   *Header
			err error
		)
		alloccheck.Bound(t, "Verify", len(img), 0, 4<<10+alloccheck.FuzzSlack, func() { h, err = Verify(img, pub) })
		if err != nil {
			if h != nil || !isSentinel(err) {
				t.Fatalf("Verify = %+v, %v", h, err)
			}
			return
		}
		if len(img) != HeaderSize+int(h.PayloadSize) {
			t.Fatalf("accepted %d bytes with payload size %d", len(img), h.PayloadSize)
		}
		ph, err := ParseHeader(img)
		if err != nil || *ph != *h {
			t.Fatalf("ParseHeader disagrees: %+v, %v", ph, err)
		}
	})
}
