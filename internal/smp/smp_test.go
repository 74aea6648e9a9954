package smp

import (
	"bytes"
	"errors"
	"testing"
)

func decodeAll(t *testing.T, d *Decoder, wire []byte) [][]byte {
	t.Helper()
	var pkts [][]byte
	var lb LineBuffer
	err := lb.Feed(wire, func(line []byte) error {
		p, err := d.Line(line)
		if err != nil {
			return err
		}
		if p != nil {
			pkts = append(pkts, bytes.Clone(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 80, 90, 91, 92, 93, 500, 1000, 4000} {
		body := bytes.Repeat([]byte{0xA5}, n)
		pkt := Packet{Header: Header{Op: OpWrite, Group: GroupImage, Seq: 7, ID: IDImageUpload}, Body: body}.Marshal()
		wire := Encode(pkt)
		for _, line := range bytes.Split(bytes.TrimSuffix(wire, []byte("\n")), []byte("\n")) {
			if len(line)-2 > LineChars || (len(line)-2)%4 != 0 {
				t.Fatalf("n=%d: line of %d base64 characters", n, len(line)-2)
			}
		}
		// Console text between the lines is ignored.
		mixed := append([]byte("BL hello\r\n"), wire...)
		var d Decoder
		got := decodeAll(t, &d, mixed)
		if len(got) != 1 || !bytes.Equal(got[0], pkt) {
			t.Fatalf("n=%d: got %d packets", n, len(got))
		}
		p, err := ParsePacket(got[0])
		if err != nil || p.Seq != 7 || p.ID != IDImageUpload || !bytes.Equal(p.Body, body) {
			t.Fatalf("n=%d: %+v %v", n, p.Header, err)
		}
	}
}

// The CRC check value of CRC-16/XMODEM.
func TestCRC16(t *testing.T) {
	if got := CRC16(0, []byte("123456789")); got != 0x31C3 {
		t.Fatalf("CRC16 = %#04x, want 0x31c3", got)
	}
}

func TestDecoderRefuses(t *testing.T) {
	pkt := Packet{Header: Header{Op: OpRead, Group: GroupDefault, ID: IDEcho}, Body: Marshal(EchoReq{D: "hi"})}.Marshal()
	wire := Encode(pkt)
	bad := bytes.Clone(wire)
	bad[len(bad)-3] ^= 0x01 // a base64 character of the CRC
	var d Decoder
	if _, err := d.Line(bytes.TrimSuffix(bad, []byte("\n"))); !errors.Is(err, ErrMalformed) {
		t.Fatalf("corrupt frame: %v", err)
	}
	big := Encode(make([]byte, 5000))
	d = Decoder{Max: 1024}
	if _, err := d.Line(bytes.SplitN(big, []byte("\n"), 2)[0]); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("large frame: %v", err)
	}
	if _, err := d.Line([]byte("\x06\x09!!!!")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad base64: %v", err)
	}
	if p, err := d.Line([]byte("\x04\x14AAAA")); p != nil || err != nil {
		t.Fatalf("stray continuation: %v %v", p, err)
	}
}

func TestLineBufferDropsLongLines(t *testing.T) {
	var lb LineBuffer
	var got []string
	in := append(bytes.Repeat([]byte("x"), MaxLine+10), []byte("\nok\n")...)
	for i := 0; i < len(in); i += 100 {
		lb.Feed(in[i:min(i+100, len(in))], func(l []byte) error { got = append(got, string(l)); return nil })
	}
	if len(got) != 1 || got[0] != "ok" || lb.Dropped != 1 {
		t.Fatalf("got %q, dropped %d", got, lb.Dropped)
	}
}

func TestCheck(t *testing.T) {
	if err := Check(Marshal(RcRsp{Rc: 8})); err == nil || err.Error() != "rc 8 ENOTSUP" {
		t.Fatalf("rc 8: %v", err)
	}
	if err := Check(Marshal(Status{Err: &ErrV2{Group: 1, Rc: 5}})); err == nil {
		t.Fatal("v2 error not seen")
	}
	if err := Check(Marshal(EchoRsp{R: "x"})); err != nil {
		t.Fatal(err)
	}
	if err := Check([]byte{0xff}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
}

func TestUploadReq(t *testing.T) {
	in := UploadReq{Off: 0, Len: 100, Sha: make([]byte, 32), Upgrade: true, Data: make([]byte, UploadChunk(1024))}
	pkt := Packet{Header: Header{Op: OpWrite, Group: GroupImage, ID: IDImageUpload}, Body: Marshal(in)}.Marshal()
	if n := FrameLen(len(pkt)); (n+2)/3*3 > 1024 {
		t.Fatalf("a full chunk makes a %d-byte frame", n)
	}
	got, err := ParseUploadReq(Marshal(in))
	if err != nil || got.Len != 100 || len(got.Data) != len(in.Data) || !got.Upgrade {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := ParseUploadReq(Marshal(EchoReq{D: "x"})); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no off: %v", err)
	}
}
