//go:build linux

package proc

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// pidWriter collects the pids a script prints, one a line, and signals
// when want of them have arrived.
type pidWriter struct {
	mu   sync.Mutex
	buf  []byte
	want int
	all  chan struct{}
}

func (w *pidWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if strings.Count(string(w.buf), "\n") == w.want {
		close(w.all)
	}
	return len(p), nil
}

func (w *pidWriter) pids(t *testing.T) []int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var pids []int
	for _, f := range strings.Fields(string(w.buf)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("script printed %q", w.buf)
		}
		pids = append(pids, pid)
	}
	return pids
}

// dead reports whether pid is gone or a zombie waiting for a parent that
// no longer cares.
func dead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

// TestRunKillsTheGroup: when its timeout passes or the caller cancels, a
// command's children and grandchildren die with it, and they do not hold
// the run up through the output pipe they inherited.
func TestRunKillsTheGroup(t *testing.T) {
	// A child sleep, and a grandchild sleep inside a background subshell;
	// both keep stdout open.
	const script = `sleep 60 & echo $!; (sleep 60 & echo $!; wait) & wait`
	tests := []struct {
		name    string
		timeout time.Duration
		cancel  bool // the caller cancels once the pids are in
		wantErr error
	}{
		{name: "timeout", timeout: 500 * time.Millisecond, wantErr: context.DeadlineExceeded},
		{name: "ctx cancel", timeout: time.Minute, cancel: true, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := &pidWriter{want: 2, all: make(chan struct{})}
			alive := make(chan bool, 1)
			go func() {
				select {
				case <-out.all:
				case <-time.After(5 * time.Second):
					alive <- false
					cancel()
					return
				}
				pids := out.pids(t)
				alive <- !dead(pids[0]) && !dead(pids[1])
				if tt.cancel {
					cancel()
				}
			}()
			start := time.Now()
			_, err := Run(ctx, []string{"sh", "-c", script}, Options{Timeout: tt.timeout, Stdout: out})
			took := time.Since(start)
			var killed *KilledError
			if !errors.As(err, &killed) || !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want a kill for %v", err, tt.wantErr)
			}
			if !<-alive {
				t.Fatalf("the script's sleeps were not running before the kill (output %q)", out.buf)
			}
			if took > tt.timeout+waitDelay && !tt.cancel || took > 5*time.Second {
				t.Errorf("Run returned after %v: a grandchild held the pipe", took)
			}
			for _, pid := range out.pids(t) {
				deadline := time.Now().Add(2 * time.Second)
				for !dead(pid) {
					if time.Now().After(deadline) {
						t.Fatalf("process %d outlived the killed command", pid)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}
