package esprom

import (
	"bytes"
	"errors"
	"testing"
)

func split(s *Splitter, line []byte) [][]byte {
	var out [][]byte
	for _, b := range line {
		if f, ok := s.Feed(b); ok {
			out = append(out, bytes.Clone(f))
		}
	}
	return out
}

func TestSLIPRoundTrip(t *testing.T) {
	p := []byte{0x00, 0xC0, 0xDB, 0x01, 0xDB, 0xDC, 0xC0, 0xC0}
	line := AppendSLIP(nil, p)
	if bytes.Count(line, []byte{0xC0}) != 2 {
		t.Fatalf("END inside the frame: % x", line)
	}
	line = append([]byte("boot log garbage\r\n"), line...)
	line = AppendSLIP(line, []byte{1, 2, 3})
	got := split(NewSplitter(0), line)
	if len(got) != 2 || !bytes.Equal(got[0], p) || !bytes.Equal(got[1], []byte{1, 2, 3}) {
		t.Fatalf("frames %q", got)
	}
}

func TestSplitterDrops(t *testing.T) {
	s := NewSplitter(4)
	got := split(s, []byte{0xC0, 1, 2, 3, 4, 5, 0xC0, 0xC0, 0xDB, 0x01, 0xC0, 0xC0, 9, 0xC0})
	if len(got) != 1 || !bytes.Equal(got[0], []byte{9}) || s.Dropped() != 2 {
		t.Fatalf("frames %v, dropped %d", got, s.Dropped())
	}
}

func TestPackets(t *testing.T) {
	data := []byte{1, 2, 3}
	r := Request{Op: OpFlashData, Checksum: Checksum(data), Data: data}
	got, err := DecodeRequest(r.Marshal())
	if err != nil || got.Op != r.Op || got.Checksum != 0xEF^1^2^3 || !bytes.Equal(got.Data, data) {
		t.Fatalf("%+v %v", got, err)
	}
	resp := Response{Op: OpReadReg, Value: 0xF01D83, Data: []byte{0, 0, 0, 0}}
	rg, err := DecodeResponse(resp.Marshal())
	if err != nil || rg.Value != 0xF01D83 {
		t.Fatalf("%+v %v", rg, err)
	}
	if _, err := rg.Status(0); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeResponse(r.Marshal()); !errors.Is(err, ErrDirection) {
		t.Fatalf("a request as a response: %v", err)
	}
	bad := Response{Op: OpFlashBegin, Data: []byte{1, ErrFlashWrite, 0, 0}}
	_, err = bad.Status(0)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != ErrFlashWrite {
		t.Fatalf("status: %v", err)
	}
	md5 := Response{Op: OpSPIFlashMD5, Data: append(bytes.Repeat([]byte("a"), 32), 0, 0, 0, 0)}
	if d, err := md5.Status(32); err != nil || len(d) != 32 {
		t.Fatalf("md5 %q %v", d, err)
	}
	if _, err := (Response{Op: OpSPIFlashMD5, Data: []byte{0, 0}}).Status(32); !errors.Is(err, ErrShort) {
		t.Fatalf("short md5: %v", err)
	}
	long := make([]byte, MaxPacket+1)
	if _, err := DecodeRequest(long); !errors.Is(err, ErrTooLong) {
		t.Fatal(err)
	}
}

// FuzzSplitter: frames never exceed the limit and survive a round trip.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte{0xC0, 0x00, 0x08, 0x24, 0x00, 0xC0})
	f.Add([]byte{0xC0, 0xDB, 0xDC, 0xDB, 0xDD, 0xDB, 0xC0})
	f.Fuzz(func(t *testing.T, line []byte) {
		s := NewSplitter(64)
		for _, fr := range split(s, line) {
			if len(fr) == 0 || len(fr) > 64 {
				t.Fatalf("frame of %d bytes", len(fr))
			}
			again := split(NewSplitter(64), AppendSLIP(nil, fr))
			if len(again) != 1 || !bytes.Equal(again[0], fr) {
				t.Fatalf("round trip of % x: %v", fr, again)
			}
		}
	})
}

// FuzzDecode: the decoders never panic and what they accept re-encodes
// to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(Request{Op: OpSync, Data: SyncData}.Marshal())
	f.Add(Response{Op: OpSPIFlashMD5, Data: make([]byte, 36)}.Marshal())
	f.Fuzz(func(t *testing.T, p []byte) {
		if r, err := DecodeRequest(p); err == nil && !bytes.Equal(r.Marshal(), p) {
			t.Fatalf("request % x re-encodes as % x", p, r.Marshal())
		}
		if r, err := DecodeResponse(p); err == nil {
			if !bytes.Equal(r.Marshal(), p) {
				t.Fatalf("response % x re-encodes as % x", p, r.Marshal())
			}
			for _, n := range []int{0, 4, 32} {
				d, err := r.Status(n)
				if err == nil && len(d) != n {
					t.Fatalf("status(%d) gave %d bytes", n, len(d))
				}
			}
		}
	})
}
