package simconsole

import (
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// TestBombs sends the simulated board's console what a runaway bench or a
// hostile peer could: 100 MB with no newline, generated as it is written.
// The console has no line parser on its input: it reads into a fixed
// 4 KiB buffer and discards. The whole process (the console's goroutines
// and the writer) allocates at most 256 KiB for it.
func TestBombs(t *testing.T) {
	c := newConsole(t, Options{})
	f, err := os.OpenFile(c.Path(), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitReader(t, c, true)
	const n = 100 << 20
	in := alloccheck.Repeat("no newline, ever ", n)
	buf := make([]byte, 64<<10)
	var werr error
	cost := alloccheck.Bound(t, "100 MB of input", n, 0, 256<<10, func() {
		for {
			k, err := in.Read(buf)
			if err == io.EOF {
				break
			}
			if _, werr = f.Write(buf[:k]); werr != nil {
				return
			}
		}
		deadline := time.Now().Add(time.Minute)
		for c.Stats().InputBytes < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	})
	alloccheck.Log(t, "100 MB without a newline", n, cost, c.Stats().InputBytes)
	if werr != nil {
		t.Fatal(werr)
	}
	if got := c.Stats().InputBytes; got != n {
		t.Fatalf("the console read %d of %d bytes", got, n)
	}
}
