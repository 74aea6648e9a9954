package gdbrsp

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// memMapPerByte and memMapFixed bound what ParseMemoryMap may allocate per
// byte of document: encoding/xml makes a token, a name and attributes of
// every element: 64 bytes a byte of nothing but nested elements.
const (
	memMapPerByte = 80
	memMapFixed   = 64 << 10
)

// TestBombs hands the client's parsers the worst a GDB server can send: a
// memory map of megabytes, one deeply nested, one of ten thousands of
// regions or attributes, a qSupported reply of a megabyte of features.
// Each is refused or parsed within memMapPerByte bytes a byte.
func TestBombs(t *testing.T) {
	const head = `<memory-map>`
	regions := func(n int) string {
		var b strings.Builder
		b.WriteString(head)
		for i := range n {
			fmt.Fprintf(&b, `<memory type="ram" start="%#x" length="0x10"/>`, i*16)
		}
		return b.String() + `</memory-map>`
	}
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{"memory map of 100 MB", head + strings.Repeat(" ", 100<<20), "104857612 bytes, more than the 262144 a memory map may have"},
		{"memory map of 256 KiB + 1", head + strings.Repeat(" ", maxMemoryMap-len(head)+1), "more than the 262144"},
		{"elements nested 256 KiB deep", head + strings.Repeat("<a>", (maxMemoryMap-len(head))/3), "memory map: XML syntax error"},
		{"elements nested 10,000 deep, closed", head + strings.Repeat("<a>", 10000) + strings.Repeat("</a>", 10000) + "</memory-map>", ""},
		{"5,000 regions (250 KiB)", regions(5000), ""},
		{"256 KiB of attributes", head + `<memory type="ram" start="0" length="1"` + strings.Repeat(` a="b"`, (maxMemoryMap-100)/6) + `/></memory-map>`, ""},
		{"256 KiB of character references", head + `<memory type="ram" start="0" length="1"><property name="x">` + strings.Repeat("&#x41;", (maxMemoryMap-200)/6) + `</property></memory></memory-map>`, ""},
		{"entity outside XML's own", head + `<memory type="&xxe;"/></memory-map>`, "invalid character entity &xxe;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := []byte(tt.doc)
			var err error
			c := alloccheck.Bound(t, tt.name, len(doc), memMapPerByte, memMapFixed, func() { _, err = ParseMemoryMap(doc) })
			alloccheck.Log(t, tt.name, int64(len(doc)), c, short(err))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", short(err), tt.wantErr)
			}
		})
	}
	t.Run("qSupported reply of 1 MiB of features", func(t *testing.T) {
		var b bytes.Buffer
		for i := 0; b.Len() < 1<<20; i++ {
			fmt.Fprintf(&b, "f%x+;", i)
		}
		rep := b.Bytes()
		var f map[string]string
		c := alloccheck.Bound(t, "parseSupported", len(rep), memMapPerByte, memMapFixed, func() { f = parseSupported(rep) })
		alloccheck.Log(t, "qSupported of 1 MiB", int64(len(rep)), c, fmt.Sprintf("%d features", len(f)))
		if n := packetSizeOf(f, 400); n != 400 {
			t.Fatalf("packet size %d", n)
		}
	})
}

func short(err error) string {
	if err == nil {
		return "<nil>"
	}
	if s := err.Error(); len(s) > 120 {
		return s[:120] + "..."
	}
	return err.Error()
}
