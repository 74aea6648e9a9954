package oscore

import (
	"io"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// TestBombs: oscore_conf files that never end a line, that are all blank
// lines, that repeat a keyword; a protected message whose plaintext is all
// one-byte options. ParseConf stops at maxConfLine bytes of a line or
// maxConfLines lines, so a file generated as it is read costs what its
// first 4 MiB would at most; each case allocates at most 16 bytes a byte
// read plus 16 KiB. A plaintext of 65,534 one-byte options is refused at
// maxInnerOptions, having allocated the plaintext and 64 options.
func TestBombs(t *testing.T) {
	tests := []struct {
		name    string
		in      io.Reader
		wantErr string
	}{
		{"100 MB line", alloccheck.Repeat("master_secret,ascii,", 100<<20), "line 1: longer than 4096 bytes"},
		{"100 MB of empty lines", alloccheck.Repeat("\n", 100<<20), "more than 1000 lines"},
		{"100 MB of comment lines of 4 KiB", alloccheck.Repeat("#"+strings.Repeat("x", 4094)+"\n", 100<<20), "more than 1000 lines"},
		{"a keyword twice", strings.NewReader("sender_id,hex,\"01\"\nsender_id,hex,\"02\"\n"), "line 2: sender_id given twice"},
		{"hex value of 4 KiB", strings.NewReader("master_secret,hex,\"" + strings.Repeat("ab", 2030) + "\"\n"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cr := &alloccheck.Counter{R: tt.in}
			var err error
			c := alloccheck.Measure(func() { _, err = ParseConf(cr) })
			alloccheck.Log(t, tt.name, cr.N, c, err)
			if limit := 16*uint64(cr.N) + 16<<10; c.Bytes > limit {
				t.Errorf("%d bytes read allocated %d, more than %d", cr.N, c.Bytes, limit)
			}
			if cr.N > maxConfLines*(maxConfLine+1)+64<<10 {
				t.Errorf("read %d bytes", cr.N)
			}
			if err == nil || tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseConf: %v, want %q", err, tt.wantErr)
			}
		})
	}
	t.Run("plaintext of one-byte options", func(t *testing.T) {
		cl, srv := pair(t, testParams)
		pt := make([]byte, maxPlain) // option delta 0, length 0, 65,534 times
		pt[0] = byte(codes.POST)
		pt[1] = 0xb0 // Uri-Path, empty: the zeros after it repeat it
		m := sealRaw(cl, pt)
		var err error
		c := alloccheck.Bound(t, "UnprotectRequest", valueBytes(m), 2, 8<<10, func() { _, _, err = srv.UnprotectRequest(m) })
		alloccheck.Log(t, "plaintext of one-byte options", int64(valueBytes(m)), c, err)
		if err == nil || !strings.Contains(err.Error(), "more than 64 options") {
			t.Fatalf("UnprotectRequest: %v", err)
		}
	})
}
