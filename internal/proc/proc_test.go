package proc

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRunEnds(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	tests := []struct {
		name     string
		argv     []string
		env      []string
		timeout  time.Duration
		wantExit int // for an *exec.ExitError; 0 for nil
		wantErr  error
	}{
		{name: "success", argv: []string{"true"}},
		{name: "exit status", argv: []string{"sh", "-c", "exit 3"}, wantExit: 3},
		{name: "environment", argv: []string{"sh", "-c", `test "$FUDBENCH_X" = "1 2"`}, env: []string{"FUDBENCH_X=1 2"}},
		{name: "environment replaced", argv: []string{"sh", "-c", `test -z "$HOME"`}, env: []string{}},
		{name: "arguments are literal", argv: []string{"sh", "-c", `test "$1" = '$(false); *'`, "sh", "$(false); *"}},
		{name: "not found", argv: []string{"/nonexistent/fudbench-tool"}, wantErr: fs.ErrNotExist},
		{name: "timeout", argv: []string{"sleep", "5"}, timeout: 100 * time.Millisecond, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			took, err := Run(context.Background(), tt.argv, Options{Timeout: timeout, Env: tt.env})
			var exit *exec.ExitError
			switch {
			case tt.wantExit != 0:
				if !errors.As(err, &exit) || !exit.Exited() || exit.ExitCode() != tt.wantExit {
					t.Fatalf("err %v, want exit status %d", err, tt.wantExit)
				}
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if took > 5*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
	if _, err := Run(context.Background(), nil, Options{Timeout: time.Second}); err == nil {
		t.Error("an empty command line ran")
	}
}

// TestRunKilledError: a kill says whether the run's own timeout or the
// caller's ctx ended it.
func TestRunKilledError(t *testing.T) {
	tests := []struct {
		name        string
		timeout     time.Duration
		deadline    time.Duration // the caller's, if not 0
		cancelAfter time.Duration // the caller cancels, if not 0
		wantErr     error
		wantTimeout bool
	}{
		{name: "own timeout", timeout: 100 * time.Millisecond, wantErr: context.DeadlineExceeded, wantTimeout: true},
		{name: "caller's deadline", timeout: time.Minute, deadline: 100 * time.Millisecond, wantErr: context.DeadlineExceeded},
		{name: "caller's cancel", timeout: time.Minute, cancelAfter: 100 * time.Millisecond, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.deadline != 0 {
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			if tt.cancelAfter != 0 {
				time.AfterFunc(tt.cancelAfter, cancel)
			}
			_, err := Run(ctx, []string{"sleep", "5"}, Options{Timeout: tt.timeout})
			var killed *KilledError
			if !errors.As(err, &killed) || !errors.Is(err, tt.wantErr) || killed.Timeout != tt.wantTimeout {
				t.Fatalf("err %v (%+v), want a kill for %v with Timeout %v", err, killed, tt.wantErr, tt.wantTimeout)
			}
		})
	}
}

// TestRunOutput: stdout and stderr reach their writers; nil writers
// discard.
func TestRunOutput(t *testing.T) {
	var out, errOut bytes.Buffer
	_, err := Run(context.Background(), []string{"sh", "-c", "echo out; echo err >&2"}, Options{Timeout: 10 * time.Second, Stdout: &out, Stderr: &errOut})
	if err != nil || out.String() != "out\n" || errOut.String() != "err\n" {
		t.Fatalf("err %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
	if _, err := Run(context.Background(), []string{"sh", "-c", "echo lost"}, Options{Timeout: 10 * time.Second}); err != nil {
		t.Fatalf("discarded output: %v", err)
	}
	if !strings.HasPrefix((&KilledError{Err: context.Canceled}).Error(), "killed") {
		t.Error("KilledError does not say killed")
	}
}
