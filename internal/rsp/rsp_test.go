package rsp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// limit is the payload limit the tests read with: the stub's.
const limit = 64 << 10

// cs is the checksum digits of s, for frames written by hand.
func cs(s string) string {
	var sum byte
	for i := range len(s) {
		sum += s[i]
	}
	return string([]byte{hexDigits[sum>>4], hexDigits[sum&0xf]})
}

func TestReadPacket(t *testing.T) {
	long := strings.Repeat("a", limit+1)
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		{"plain", "$OK#9a", "OK", nil},
		{"upper-case checksum", "$m0,4#FD", "m0,4", nil},
		{"empty", "$#00", "", nil},
		{"acks and noise before", "++-\x00$?#3f", "?", nil},
		{"run-length", "$0* #7a", "0000", nil},
		{"run-length mid", "$m20*\"0,4#ab", "m20000000,4", nil},
		{"run-length longest", "$a*~#" + cs("a*~"), strings.Repeat("a", 1+'~'-29), nil},
		{"dollar restarts frame", "$garbage$OK#9a", "OK", nil},
		{"bad checksum", "$OK#00", "OK", ErrChecksum},
		{"bad checksum digits", "$OK#zz", "OK", ErrMalformed},
		{"run-length first", "$* #00", "", ErrMalformed},
		{"run-length count too small", "$0*\x1d#00", "", ErrMalformed},
		{"run-length count control", "$0*\x01#" + cs("0*\x01"), "", ErrMalformed},
		{"run-length count past tilde", "$0*\x7f#00", "", ErrMalformed},
		{"run-length count hash", "$0*##00", "", ErrMalformed},
		{"run-length count dollar", "$0*$#00", "", ErrMalformed},
		{"too long", "$" + long + "#00", "", ErrTooLong},
		{"run-length past the limit", "$" + long[:limit-1] + "*\"#00", "", ErrTooLong},
		{"eof before frame", "+++", "", io.EOF},
		{"eof in frame", "$OK", "", io.ErrUnexpectedEOF},
		{"eof in run-length", "$0*", "", io.ErrUnexpectedEOF},
		{"eof in checksum", "$OK#9", "", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadPacket(bufio.NewReader(strings.NewReader(tt.in)), limit)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadPacket(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			// A frame that arrived whole comes back even when its
			// checksum is wrong, for the receiver's log.
			if (tt.wantErr == nil || errors.Is(tt.wantErr, ErrChecksum)) && string(got) != tt.want {
				t.Errorf("ReadPacket(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestReadPacketSequence(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("xx+$qC#b4-+$?#3f+$E03#a8"))
	for _, want := range []string{"qC", "?", "E03"} {
		got, err := ReadPacket(r, limit)
		if err != nil || string(got) != want {
			t.Fatalf("ReadPacket = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := ReadPacket(r, limit); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadPacket at end: %v, want EOF", err)
	}
}

func TestAppendPacket(t *testing.T) {
	tests := []struct{ data, want string }{
		{"", "$#00"},
		{"OK", "$OK#9a"},
		{"S05", "$S05#b8"},
		{"E03", "$E03#a8"},
	}
	for _, tt := range tests {
		if got := string(AppendPacket(nil, []byte(tt.data))); got != tt.want {
			t.Errorf("AppendPacket(%q) = %q, want %q", tt.data, got, tt.want)
		}
	}
}

func TestBinaryEscapes(t *testing.T) {
	tests := []struct {
		name    string
		raw     []byte
		escaped string
	}{
		{"plain", []byte("abc"), "abc"},
		{"specials", []byte("#$}*"), "}\x03}\x04}]}\x0a"},
		{"high and nul", []byte{0x00, 0xff, 0x7d ^ 0x20}, "\x00\xff]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(AppendBinary(nil, tt.raw)); got != tt.escaped {
				t.Errorf("AppendBinary(%q) = %q, want %q", tt.raw, got, tt.escaped)
			}
			got, err := DecodeBinary([]byte(tt.escaped))
			if err != nil || !bytes.Equal(got, tt.raw) {
				t.Errorf("DecodeBinary(%q) = %q, %v; want %q", tt.escaped, got, err, tt.raw)
			}
		})
	}
	if _, err := DecodeBinary([]byte("ab}")); !errors.Is(err, ErrMalformed) {
		t.Errorf("DecodeBinary with trailing escape: %v, want ErrMalformed", err)
	}
}

// TestAppendBinaryUpTo: the limit counts escaped bytes and never splits an
// escape.
func TestAppendBinaryUpTo(t *testing.T) {
	data := []byte("ab#$}*\x00\xff}}")
	enc, n := AppendBinaryUpTo(nil, data, 1000)
	if n != len(data) || bytes.ContainsAny(enc, "#$*") {
		t.Fatalf("AppendBinaryUpTo: %q, took %d", enc, n)
	}
	for room := range len(enc) + 1 {
		part, n := AppendBinaryUpTo(nil, data, room)
		if len(part) > room {
			t.Errorf("room %d: %d bytes out", room, len(part))
		}
		if d, err := DecodeBinary(part); err != nil || !bytes.Equal(d, data[:n]) {
			t.Errorf("room %d: decodes to %q, %v; want %q", room, d, err, data[:n])
		}
	}
}

func TestHex(t *testing.T) {
	if got := string(AppendHex([]byte("qRcmd,"), []byte("reset\n"))); got != "qRcmd,72657365740a" {
		t.Errorf("AppendHex = %q", got)
	}
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{"", "", nil},
		{"48690A", "Hi\n", nil},
		{"48690a", "Hi\n", nil},
		{"486", "", ErrMalformed},
		{"4g", "", ErrMalformed},
	}
	for _, tt := range tests {
		got, err := DecodeHex([]byte(tt.in))
		if !errors.Is(err, tt.wantErr) || (err == nil && string(got) != tt.want) {
			t.Errorf("DecodeHex(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCRC32(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
	}{
		{"", 0xffffffff},
		{"123456789", 0x0376e6e7}, // CRC-32/MPEG-2 check value
		{"a", 0xe66c6494},
	}
	for _, tt := range tests {
		if got := CRC32(0xffffffff, []byte(tt.in)); got != tt.want {
			t.Errorf("CRC32(%q) = %08x, want %08x", tt.in, got, tt.want)
		}
	}
	// Continuing over pieces equals one pass.
	if a, b := CRC32(CRC32(0xffffffff, []byte("1234")), []byte("56789")), uint32(0x0376e6e7); a != b {
		t.Errorf("CRC32 in two pieces = %08x, want %08x", a, b)
	}
}

func TestLinkSend(t *testing.T) {
	tests := []struct {
		name    string
		peer    string // what the peer sends back
		noAck   bool
		moveOn  string
		writes  int    // frames written
		left    string // what stays unread
		wantErr error
	}{
		{name: "acknowledged", peer: "+", writes: 1},
		{name: "noise then ack", peer: "x\x00+", writes: 1},
		{name: "refused once", peer: "-+", writes: 2},
		{name: "refused every time", peer: "-----", writes: 3, left: "--", wantErr: ErrRefused},
		{name: "next packet in place of an ack", peer: "$OK#9a", moveOn: "$", writes: 1, left: "$OK#9a"},
		{name: "interrupt in place of an ack", peer: "\x03", moveOn: "$\x03", writes: 1, left: "\x03"},
		{name: "dollar is noise unless named", peer: "$+", writes: 1},
		{name: "hang-up", peer: "-", writes: 2, wantErr: io.EOF},
		{name: "no acknowledgements", peer: "-", noAck: true, writes: 1, left: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			resent := 0
			l := &Link{
				R: bufio.NewReader(strings.NewReader(tt.peer)), W: &out,
				NoAck: tt.noAck, Tries: 3, MoveOn: tt.moveOn,
				Resend: func(data []byte) {
					if string(data) != "qC" {
						t.Errorf("Resend(%q)", data)
					}
					resent++
				},
			}
			err := l.Send([]byte("qC"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Send: %v, want %v", err, tt.wantErr)
			}
			if want := strings.Repeat("$qC#b4", tt.writes); out.String() != want {
				t.Errorf("wrote %q, want %q", out.String(), want)
			}
			if resent != tt.writes-1 {
				t.Errorf("Resend called %d times, want %d", resent, tt.writes-1)
			}
			if left, _ := io.ReadAll(l.R); string(left) != tt.left {
				t.Errorf("left %q unread, want %q", left, tt.left)
			}
		})
	}
}

func TestLinkAck(t *testing.T) {
	var out bytes.Buffer
	l := &Link{W: &out}
	for _, good := range []bool{true, false} {
		if err := l.Ack(good); err != nil {
			t.Fatal(err)
		}
	}
	l.NoAck = true
	if err := l.Ack(true); err != nil {
		t.Fatal(err)
	}
	if out.String() != "+-" {
		t.Errorf("wrote %q, want \"+-\"", out.String())
	}
}

// FuzzReadPacket feeds peer bytes through the packet reader: every error is
// one of the framing errors or an end of input, a payload stays within the
// limit, and a payload frames again and reads back unchanged.
func FuzzReadPacket(f *testing.F) {
	for _, s := range []string{
		"$OK#9a", "$0* #7a", "$m20*\"0,4#ab", "+$?#3f", "$OK#00", "$* #00",
		"$vFlashWrite:10000:}\x03}\x04#00", "$a$b#62", "\x03$c#63",
		"$O48690a#" + cs("O48690a"), "$l<memory-map>}]</memory-map>#00",
		"$m}#}##00", "$$$###", "$a*~#00", "-+-+$#00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		for {
			var (
				got []byte
				err error
			)
			// One packet is bounded by its input: a run-length count
			// expands 3 bytes to 97, and the payload's growth allocates
			// about 4.4 times its size, so at most 160 bytes a byte read,
			// plus 8 KiB (and alloccheck.FuzzSlack). Measured: at most 336 bytes a packet on the seeds
			// and 20,000 fuzzed inputs.
			alloccheck.Bound(t, "ReadPacket", len(in), 160, 8<<10+alloccheck.FuzzSlack, func() { got, err = ReadPacket(r, limit) })
			if err != nil && !errors.Is(err, ErrChecksum) {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLong) &&
					!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return
				}
				continue
			}
			if len(got) > limit {
				t.Fatalf("payload of %d bytes passed the limit", len(got))
			}
			// An expanded payload never holds framing bytes, so it
			// frames again and reads back unchanged.
			again, err := ReadPacket(bufio.NewReader(bytes.NewReader(AppendPacket(nil, got))), limit)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("re-framed %q read back as %q, %v", got, again, err)
			}
		}
	})
}

