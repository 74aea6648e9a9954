package smp

import (
	"testing"
)

// FuzzDecoder feeds console bytes through the line splitter and the frame
// decoder: no panic, and every packet it returns parses as a header and
// fits the bound.
func FuzzDecoder(f *testing.F) {
	f.Add(Encode(Packet{Header: Header{Op: OpRead, ID: IDEcho}, Body: Marshal(EchoReq{D: "hello"})}.Marshal()))
	f.Add(Encode(make([]byte, 300)))
	f.Add([]byte("\x06\x09AAA=\n\x04\x14AAAA\n"))
	f.Add([]byte("BL text\r\n\x06\x09//8=\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		d := Decoder{Max: 1024}
		var lb LineBuffer
		lb.Feed(in, func(line []byte) error {
			p, err := d.Line(line)
			if err == nil && p != nil {
				if len(p)+4 > 1024 {
					t.Fatalf("packet of %d bytes over the bound", len(p))
				}
				if _, err := ParsePacket(p); err == nil && len(p) < HeaderLen {
					t.Fatalf("a %d-byte packet parsed", len(p))
				}
			}
			return nil
		})
	})
}

// FuzzBodies decodes a CBOR body as every request and response type.
func FuzzBodies(f *testing.F) {
	f.Add(Marshal(UploadReq{Off: 0, Len: 10, Data: []byte("abc"), Sha: make([]byte, 32)}))
	f.Add(Marshal(ImageStateRsp{Images: []ImageSlot{{Slot: 0, Version: "1.2.3", Hash: make([]byte, 32), Active: true}}}))
	f.Add(Marshal(Status{Err: &ErrV2{Group: 1, Rc: 8}}))
	f.Add([]byte{0x9f, 0x9f, 0x9f, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		_ = Check(body)
		_, _ = ParseUploadReq(body)
		var a ImageStateRsp
		_ = Unmarshal(body, &a)
		var b ImageStateReq
		_ = Unmarshal(body, &b)
		var c EchoReq
		_ = Unmarshal(body, &c)
		var e UploadRsp
		_ = Unmarshal(body, &e)
		if len(a.Images) > maxElements {
			t.Fatalf("%d images past the bound", len(a.Images))
		}
	})
}
