package gdbrsp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/internal/rsp"
)

// cs is the checksum digits of s, for frames written by hand.
func cs(s string) string {
	var sum byte
	for i := range len(s) {
		sum += s[i]
	}
	return fmt.Sprintf("%02x", sum)
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

// FuzzReplyParser feeds server bytes through what the client makes of a
// reply once it is framed (framing itself is fuzzed in internal/rsp): reply
// classification, console output, qSupported and qCRC.
func FuzzReplyParser(f *testing.F) {
	for _, s := range []string{
		"+$OK#9a", "$E03#a8", "$O48690a#" + cs("O48690a"), "$0* #" + cs("0* "),
		"$PacketSize=4000;qXfer:memory-map:read+;QStartNoAckMode+#" + cs("PacketSize=4000;qXfer:memory-map:read+;QStartNoAckMode+"),
		"$l<memory-map>}]</memory-map>#00", "$m}#}##00", "$C0376e6e7#" + cs("C0376e6e7"), "$C123456789#00", "$OK#9b", "$$$###", "$a*~#00", "-+-+$#00",
	} {
		f.Add([]byte(s))
	}
	// Bounded: framing and parsing a reply allocate at most 256 bytes a
	// byte of input (run-length expansion, 97 bytes for 3, and
	// qSupported's map) plus 64 KiB and alloccheck.FuzzSlack.
	f.Fuzz(func(t *testing.T, in []byte) {
		alloccheck.Bound(t, "reply parser", len(in), 256, 64<<10+alloccheck.FuzzSlack, func() { fuzzReplies(t, in) })
	})
}

func fuzzReplies(t *testing.T, in []byte) {
	r := bufio.NewReader(bytes.NewReader(in))
	for range 64 {
		p, err := rsp.ReadPacket(r, maxPacket)
		if err != nil {
			if errors.Is(err, rsp.ErrChecksum) || errors.Is(err, rsp.ErrMalformed) {
				continue
			}
			return
		}
		switch classify(p) {
		case replyConsole:
			if _, err := rsp.DecodeHex(p[1:]); err != nil {
				t.Fatalf("console reply %q does not decode: %v", p, err)
			}
		case replyError:
			if p[0] != 'E' {
				t.Fatalf("error reply %q", p)
			}
		}
		if crc, ok := parseCRC(p); ok {
			if again, ok2 := parseCRC(fmt.Appendf(nil, "C%08x", crc)); p[0] != 'C' || !ok2 || again != crc {
				t.Fatalf("qCRC reply %q read as %#x", p, crc)
			}
		}
		if n := packetSizeOf(parseSupported(p), 400); n < 64 || n > maxPacket {
			t.Fatalf("packet size %d from %q", n, p)
		}
	}
}

// FuzzMemoryMap checks that whatever ParseMemoryMap accepts is a usable
// map: sorted, disjoint, inside 4 GiB, flash with a dividing block size.
func FuzzMemoryMap(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><memory-map><memory type="flash" start="0x08000000" length="0x80000"><property name="blocksize">0x1000</property></memory><memory type="ram" start="0x20000000" length="0x10000"/></memory-map>`))
	f.Add([]byte(`<memory-map><memory type="rom" start="010" length="8"/></memory-map>`))
	f.Add([]byte(`<!DOCTYPE memory-map SYSTEM "x"><memory-map></memory-map>`))
	f.Add([]byte(`<memory-map><memory type="flash" start="0" length="0x100000000"><property name="blocksize">0x80000000</property></memory></memory-map>`))
	// Bounded: at most memMapPerByte (80) bytes allocated a byte plus
	// memMapFixed and alloccheck.FuzzSlack (see TestBombs).
	f.Fuzz(func(t *testing.T, doc []byte) {
		var (
			rs  []Region
			err error
		)
		alloccheck.Bound(t, "ParseMemoryMap", len(doc), memMapPerByte, memMapFixed+alloccheck.FuzzSlack, func() { rs, err = ParseMemoryMap(doc) })
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
