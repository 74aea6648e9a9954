package results

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Event batching of EventSink: a batch is written when this many events
// are waiting, or every EventFlushInterval, whichever comes first.
const (
	EventBatch         = 500
	EventFlushInterval = 100 * time.Millisecond
	// MaxPendingEvents bounds the memory held while the database is slow
	// (another process holding the write lock, a slow disk). Events
	// beyond it are dropped and counted; events.jsonl still has them.
	MaxPendingEvents = 200_000
)

// EventSink stores a run's events in the database. Emit only appends to
// an in-memory batch; a goroutine writes batches in one transaction each.
// On a crash the events not yet written (at most about
// EventFlushInterval's worth) are lost from the database; events.jsonl is
// the record that loses nothing.
//
// EventSink is safe for concurrent use. Close it before closing the DB.
type EventSink struct {
	d          *DB
	run        string
	maxPending int // MaxPendingEvents; lowered by tests

	mu      sync.Mutex
	pending []Event
	spare   []Event
	dropped int
	err     error
	closed  bool

	// boxed holds board names and kinds already converted to
	// interfaces, so a batch's arguments do not allocate them per
	// event; only the writer goroutine uses it.
	boxed map[string]any

	kick    chan struct{}
	flushes chan chan error
	stop    chan struct{}
	done    chan struct{}
}

var _ Sink = (*EventSink)(nil)

// Events returns a sink storing events under runID (which BeginRun must
// have recorded) and starts its writer.
func (d *DB) Events(runID string) *EventSink {
	s := &EventSink{
		d:          d,
		run:        runID,
		maxPending: MaxPendingEvents,
		pending:    make([]Event, 0, EventBatch),
		kick:       make(chan struct{}, 1),
		flushes:    make(chan chan error),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	go s.loop()
	return s
}

// Emit queues e. It never waits for the database.
func (s *EventSink) Emit(e Event) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.pending) >= s.maxPending {
		s.dropped++
		if s.err == nil {
			s.err = fmt.Errorf("results: events of %s: %d events waiting for %s, dropping more", s.run, s.maxPending, s.d.path)
			slog.Error("event store too slow; dropping events", "run", s.run, "err", s.err)
		}
		s.mu.Unlock()
		return
	}
	s.pending = append(s.pending, e)
	full := len(s.pending) >= EventBatch
	s.mu.Unlock()
	if full {
		select {
		case s.kick <- struct{}{}:
		default: // a kick is already waiting
		}
	}
}

// Flush writes every event emitted so far. It returns nil only if every
// event emitted so far is stored: otherwise the error of this write, or
// the first error that lost events earlier (see Err).
func (s *EventSink) Flush() error {
	ch := make(chan error, 1)
	select {
	case s.flushes <- ch:
		if err := <-ch; err != nil {
			return err
		}
	case <-s.done:
	}
	return s.Err()
}

// Close writes the remaining events, stops the writer and returns the
// first error any write met. Emit after Close does nothing.
func (s *EventSink) Close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if !already {
		close(s.stop)
	}
	<-s.done
	return s.Err()
}

// Err returns the first error that lost events, or nil.
func (s *EventSink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Dropped returns how many events were not stored: emitted while
// MaxPendingEvents were waiting, or in a batch whose write failed.
func (s *EventSink) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

func (s *EventSink) loop() {
	defer close(s.done)
	tick := time.NewTicker(EventFlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.kick:
			s.write()
		case <-tick.C:
			s.write()
		case ch := <-s.flushes:
			ch <- s.write()
		case <-s.stop:
			s.write()
			return
		}
	}
}

// write stores every pending event. A batch whose write fails is dropped
// (and counted) rather than retried, so a full disk cannot grow memory.
func (s *EventSink) write() error {
	s.mu.Lock()
	batch := s.pending
	s.pending, s.spare = s.spare[:0], nil
	s.mu.Unlock()
	if len(batch) == 0 {
		s.mu.Lock()
		s.spare = batch
		s.mu.Unlock()
		return nil
	}
	err := s.insert(batch)
	clear(batch) // release attrs maps and strings
	s.mu.Lock()
	if cap(batch) <= 4*EventBatch { // after a burst, let the big buffer go
		s.spare = batch[:0]
	}
	if err != nil {
		s.dropped += len(batch)
		if s.err == nil {
			s.err = err
			slog.Error("storing events failed; further errors are not logged", "run", s.run, "err", err)
		}
	}
	s.mu.Unlock()
	return err
}

func (s *EventSink) insert(batch []Event) (err error) {
	op := fmt.Sprintf("store %d events of %s", len(batch), s.run)
	tx, err := s.d.db.Begin()
	if err != nil {
		return s.d.wrap(op, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	// Multi-row INSERTs: per-statement overhead dominates single rows.
	var full *sql.Stmt
	if len(batch) >= insertRows {
		// Parsing a 100-row INSERT costs about as much as running it.
		if full, err = tx.Prepare(fullInsert); err != nil {
			return s.d.wrap(op, err)
		}
		defer full.Close()
	}
	args := make([]any, 0, insertRows*eventColumns)
	run := any(s.run)
	noAttrs := any(sql.NullString{})
	for len(batch) > 0 {
		n := min(len(batch), insertRows)
		args = args[:0]
		for i := range batch[:n] {
			e := &batch[i]
			attrs := noAttrs
			if len(e.Attrs) > 0 {
				attrs = sql.NullString{String: mustJSON(e.Attrs), Valid: true}
			}
			args = append(args, run, int64(e.T), unixNano(e.Wall), s.box(e.Board), e.Cycle, s.box(string(e.Kind)),
				e.Block, int64(e.Dur), e.Text, attrs)
		}
		if n == insertRows {
			_, err = full.Exec(args...)
		} else {
			_, err = tx.Exec(buildInsertEvents(n), args...)
		}
		if err != nil {
			return s.d.wrap(op, err)
		}
		batch = batch[n:]
	}
	if err := tx.Commit(); err != nil {
		return s.d.wrap(op, err)
	}
	return nil
}

// box returns str as an interface, reusing the conversion of a string
// seen before (board names and kinds repeat in every batch).
func (s *EventSink) box(str string) any {
	if v, ok := s.boxed[str]; ok {
		return v
	}
	if s.boxed == nil || len(s.boxed) >= 4096 {
		s.boxed = map[string]any{}
	}
	v := any(str)
	s.boxed[str] = v
	return v
}

const (
	insertRows   = 100 // rows per INSERT; 1000 parameters, far below SQLite's limit
	eventColumns = 10
)

var fullInsert = buildInsertEvents(insertRows)

func buildInsertEvents(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO events (run, t, wall, board, cycle, kind, block, dur, text, attrs) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?)")
	}
	return b.String()
}

func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}
