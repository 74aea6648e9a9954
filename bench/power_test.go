package bench_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/results"
)

// lateSwitch is a driver whose power-on still reaches the switch after the
// bench gave up on it (a request already on its way to a PDU's HTTP API or
// a relay board is carried out whatever the bench's context says), and
// whose power-on can hang for good.
type lateSwitch struct {
	mu   sync.Mutex
	on   bool
	ops  []string
	hang bool
}

func (s *lateSwitch) String() string { return "late" }

func (s *lateSwitch) On(context.Context) error {
	if s.hang {
		select {} // never answers
	}
	time.Sleep(300 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = true
	s.ops = append(s.ops, "on")
	return nil
}

func (s *lateSwitch) Off(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = false
	s.ops = append(s.ops, "off")
	return nil
}

// TestSafeStateAfterAnAbandonedPowerOn: a run stopped while a board's
// power-on is in the driver (a full disk, Ctrl-C) gives up on that call;
// the safe state's off waits for it to land, so the board ends off, not
// on. A call that never returns holds the safe state up for the board's
// power timeout only.
func TestSafeStateAfterAnAbandonedPowerOn(t *testing.T) {
	for _, hang := range []bool{false, true} {
		sw := &lateSwitch{hang: hang}
		b := bench.NewBoard("late", sw, bench.Endpoint{}, "", bench.NewHub(results.NewClock(), nil))
		b.PowerTimeout = time.Second
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		if err := b.PowerOn(ctx); err == nil {
			t.Fatal("power-on given up on returned no error")
		}
		start := time.Now()
		if err := b.Safe(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		sw.mu.Lock()
		on, ops := sw.on, slices.Clone(sw.ops)
		sw.mu.Unlock()
		want := []string{"on", "off"}
		if hang {
			want = []string{"off"}
		}
		if on || !slices.Equal(ops, want) {
			t.Errorf("hang %v: switch on %v after %v, want %v", hang, on, ops, want)
		}
		if hang && (took < 800*time.Millisecond || took > 2*time.Second) {
			t.Errorf("safe state after a hung power-on took %v, want about the power timeout (1s)", took)
		}
	}
}
