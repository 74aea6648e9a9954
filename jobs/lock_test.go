package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLockExclusiveAndNamed(t *testing.T) {
	dir := t.TempDir()
	l := &FileLocker{Dir: dir, TTL: time.Second}
	a := Holder{Run: "run-a", Job: "nightly", Host: "benchhost", PID: os.Getpid()}
	lease, err := l.Acquire(context.Background(), "board1", a)
	if err != nil {
		t.Fatal(err)
	}
	// A second run (another pid) is refused with the holder's name.
	b := Holder{Run: "run-b", Job: "ci", Host: "benchhost", PID: os.Getpid() + 1}
	_, err = l.Acquire(context.Background(), "board1", b)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "run run-a (job nightly") {
		t.Fatalf("second acquire: %v", err)
	}
	// Waiting: it gets the board once the first run releases it.
	w := &FileLocker{Dir: dir, TTL: time.Second, Wait: true}
	got := make(chan error, 1)
	go func() {
		l2, err := w.Acquire(context.Background(), "board1", b)
		if err == nil {
			l2.Release()
		}
		got <- err
	}()
	time.Sleep(300 * time.Millisecond) // renewed at least once by now
	select {
	case err := <-got:
		t.Fatalf("waiter got the board while it was held: %v", err)
	default:
	}
	lease.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

func TestLockOfDeadRunExpires(t *testing.T) {
	dir := t.TempDir()
	// A lease written by a run on another host that stopped renewing it.
	stale := `{"holder":{"run":"old","job":"j","host":"elsewhere","pid":1},"expires":"` + time.Now().Add(200*time.Millisecond).Format(time.RFC3339Nano) + `"}`
	os.WriteFile(filepath.Join(dir, "b.lease"), []byte(stale), 0o644)
	l := &FileLocker{Dir: dir, TTL: time.Second, Wait: true}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	lease, err := l.Acquire(ctx, "b", Holder{Run: "new", Host: "here", PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("took the board after %v, before the lease expired", d)
	}
	// A lease of a dead process on this host is taken over at once.
	host, _ := os.Hostname()
	dead := `{"holder":{"run":"crashed","host":"` + host + `","pid":999999999},"expires":"` + time.Now().Add(time.Hour).Format(time.RFC3339Nano) + `"}`
	os.WriteFile(filepath.Join(dir, "c.lease"), []byte(dead), 0o644)
	l2, err := (&FileLocker{Dir: dir}).Acquire(context.Background(), "c", Holder{Run: "new", Host: host, PID: os.Getpid()})
	if err != nil {
		t.Fatalf("lease of a dead process: %v", err)
	}
	l2.Release()
	if _, err := os.Stat(filepath.Join(dir, "c.lease")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("released lease file still there: %v", err)
	}
}
