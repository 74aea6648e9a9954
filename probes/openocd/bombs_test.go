package openocd

import (
	"bufio"
	"io"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// TestBombs: what a peer on OpenOCD's Tcl port can send. A frame with no
// terminator is refused at maxFrame (4 MiB), having allocated at most 8
// bytes a byte of it (the frame grows by append, 6 bytes a byte); a frame
// of 4 MiB that
// is a list of 2 million elements, braces nested 2 million deep, or
// backslashes throughout is parsed or refused within 32 bytes a byte;
// notifications for ever are bounded by the command's deadline, not here.
func TestBombs(t *testing.T) {
	t.Run("frame of 100 MB with no terminator", func(t *testing.T) {
		in := alloccheck.Repeat("0 {Open On-Chip Debugger} ", 100<<20)
		r := bufio.NewReaderSize(in, 64<<10)
		var err error
		c := alloccheck.Bound(t, "readFrame", maxFrame, 8, 64<<10, func() { _, err = readReply(r, nil) })
		alloccheck.Log(t, "frame of 100 MB with no terminator", in.Off, c, err)
		if err == nil || !strings.Contains(err.Error(), "frame longer than 4194304 bytes without a 0x1a terminator") {
			t.Fatalf("readReply: %v", err)
		}
		if in.Off > maxFrame+256<<10 {
			t.Errorf("read %d bytes", in.Off)
		}
	})
	frame := func(body string) string { return body[:min(len(body), maxFrame-1)] }
	tests := []struct {
		name    string
		frame   string
		wantErr string
	}{
		{"a list of 2 million elements", frame(strings.Repeat("a ", maxFrame/2)), "malformed tcl list: more than 3 elements"},
		{"braces nested 2 million deep", frame("0 " + strings.Repeat("{", maxFrame/2) + strings.Repeat("}", maxFrame/2)), "unmatched open brace"},
		{"braces nested, closed", "0 " + strings.Repeat("{", maxFrame/4) + strings.Repeat("}", maxFrame/4), ""},
		{"4 MiB of backslash escapes", "0 " + frame(strings.Repeat(`\x41`, maxFrame/4)), ""},
		{"4 MiB of quoted escapes", `0 "` + strings.Repeat(`\u00e9`, (maxFrame-8)/6) + `"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(io.MultiReader(strings.NewReader(tt.frame), strings.NewReader("\x1a")))
			var err error
			c := alloccheck.Bound(t, tt.name, len(tt.frame), 32, 64<<10, func() { _, err = readReply(r, nil) })
			alloccheck.Log(t, tt.name, int64(len(tt.frame)), c, err)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("readReply: %v, want %q", err, tt.wantErr)
			}
		})
	}
}
