package an3155

import (
	"io"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// TestBombs feeds the bootloader what a host could send for ever, as a
// stream generated while it is read: an Extended Erase whose page count
// claims 65,520 pages, millions of commands, noise before the sync. The
// machine's buffer is bounded by AN3155's length fields (the largest
// frame, 65,520 two-byte pages, is 131,043 bytes), its log by MaxLog, and
// what it allocates by 32 bytes a byte plus 8 MiB.
func TestBombs(t *testing.T) {
	const n = 8 << 20
	ext := cat([]byte{Sync}, cmd(CmdExtendedErase), []byte{0xFF, 0xEF})
	tests := []struct {
		name string
		ext  bool
		in   *alloccheck.Stream
	}{
		{"Extended Erase claiming 65,520 pages, repeated", true, alloccheck.Repeat(string(ext)+string(make([]byte, 2*65520+1)), n)},
		{"8 MB of Get commands", false, alloccheck.Repeat(string(cat([]byte{Sync}, cmd(CmdGet))), n)},
		{"8 MB of refused commands", false, alloccheck.Repeat("\x7f!!", n)},
		{"8 MB of noise before the sync", false, alloccheck.Repeat("\x55", n)},
		{"8 MB of 256-byte writes to RAM", false, alloccheck.Repeat(string(cat([]byte{Sync}, cmd(CmdWrite), addr(RAMBase), data(make([]byte, 256)...))), n)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMachine(tt.ext, nil)
			buf := make([]byte, 4096)
			maxBuf, replies := 0, 0
			c := alloccheck.Bound(t, tt.name, n, 32, 8<<20, func() {
				for {
					k, err := tt.in.Read(buf)
					for _, b := range buf[:k] {
						replies += len(m.feed(b))
						maxBuf = max(maxBuf, cap(m.buf))
					}
					if err == io.EOF {
						return
					}
				}
			})
			alloccheck.Log(t, tt.name, n, c, len(m.log))
			if len(m.log) > MaxLog {
				t.Errorf("%d commands kept, at most %d", len(m.log), MaxLog)
			}
			if maxBuf > 256<<10 {
				t.Errorf("frame buffer of %d bytes", maxBuf)
			}
		})
	}
}
