package gdbstub

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadPacket(t *testing.T) {
	long := strings.Repeat("a", MaxPacket+1)
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
		{"dollar restarts frame", "$garbage$OK#9a", "OK", nil},
		{"bad checksum", "$OK#00", "OK", ErrChecksum},
		{"bad checksum digits", "$OK#zz", "OK", ErrMalformed},
		{"run-length first", "$* #00", "", ErrMalformed},
		{"run-length count too small", "$0*\x1d#00", "", ErrMalformed},
		{"run-length count hash", "$0*##00", "", ErrMalformed},
		{"too long", "$" + long + "#00", "", ErrTooLong},
		{"eof before frame", "+++", "", io.EOF},
		{"eof in frame", "$OK", "", io.ErrUnexpectedEOF},
		{"eof in checksum", "$OK#9", "", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadPacket(bufio.NewReader(strings.NewReader(tt.in)))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadPacket(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if (tt.wantErr == nil || errors.Is(tt.wantErr, ErrChecksum)) && string(got) != tt.want {
				t.Errorf("ReadPacket(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestReadPacketSequence(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("$qC#b4+$?#3f"))
	for _, want := range []string{"qC", "?"} {
		got, err := ReadPacket(r)
		if err != nil || string(got) != want {
			t.Fatalf("ReadPacket = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := ReadPacket(r); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadPacket at end: %v, want EOF", err)
	}
}

func TestAppendPacket(t *testing.T) {
	tests := []struct{ data, want string }{
		{"", "$#00"},
		{"OK", "$OK#9a"},
		{"S05", "$S05#b8"},
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

func FuzzReadPacket(f *testing.F) {
	for _, s := range []string{
		"$OK#9a", "$0* #7a", "$m20*\"0,4#ab", "+$?#3f", "$OK#00", "$* #00",
		"$vFlashWrite:10000:}\x03}\x04#00", "$a$b#62", "\x03$c#63",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		for {
			got, err := ReadPacket(r)
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
			if len(got) > MaxPacket {
				t.Fatalf("payload of %d bytes passed MaxPacket", len(got))
			}
			// An expanded payload never holds framing bytes, so it
			// frames again and reads back unchanged.
			again, err := ReadPacket(bufio.NewReader(bytes.NewReader(AppendPacket(nil, got))))
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("re-framed %q read back as %q, %v", got, again, err)
			}
		}
	})
}

func FuzzDecodeBinary(f *testing.F) {
	for _, s := range []string{"", "abc", "}\x03}\x04}]}\x0a", "}", "\x00\xff}}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// Any bytes escape and decode back unchanged, through a frame.
		frame := AppendPacket(nil, AppendBinary(nil, in))
		pkt, err := ReadPacket(bufio.NewReader(bytes.NewReader(frame)))
		if err != nil {
			t.Fatalf("ReadPacket(frame of %q): %v", in, err)
		}
		raw, err := DecodeBinary(pkt)
		if err != nil || !bytes.Equal(raw, in) {
			t.Fatalf("round trip of %q = %q, %v", in, raw, err)
		}
		// Decoding arbitrary bytes either fails cleanly or is stable.
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
