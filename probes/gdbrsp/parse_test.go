package gdbrsp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestReadPacket(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr error // of the read after the wanted packets
	}{
		{name: "plain", in: "+$OK#9a", want: []string{"OK"}, wantErr: io.EOF},
		{name: "noise and two packets", in: "xx+$OK#9a-+$E03#a8", want: []string{"OK", "E03"}, wantErr: io.EOF},
		{name: "run-length", in: "$0* #" + cs("0* "), want: []string{"0000"}, wantErr: io.EOF},
		{name: "restart on $", in: "$gar$OK#9a", want: []string{"OK"}, wantErr: io.EOF},
		{name: "empty", in: "$#00", want: []string{""}, wantErr: io.EOF},
		{name: "bad checksum", in: "$OK#9b", wantErr: errChecksum},
		{name: "bad checksum digits", in: "$OK#zz", wantErr: errMalformed},
		{name: "run-length first", in: "$* #" + cs("* "), wantErr: errMalformed},
		{name: "run-length count too small", in: "$0*\x01#" + cs("0*\x01"), wantErr: errMalformed},
		{name: "cut mid-frame", in: "$OK", wantErr: io.ErrUnexpectedEOF},
		{name: "cut in checksum", in: "$OK#9", wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tt.in))
			for _, want := range tt.want {
				got, err := readPacket(r)
				if err != nil || string(got) != want {
					t.Fatalf("readPacket = %q, %v; want %q", got, err, want)
				}
			}
			if _, err := readPacket(r); !errors.Is(err, tt.wantErr) {
				t.Fatalf("last read: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func cs(s string) string {
	var sum byte
	for i := range len(s) {
		sum += s[i]
	}
	return string([]byte{hexDigits[sum>>4], hexDigits[sum&0xf]})
}

func TestBinaryRoundTrip(t *testing.T) {
	data := []byte("ab#$}*\x00\xff}}")
	enc, n := appendBinary(nil, data, 1000)
	if n != len(data) || bytes.ContainsAny(enc, "#$*") {
		t.Fatalf("appendBinary: %q, took %d", enc, n)
	}
	dec, err := decodeBinary(enc)
	if err != nil || !bytes.Equal(dec, data) {
		t.Fatalf("decodeBinary: %q, %v", dec, err)
	}
	// The limit counts escaped bytes and never splits an escape.
	for max := range len(enc) + 1 {
		part, n := appendBinary(nil, data, max)
		if len(part) > max {
			t.Errorf("max %d: %d bytes out", max, len(part))
		}
		if d, err := decodeBinary(part); err != nil || !bytes.Equal(d, data[:n]) {
			t.Errorf("max %d: decodes to %q, %v; want %q", max, d, err, data[:n])
		}
	}
	if _, err := decodeBinary([]byte("ab}")); !errors.Is(err, errMalformed) {
		t.Errorf("dangling escape: %v", err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", replyEmpty},
		{"OK", replyOK},
		{"E03", replyError},
		{"E.memtype", replyError},
		{"EE", replyData},
		{"E0", replyData},
		{"E033", replyData},
		{"O48690a", replyConsole},
		{"O4", replyData},
		{"Ozz", replyData},
		{"C1234abcd", replyData},
		{"48690a", replyData},
	}
	for _, tt := range tests {
		if got := classify([]byte(tt.in)); got != tt.want {
			t.Errorf("classify(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseSupported(t *testing.T) {
	f := parseSupported([]byte("PacketSize=4000;qXfer:memory-map:read+;qXfer:features:read-;QStartNoAckMode+;;swbreak?;vContSupported"))
	want := map[string]string{
		"PacketSize": "4000", "qXfer:memory-map:read": "+", "qXfer:features:read": "-",
		"QStartNoAckMode": "+", "swbreak": "?", "vContSupported": "+",
	}
	if !maps.Equal(f, want) {
		t.Errorf("parseSupported = %v, want %v", f, want)
	}
	for in, want := range map[string]int{"4000": 0x4000, "zz": 400, "10": 400, "ffffffff": maxPacket} {
		if got := packetSizeOf(map[string]string{"PacketSize": in}, 400); got != want {
			t.Errorf("packetSizeOf(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestParseMemoryMap(t *testing.T) {
	head := `<?xml version="1.0"?>
<!DOCTYPE memory-map PUBLIC "+//IDN gnu.org//DTD GDB Memory Map V1.0//EN" "http://sourceware.org/gdb/gdb-memory-map.dtd">
<memory-map>`
	tests := []struct {
		name    string
		body    string
		want    []Region
		wantErr string
	}{
		{
			name: "openocd style, unsorted",
			body: `<memory type="ram" start="0x20000000" length="0x20000"/>
<memory type="flash" start="0x08000000" length="0x10000"><property name="blocksize">0x4000</property></memory>
<memory type="flash" start="0x08010000" length="0x10000"><property name="blocksize">0x10000</property></memory>`,
			want: []Region{
				{KindFlash, 0x08000000, 0x10000, 0x4000},
				{KindFlash, 0x08010000, 0x10000, 0x10000},
				{KindRAM, 0x20000000, 0x20000, 0},
			},
		},
		{name: "decimal and octal", body: `<memory type="rom" start="0100" length="4096"/>`, want: []Region{{KindROM, 0o100, 4096, 0}}},
		{name: "region up to 4 GiB", body: `<memory type="ram" start="0xffff0000" length="0x10000"/>`, want: []Region{{KindRAM, 0xffff0000, 0x10000, 0}}},
		{name: "empty map", body: ``, want: []Region{}},
		{name: "flash without blocksize", body: `<memory type="flash" start="0" length="0x1000"/>`, wantErr: "no blocksize"},
		{name: "blocksize not dividing", body: `<memory type="flash" start="0" length="0x1000"><property name="blocksize">0x300</property></memory>`, wantErr: "does not divide"},
		{name: "past 4 GiB", body: `<memory type="ram" start="0xffff0000" length="0x10001"/>`, wantErr: "4 GiB"},
		{name: "overlap", body: `<memory type="ram" start="0" length="0x100"/><memory type="ram" start="0xff" length="0x100"/>`, wantErr: "overlaps"},
		{name: "unknown type", body: `<memory type="eeprom" start="0" length="0x100"/>`, wantErr: "eeprom"},
		{name: "bad number", body: `<memory type="ram" start="-1" length="0x100"/>`, wantErr: "start"},
		{name: "zero length", body: `<memory type="ram" start="0" length="0"/>`, wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMemoryMap([]byte(head + tt.body + "</memory-map>"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseMemoryMap = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, err := ParseMemoryMap([]byte("<memory-map><memory")); err == nil {
		t.Error("truncated XML parsed")
	}
	if _, err := ParseMemoryMap([]byte("<target/>")); err == nil {
		t.Error("a target description parsed as a memory map")
	}
}

func TestCRC32(t *testing.T) {
	if got := CRC32(0xffffffff, []byte("123456789")); got != 0x0376e6e7 {
		t.Errorf("CRC32 = %08x, want 0376e6e7", got)
	}
	if a, b := CRC32(CRC32(0xffffffff, []byte("1234")), []byte("56789")), CRC32(0xffffffff, []byte("123456789")); a != b {
		t.Errorf("CRC32 does not continue: %08x vs %08x", a, b)
	}
}

// FuzzReplyParser feeds server bytes through everything that parses them:
// framing, reply classification, console output, binary and hex payloads,
// qSupported.
func FuzzReplyParser(f *testing.F) {
	for _, s := range []string{
		"+$OK#9a", "$E03#a8", "$O48690a#" + cs("O48690a"), "$0* #" + cs("0* "),
		"$PacketSize=4000;qXfer:memory-map:read+;QStartNoAckMode+#" + cs("PacketSize=4000;qXfer:memory-map:read+;QStartNoAckMode+"),
		"$l<memory-map>}]</memory-map>#00", "$m}#}##00", "$OK#9b", "$$$###", "$a*~#00", "-+-+$#00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		for range 64 {
			p, err := readPacket(r)
			if err != nil {
				if errors.Is(err, errChecksum) || errors.Is(err, errMalformed) {
					continue
				}
				return
			}
			if len(p) > maxPacket {
				t.Fatalf("packet of %d bytes", len(p))
			}
			if !bytes.ContainsAny(p, "$#*") {
				// Framing round-trips.
				back, err := readPacket(bufio.NewReader(bytes.NewReader(appendPacket(nil, p))))
				if err != nil || !bytes.Equal(back, p) {
					t.Fatalf("round trip of %q: %q, %v", p, back, err)
				}
			}
			switch classify(p) {
			case replyConsole:
				if _, err := decodeHex(p[1:]); err != nil {
					t.Fatalf("console reply %q does not decode: %v", p, err)
				}
			case replyError:
				if p[0] != 'E' {
					t.Fatalf("error reply %q", p)
				}
			}
			if d, err := decodeBinary(p); err == nil {
				enc, n := appendBinary(nil, d, len(d)*2)
				if n != len(d) {
					t.Fatalf("appendBinary took %d of %d", n, len(d))
				}
				if back, err := decodeBinary(enc); err != nil || !bytes.Equal(back, d) {
					t.Fatalf("binary round trip of %q", d)
				}
			}
			if n := packetSizeOf(parseSupported(p), 400); n < 64 || n > maxPacket {
				t.Fatalf("packet size %d from %q", n, p)
			}
		}
	})
}

// FuzzMemoryMap checks that whatever ParseMemoryMap accepts is a usable
// map: sorted, disjoint, inside 4 GiB, flash with a dividing block size.
func FuzzMemoryMap(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><memory-map><memory type="flash" start="0x08000000" length="0x80000"><property name="blocksize">0x1000</property></memory><memory type="ram" start="0x20000000" length="0x10000"/></memory-map>`))
	f.Add([]byte(`<memory-map><memory type="rom" start="010" length="8"/></memory-map>`))
	f.Add([]byte(`<!DOCTYPE memory-map SYSTEM "x"><memory-map></memory-map>`))
	f.Add([]byte(`<memory-map><memory type="flash" start="0" length="0x100000000"><property name="blocksize">0x80000000</property></memory></memory-map>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		rs, err := ParseMemoryMap(doc)
		if err != nil {
			return
		}
		for i, r := range rs {
			if r.Length == 0 || r.End() > 1<<32 {
				t.Fatalf("region %v", r)
			}
			if r.Kind == KindFlash && (r.BlockSize == 0 || r.Length%r.BlockSize != 0) {
				t.Fatalf("flash region %v", r)
			}
			if i > 0 && uint64(r.Start) < rs[i-1].End() {
				t.Fatalf("regions %v and %v overlap or are unsorted", rs[i-1], r)
			}
		}
	})
}
