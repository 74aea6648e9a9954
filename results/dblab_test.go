package results

import (
	"testing"
	"time"
)

func TestPutRunThenFinish(t *testing.T) {
	d, _ := openTestDB(t)
	r := RunInfo{ID: "lab-1", Job: "demo", JobFile: "demo.yaml", JobHash: "h", Started: time.Unix(100, 0)}
	if err := d.PutRun(r, "queued"); err != nil {
		t.Fatal(err)
	}
	got, err := d.Run("lab-1")
	if err != nil || got.Status != "queued" || len(got.Boards) != 0 {
		t.Fatalf("queued run reads back as %+v, %v", got, err)
	}
	// The agent that takes it fills in the boards and its host; the
	// submission time stays.
	r.Boards, r.Host, r.Planned, r.Started = []string{"a", "b"}, "pi1", map[string]int{"a": 3, "b": 3}, time.Unix(200, 0)
	if err := d.PutRun(r, RunRunning); err != nil {
		t.Fatal(err)
	}
	got, _ = d.Run("lab-1")
	if got.Status != RunRunning || got.Host != "pi1" || len(got.Boards) != 2 || got.Planned["b"] != 3 || !got.Started.Equal(time.Unix(100, 0)) {
		t.Fatalf("taken run reads back as %+v", got)
	}
	if err := d.FinishRun("lab-1", "pass", Summarize(r, nil)); err != nil {
		t.Fatal(err)
	}
	// A late start message (a redelivery) does not reopen a finished run.
	if err := d.PutRun(r, RunRunning); err != nil {
		t.Fatal(err)
	}
	if got, _ = d.Run("lab-1"); got.Status != "pass" || got.Finished.IsZero() {
		t.Fatalf("finished run reopened: %+v", got)
	}
}

func TestStoreEventsOnce(t *testing.T) {
	d, _ := openTestDB(t)
	r := testRun("lab-2")
	if err := d.BeginRun(r); err != nil {
		t.Fatal(err)
	}
	evs := []Event{
		{T: time.Millisecond, Wall: time.Unix(1, 0), Board: "a", Cycle: 1, Kind: CycleStart, Block: -1, Text: "after_block 1"},
		{T: 2 * time.Millisecond, Wall: time.Unix(1, 1), Board: "a", Cycle: 1, Kind: BlockSent, Block: 0, Attrs: map[string]string{"k": "v"}},
	}
	for i, want := range []int{2, 0} { // the same message twice: stored once
		n, err := d.StoreEvents(r.ID, "agent-1/1/7", evs)
		if err != nil || n != want {
			t.Fatalf("store %d: %d new, %v; want %d", i, n, err, want)
		}
	}
	// Another message with the same events is another source.
	if n, err := d.StoreEvents(r.ID, "agent-1/1/8", evs[:1]); err != nil || n != 1 {
		t.Fatalf("second message: %d new, %v", n, err)
	}
	got, err := d.ReadEvents(r.ID)
	if err != nil || len(got) != 3 {
		t.Fatalf("read back %d events, %v; want 3", len(got), err)
	}
	if got[1].Attrs["k"] != "v" || got[1].Kind != BlockSent {
		t.Fatalf("event read back as %+v", got[1])
	}
	if _, err := d.StoreEvents(r.ID, "", evs); err == nil {
		t.Fatal("events without a source were stored")
	}
	// Local runs (no source) may repeat themselves as before.
	s := d.Events(r.ID)
	s.Emit(evs[0])
	s.Emit(evs[0])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, _ := d.CountEvents(r.ID); n != 5 {
		t.Fatalf("%d events after two local ones, want 5", n)
	}
}
