package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fudbench/fudbench/jobs"
)

// DefaultLeaseTTL is how long a board stays leased after its holder's
// last renewal: the time a dead agent's boards stay taken.
const DefaultLeaseTTL = 15 * time.Second

// Leases are board leases in a KV bucket, one key per board, each
// created with a TTL that its holder renews. It is a jobs.Locker, like
// the file leases of the single-host mode.
type Leases struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	ttl time.Duration
}

var _ jobs.Locker = (*Leases)(nil)

// OpenLeases creates the leases bucket (with limit markers, which
// per-key TTLs need), or takes it as it is. ttl is DefaultLeaseTTL when
// zero; it must be at least a second, the server's resolution.
func OpenLeases(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (*Leases, error) {
	return openLeases(ctx, js, ttl, 1)
}

func openLeases(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int) (*Leases, error) {
	if ttl == 0 {
		ttl = DefaultLeaseTTL
	}
	if ttl < time.Second {
		return nil, fmt.Errorf("lab: lease TTL %v: want 1s or more", ttl)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         LeasesBucket,
		Description:    "fudbench board leases, a key per board",
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: time.Minute,
		Replicas:       replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: leases bucket: %w", err)
	}
	return &Leases{js: js, kv: kv, ttl: ttl}, nil
}

// Holder returns who holds board, and false when nobody does.
func (l *Leases) Holder(ctx context.Context, board string) (jobs.Holder, bool, error) {
	e, err := l.kv.Get(ctx, board)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return jobs.Holder{}, false, nil
	}
	if err != nil {
		return jobs.Holder{}, false, fmt.Errorf("lab: lease of %s: %w", board, err)
	}
	var h jobs.Holder
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		return jobs.Holder{}, false, fmt.Errorf("lab: lease of %s holds %q: %w", board, e.Value(), err)
	}
	return h, true, nil
}

// Acquire takes board for holder, waiting until ctx ends while another
// holder has it (until that holder releases it or stops renewing it).
func (l *Leases) Acquire(ctx context.Context, board string, holder jobs.Holder) (jobs.Lease, error) {
	if err := CheckName("board", board); err != nil {
		return nil, err
	}
	val, err := json.Marshal(holder)
	if err != nil {
		return nil, err
	}
	for {
		rev, err := l.kv.Create(ctx, board, val, jetstream.KeyTTL(l.ttl))
		if err == nil {
			return l.hold(board, val, rev), nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("lab: lease of %s: %w", board, err)
		}
		if err := l.waitFree(ctx, board); err != nil {
			return nil, err
		}
	}
}

// waitFree waits until board's key is deleted, purged or expired.
func (l *Leases) waitFree(ctx context.Context, board string) error {
	w, err := l.kv.Watch(ctx, board)
	if err != nil {
		return fmt.Errorf("lab: lease of %s: %w", board, err)
	}
	defer w.Stop()
	var last jobs.Holder
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("lab: lease of %s: watch ended", board)
			}
			if e == nil {
				continue // the end of the current values
			}
			if e.Operation() != jetstream.KeyValuePut {
				return nil // released, or expired (a delete marker)
			}
			_ = json.Unmarshal(e.Value(), &last)
		case <-ctx.Done():
			if last.Run != "" {
				return fmt.Errorf("board %s is held by %s: %w", board, last, ctx.Err())
			}
			return fmt.Errorf("board %s is held: %w", board, ctx.Err())
		}
	}
}

// hold starts renewing a lease just created at rev.
func (l *Leases) hold(board string, val []byte, rev uint64) *lease {
	ctx, cancel := context.WithCancel(context.Background())
	le := &lease{l: l, board: board, rev: rev, val: val, cancel: cancel, done: make(chan struct{})}
	go le.renew(ctx, val)
	return le
}

type lease struct {
	l      *Leases
	board  string
	val    []byte // the holder, as written
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	rev uint64
	err error // the renewal that failed: the lease was lost
}

// renew publishes the next revision of the key every third of the TTL,
// with the revision it expects and the TTL again: kv.Put and kv.Update
// would write the value without a TTL, and the lease would outlive its
// holder.
func (le *lease) renew(ctx context.Context, val []byte) {
	defer close(le.done)
	t := time.NewTicker(le.l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		le.mu.Lock()
		rev := le.rev
		le.mu.Unlock()
		// The publish is not cut short by Release: its answer says which
		// revision the key is at, which Release needs.
		pctx, cancel := context.WithTimeout(context.Background(), le.l.ttl)
		ack, err := le.l.js.Publish(pctx, "$KV."+LeasesBucket+"."+le.board, val,
			jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(le.l.ttl))
		cancel()
		if err != nil && wrongRevision(err) {
			// A renewal whose answer was lost may have landed: the key
			// still holding this lease's value is still this lease.
			if cur, ok := le.current(val); ok {
				le.mu.Lock()
				le.rev = cur
				le.mu.Unlock()
				continue
			}
		}
		if err != nil && !wrongRevision(err) {
			// The server did not answer (a coordinator restarting, a
			// link down): try again at the next tick. Had the key
			// lapsed meanwhile, that renewal finds another revision.
			continue
		}
		le.mu.Lock()
		if err != nil {
			le.err = fmt.Errorf("lab: lease of %s lost: %w", le.board, err)
			le.mu.Unlock()
			return
		}
		le.rev = ack.Sequence
		le.mu.Unlock()
	}
}

// current returns the key's revision if it still holds val.
func (le *lease) current(val []byte) (uint64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := le.l.kv.Get(ctx, le.board)
	if err != nil || !bytes.Equal(e.Value(), val) {
		return 0, false
	}
	return e.Revision(), true
}

// Lost reports the error that ended the renewals, if any: the lease has
// lapsed and another holder may have the board.
func (le *lease) Lost() error {
	le.mu.Lock()
	defer le.mu.Unlock()
	return le.err
}

// Release stops the renewals and deletes the key, if it is still this
// lease's.
func (le *lease) Release() error {
	le.cancel()
	<-le.done
	le.mu.Lock()
	rev, lost := le.rev, le.err
	le.mu.Unlock()
	if lost != nil {
		return lost
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := le.l.kv.Delete(ctx, le.board, jetstream.LastRevision(rev))
	if err != nil && wrongRevision(err) {
		if cur, ok := le.current(le.val); ok {
			err = le.l.kv.Delete(ctx, le.board, jetstream.LastRevision(cur))
		}
	}
	if err != nil {
		return fmt.Errorf("lab: release %s: %w", le.board, err)
	}
	return nil
}

// wrongRevision tells a renewal refused because the key is no longer at
// the lease's revision from one the server did not answer.
func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
