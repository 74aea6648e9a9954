package serialconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/fudbench/fudbench/internal/ptytest"
)

// TestSerialConnDeadlines tests Conn: a write blocked by
// a peer that does not read returns at its deadline, or at once when the
// deadline is moved into the past; the next write waits for the blocked
// one, and reads time out.
func TestSerialConnDeadlines(t *testing.T) {
	master, path := ptytest.Open(t)
	c, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	isTimeout := func(err error) bool {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
	}

	// Read: nothing comes.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	if n, err := c.Read(make([]byte, 10)); n != 0 || !isTimeout(err) {
		t.Errorf("Read = %d, %v; want a timeout", n, err)
	}
	if took := time.Since(start); took < 40*time.Millisecond || took > time.Second {
		t.Errorf("Read timed out after %v, want about 50ms", took)
	}
	// Read: data within the deadline.
	master.Write([]byte("$OK#9a"))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	n, err := io.ReadAtLeast(c, buf, 6)
	if err != nil || string(buf[:n]) != "$OK#9a" {
		t.Errorf("Read = %q, %v", buf[:n], err)
	}

	// Write: the pty's buffer fills, as nobody reads the master.
	big := bytes.Repeat([]byte("x"), 1<<20)
	c.SetDeadline(time.Now().Add(150 * time.Millisecond))
	start = time.Now()
	if n, err := c.Write(big); n != 0 || !isTimeout(err) {
		t.Fatalf("Write = %d, %v; want a timeout", n, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Write timed out after %v, want about 150ms", took)
	}
	// The next write waits for the blocked one: with no deadline moved
	// it times out at once; a deadline moved into the past by another
	// goroutine aborts a wait.
	if _, err := c.Write([]byte("y")); !isTimeout(err) {
		t.Errorf("second Write: %v, want a timeout", err)
	}
	c.SetDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() { _, err := c.Write([]byte("z")); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	c.SetDeadline(time.Unix(1, 0))
	select {
	case err := <-errc:
		if !isTimeout(err) {
			t.Errorf("aborted Write: %v, want a timeout", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("moving the deadline into the past did not abort the Write")
	}

	// Closing the master ends the blocked write with an error: the device
	// is gone.
	master.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("w")); !errors.Is(err, io.EOF) {
		t.Errorf("Write after the device went: %v, want io.EOF", err)
	}
	if _, err := c.Read(buf); !errors.Is(err, io.EOF) {
		t.Errorf("Read after the device went: %v, want io.EOF", err)
	}
	c.Close()
	if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
	if err := c.SetDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetDeadline after Close: %v, want net.ErrClosed", err)
	}
}