// FuzzDecodeBinary: any bytes escape, frame and decode back unchanged, in
// full or up to a limit, and decoding arbitrary bytes fails cleanly or is
// stable.
func FuzzDecodeBinary(f *testing.F) {
	for _, s := range []string{"", "abc", "}\x03}\x04}]}\x0a", "}", "\x00\xff}}", "ab#$}*\x00\xff}}"} {
		f.Add([]byte(s), 5)
	}
	f.Fuzz(func(t *testing.T, in []byte, room int) {
		// DecodeBinary allocates its output, never more than its input,
		// and an error (256 bytes: size classes and the error's text).
		alloccheck.Bound(t, "DecodeBinary", len(in), 1, 256+alloccheck.FuzzSlack, func() { DecodeBinary(in) })
		frame := AppendPacket(nil, AppendBinary(nil, in))
		pkt, err := ReadPacket(bufio.NewReader(bytes.NewReader(frame)), 2*len(in)+1)
		if err != nil {
			t.Fatalf("ReadPacket(frame of %q): %v", in, err)
		}
		raw, err := DecodeBinary(pkt)
		if err != nil || !bytes.Equal(raw, in) {
			t.Fatalf("round trip of %q = %q, %v", in, raw, err)
		}
		part, n := AppendBinaryUpTo(nil, in, room)
		if len(part) > 0 && len(part) > room {
			t.Fatalf("AppendBinaryUpTo(%q, %d): %d bytes out", in, room, len(part))
		}
		if d, err := DecodeBinary(part); err != nil || !bytes.Equal(d, in[:n]) {
			t.Fatalf("AppendBinaryUpTo(%q, %d) decodes to %q, %v; want %q", in, room, d, err, in[:n])
		}
		dec, err := DecodeBinary(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeBinary(%q): %v", in, err)
			}
			return
		}
		if again, err := DecodeBinary(AppendBinary(nil, dec)); err != nil || !bytes.Equal(again, dec) {
			t.Fatalf("re-escaped %q decoded as %q, %v", dec, again, err)
		}
	})
}
