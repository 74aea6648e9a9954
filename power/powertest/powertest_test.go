package powertest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fudbench/fudbench/power"
)

func TestRecord(t *testing.T) {
	clock := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	boom := errors.New("boom")
	s := &Switch{Name: "r", Now: func() time.Time { clock = clock.Add(time.Second); return clock }}
	ctx := context.Background()
	if s.String() != "fake:r" || (&Switch{}).String() != "fake" {
		t.Errorf("String() = %q / %q", s, &Switch{})
	}
	if err := s.On(ctx); err != nil {
		t.Fatal(err)
	}
	s.OffErr = boom
	if err := s.Off(ctx); !errors.Is(err, boom) {
		t.Fatalf("Off: err %v, want %v", err, boom)
	}
	on, err := s.State(ctx)
	if err != nil || !on {
		t.Errorf("State() = %v, %v after a failed Off; want still on", on, err)
	}
	s.StateErr = boom
	if _, err := s.State(ctx); !errors.Is(err, boom) {
		t.Errorf("State: err %v, want %v", err, boom)
	}

	calls := s.Calls()
	wantOps := []string{"on", "off", "state", "state"}
	if !slices.Equal(s.Ops(), wantOps) {
		t.Fatalf("ops %v, want %v", s.Ops(), wantOps)
	}
	for i, c := range calls {
		if want := time.Date(2026, 11, 25, 12, 0, i+1, 0, time.UTC); !c.At.Equal(want) {
			t.Errorf("call %d at %v, want %v", i, c.At, want)
		}
	}
	if calls[0].Err != nil || !errors.Is(calls[1].Err, boom) || calls[2].Err != nil || !errors.Is(calls[3].Err, boom) {
		t.Errorf("recorded errors %v", calls)
	}
	s.Reset()
	if len(s.Calls()) != 0 || !s.IsOn() {
		t.Errorf("after Reset: %d calls, on %v", len(s.Calls()), s.IsOn())
	}
}

func TestDelay(t *testing.T) {
	s := &Switch{Delay: 30 * time.Millisecond}
	start := time.Now()
	if err := s.On(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < s.Delay {
		t.Errorf("On took %v, want at least %v", took, s.Delay)
	}

	s.Delay = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := s.Off(ctx)
	if !errors.Is(err, power.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Off past its deadline: err %v, want ErrTimeout", err)
	}
	if !s.IsOn() {
		t.Error("a timed-out Off changed the state")
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := s.State(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, power.ErrTimeout) {
		t.Errorf("State on a cancelled ctx: err %v, want context.Canceled", err)
	}
}

func TestHalting(t *testing.T) {
	tests := []struct {
		name   string
		h      *Halting
		start  bool
		wantOn bool
	}{
		{"exit off", &Halting{}, true, false},
		{"exit on", &Halting{ExitOn: true}, false, true},
		{"halt fails", &Halting{HaltErr: errors.New("stuck")}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.h.SetOn(tt.start)
			err := power.Safe(context.Background(), tt.h)
			if (err != nil) != (tt.h.HaltErr != nil) {
				t.Fatalf("Safe: err %v", err)
			}
			if tt.h.IsOn() != tt.wantOn || !slices.Equal(tt.h.Ops(), []string{"halt"}) {
				t.Errorf("on %v ops %v; want on %v ops [halt]", tt.h.IsOn(), tt.h.Ops(), tt.wantOn)
			}
		})
	}
}
