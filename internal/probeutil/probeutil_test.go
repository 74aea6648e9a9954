package probeutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "", want: 0},
		{in: "10s", want: 10 * time.Second},
		{in: "1m30s", want: 90 * time.Second},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "10", wantErr: `timeout: time: missing unit in duration "10"`},
		{in: "soon", wantErr: "timeout: time: invalid duration"},
		{in: "0s", wantErr: `timeout: "0s" must be positive`},
		{in: "-1s", wantErr: `timeout: "-1s" must be positive`},
	}
	for _, tt := range tests {
		got, err := ParseTimeout(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseTimeout(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestTimeout(t *testing.T) {
	tests := []struct {
		in, want time.Duration
		wantErr  bool
	}{
		{0, 5 * time.Second, false},
		{time.Millisecond, time.Millisecond, false},
		{-time.Second, 0, true},
	}
	for _, tt := range tests {
		got, err := Timeout(tt.in, 5*time.Second)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Timeout(%v) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestMismatch(t *testing.T) {
	tests := []struct {
		got, image string
		want       int
	}{
		{"", "", -1},
		{"abc", "abc", -1},
		{"abd", "abc", 2},
		{"xbc", "abc", 0},
		{"ab", "abc", -1}, // only what was read back counts
	}
	for _, tt := range tests {
		if got := Mismatch([]byte(tt.got), []byte(tt.image)); got != tt.want {
			t.Errorf("Mismatch(%q, %q) = %d, want %d", tt.got, tt.image, got, tt.want)
		}
	}
}

// deadlines records the deadlines set on it.
type deadlines struct {
	set []time.Time
	err error
}

func (d *deadlines) SetDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return d.err
}

func TestArm(t *testing.T) {
	bg := context.Background()
	soon, cancelSoon := context.WithTimeout(bg, 10*time.Millisecond)
	defer cancelSoon()
	late, cancelLate := context.WithTimeout(bg, time.Hour)
	defer cancelLate()
	done, cancelDone := context.WithCancel(bg)
	cancelDone()
	tests := []struct {
		name         string
		ctx          context.Context
		setErr       error
		wantCtxBound bool
		wantErr      error
	}{
		{name: "no ctx deadline", ctx: bg},
		{name: "ctx deadline later", ctx: late},
		{name: "ctx deadline earlier", ctx: soon, wantCtxBound: true},
		{name: "ctx already cancelled", ctx: done, wantErr: context.Canceled},
		{name: "connection refuses", ctx: bg, setErr: net.ErrClosed, wantErr: net.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &deadlines{err: tt.setErr}
			start := time.Now()
			bound, err := Arm(tt.ctx, c, time.Minute)
			if bound != tt.wantCtxBound || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Arm = %v, %v; want %v, %v", bound, err, tt.wantCtxBound, tt.wantErr)
			}
			if len(c.set) != 1 {
				t.Fatalf("%d deadlines set, want 1", len(c.set))
			}
			want := start.Add(time.Minute)
			if cd, ok := tt.ctx.Deadline(); ok && cd.Before(want) {
				want = cd
			}
			if d := c.set[0].Sub(want); d < -time.Second || d > time.Second {
				t.Errorf("deadline %v, want about %v", c.set[0], want)
			}
		})
	}
}

// TestAbortOnDone: a read blocked on a connection returns when ctx is
// cancelled, and not after stop.
func TestAbortOnDone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	stop := AbortOnDone(ctx, a)
	defer stop()
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err := a.Read(make([]byte, 1))
	if !IsTimeout(err) {
		t.Fatalf("blocked read after cancel: %v, want a deadline error", err)
	}

	c, d := net.Pipe()
	defer c.Close()
	defer d.Close()
	ctx, cancel = context.WithCancel(context.Background())
	AbortOnDone(ctx, c)()
	cancel()
	go d.Write([]byte{1})
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read after stop and cancel: %v", err)
	}
}

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		name            string
		err             error
		timeout, hungup bool
	}{
		{"deadline", os.ErrDeadlineExceeded, true, false},
		{"wrapped deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), true, false},
		{"eof", io.EOF, false, true},
		{"cut mid-reply", io.ErrUnexpectedEOF, false, true},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, false, true},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), false, true},
		{"closed", net.ErrClosed, false, true},
		{"other", errors.New("no route to host"), false, false},
	}
	for _, tt := range tests {
		if got := IsTimeout(tt.err); got != tt.timeout {
			t.Errorf("%s: IsTimeout = %v", tt.name, got)
		}
		if got := Hungup(tt.err); got != tt.hungup {
			t.Errorf("%s: Hungup = %v", tt.name, got)
		}
	}
}
