package smp

import (
	"encoding/base64"
	"fmt"
	"io"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// TestBombs feeds the line splitter and the frame decoder what a device or
// a host could send for ever: one endless line, endless continuation
// lines of a frame that never ends, first lines claiming 65,535 bytes,
// valid frames back to back. What is kept stays bounded by MaxLine and
// the decoder's Max, whatever the input's size; the decoder's errors cost
// no allocation, so what is allocated is bounded by a byte a byte plus
// 1 MiB (race instrumentation included).
func TestBombs(t *testing.T) {
	const n = 8 << 20
	cont := "\x04\x14" + base64.StdEncoding.EncodeToString(make([]byte, 93)) + "\n"
	claim := "\x06\x09" + base64.StdEncoding.EncodeToString([]byte{0xff, 0xff, 0, 0, 0, 0}) + "\n"
	frame := string(Encode(Packet{Header: Header{Op: OpWrite, ID: IDEcho}, Body: Marshal(EchoReq{D: "hi"})}.Marshal()))
	for _, tt := range []struct{ name, pattern string }{
		{"8 MB line", "A"},
		{"8 MB of continuation lines after a first line", "\x06\x09AAAA\n" + cont + cont + cont},
		{"8 MB of first lines claiming 65,535 bytes", claim},
		{"8 MB of echo frames", frame},
		{"8 MB of console text", "BL hello world\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := alloccheck.Repeat(tt.pattern, n)
			var lb LineBuffer
			d := Decoder{Max: 1024}
			buf := make([]byte, 4096)
			pkts, errs, maxBuf := 0, 0, 0
			c := alloccheck.Bound(t, tt.name, n, 1, 1<<20, func() {
				for {
					k, err := in.Read(buf)
					lb.Feed(buf[:k], func(line []byte) error {
						p, err := d.Line(line)
						if err != nil {
							errs++
						} else if p != nil {
							pkts++
						}
						return nil
					})
					maxBuf = max(maxBuf, cap(lb.buf), cap(d.buf))
					if err == io.EOF {
						return
					}
				}
			})
			alloccheck.Log(t, tt.name, n, c, fmt.Sprintf("%d packets, %d errors, largest buffer %d bytes", pkts, errs, maxBuf))
			if maxBuf > 2*MaxLine {
				t.Errorf("buffer of %d bytes", maxBuf)
			}
		})
	}
}
