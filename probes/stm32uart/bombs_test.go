package stm32uart

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/probes"
)

// streamPort is a device that stays silent until quietUntil, then sends
// what its reader gives, as fast as it is read, then falls silent; it
// swallows the host's bytes.
type streamPort struct {
	quietUntil time.Time
	r          io.Reader
}

func (s *streamPort) Read(p []byte) (int, error) {
	if time.Now().Before(s.quietUntil) {
		time.Sleep(time.Millisecond) // a read timeout of the real port
		return 0, nil
	}
	n, err := s.r.Read(p)
	if err == io.EOF {
		// Silent from then on, as a device is.
		time.Sleep(time.Millisecond)
		return 0, nil
	}
	return n, err
}
func (s *streamPort) Write(p []byte) (int, error)        { return len(p), nil }
func (s *streamPort) SetReadTimeout(time.Duration) error { return nil }
func (s *streamPort) ResetInputBuffer() error            { return nil }
func (s *streamPort) Close() error                       { return nil }

// TestBombs: devices that never stop sending, or send frames claiming more
// than they hold. The driver's reads are bounded by AN3155's one-byte
// length fields (a frame is at most 257 bytes), by the command timeout,
// and after a sync burst by maxDrain bytes; each case fails with an error
// naming the bound, having allocated at most 64 KiB.
func TestBombs(t *testing.T) {
	const timeout = 50 * time.Millisecond
	tests := []struct {
		name    string
		quiet   time.Duration // silence before the stream starts
		prefix  string
		in      *alloccheck.Stream
		wantErr string
	}{
		// Two single sync bytes go unanswered (2×50 ms), then the burst's
		// answer never ends.
		{"endless answer to a sync burst", 2*timeout + 20*time.Millisecond, "", alloccheck.Repeat("\x79", 100<<20),
			"more than 1024 bytes after a sync burst without falling quiet"},
		{"noise instead of ACK, as fast as it is read", 0, "", alloccheck.Repeat("\x55\xaa", 100<<20), "never ACK or NACK"},
		{"Get reply claiming 256 bytes, 10 sent", 0, "\x79\x79\xff", alloccheck.Repeat("\x00", 10), "no reply within 50ms"},
		{"Busy instead of ACK, for ever", 0, "\x79", alloccheck.Repeat("\x76", 100<<20), "no reply within 50ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(Config{Port: "fake", Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			sp := &streamPort{r: io.MultiReader(strings.NewReader(tt.prefix), tt.in)}
			p.open = func(string, *serial.Mode) (port, error) {
				sp.quietUntil = time.Now().Add(tt.quiet)
				return sp, nil
			}
			c := alloccheck.Bound(t, tt.name, 0, 0, 64<<10, func() { err = p.Read(t.Context(), flashBase, make([]byte, 4)) })
			alloccheck.Log(t, tt.name, tt.in.Off+int64(len(tt.prefix)), c, err)
			if !errors.Is(err, probes.ErrProbe) && !errors.Is(err, probes.ErrTimeout) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tt.wantErr)
			}
		})
	}
}
