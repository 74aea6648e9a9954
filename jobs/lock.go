package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A Locker grants a board to one run at a time with a lease: the holder
// renews it while it works, and a lease that is not renewed (a crashed
// run) expires, so no board stays locked forever. Lab mode will put the
// same semantics in a key-value bucket with a TTL; the file locker is the
// single-host form.
type Locker interface {
	// Acquire takes board for holder, waiting until ctx ends if another
	// live holder has it. The error names that holder.
	Acquire(ctx context.Context, board string, holder Holder) (Lease, error)
}

// Lease is a held board.
type Lease interface {
	Release() error
}

// Holder identifies who holds a board.
type Holder struct {
	Run  string `json:"run"`
	Job  string `json:"job"`
	Host string `json:"host"`
	PID  int    `json:"pid"`
}

func (h Holder) String() string {
	return fmt.Sprintf("run %s (job %s, pid %d on %s)", h.Run, h.Job, h.PID, h.Host)
}

// ErrLocked is returned when a board is held by another live run.
var ErrLocked = errors.New("board is locked")

// FileLocker keeps one lease file per board in Dir.
type FileLocker struct {
	Dir string
	// TTL is how long a lease lives without renewal (default 15 s); it is
	// renewed every TTL/3.
	TTL time.Duration
	// Wait makes Acquire wait for a held board instead of failing at once.
	Wait bool
}

type leaseFile struct {
	Holder  Holder    `json:"holder"`
	Expires time.Time `json:"expires"`
}

type fileLease struct {
	path string
	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
}

// DefaultLockDir is where a host's runs keep their board leases.
func DefaultLockDir() string { return filepath.Join(os.TempDir(), "fudbench-locks") }

// Acquire implements Locker.
func (l *FileLocker) Acquire(ctx context.Context, board string, h Holder) (Lease, error) {
	ttl := l.TTL
	if ttl == 0 {
		ttl = 15 * time.Second
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock dir: %w", err)
	}
	path := filepath.Join(l.Dir, strings.ReplaceAll(board, string(filepath.Separator), "_")+".lease")
	for {
		held, err := l.tryAcquire(path, h, ttl)
		if err == nil {
			fl := &fileLease{path: path, stop: make(chan struct{})}
			fl.done.Add(1)
			go fl.renew(h, ttl)
			return fl, nil
		}
		if !errors.Is(err, ErrLocked) {
			return nil, err
		}
		if !l.Wait {
			return nil, fmt.Errorf("board %s: %w by %s until %s", board, ErrLocked, held.Holder, held.Expires.Format(time.RFC3339))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("board %s: still %w by %s: %w", board, ErrLocked, held.Holder, ctx.Err())
		case <-time.After(ttl / 10):
		}
	}
}

// tryAcquire creates the lease file exclusively, or takes over an
// expired one.
func (l *FileLocker) tryAcquire(path string, h Holder, ttl time.Duration) (leaseFile, error) {
	want := leaseFile{Holder: h, Expires: time.Now().Add(ttl)}
	data, _ := json.Marshal(want)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil {
		_, werr := f.Write(data)
		return want, errors.Join(werr, f.Close())
	}
	if !errors.Is(err, os.ErrExist) {
		return leaseFile{}, fmt.Errorf("lock %s: %w", path, err)
	}
	var cur leaseFile
	b, rerr := os.ReadFile(path)
	if rerr == nil && json.Unmarshal(b, &cur) == nil && time.Now().Before(cur.Expires) && cur.Holder != h && !deadHere(cur.Holder, h.Host) {
		return cur, ErrLocked
	}
	// Expired, unreadable (a holder crashed mid-write) or ours: take it
	// over atomically.
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return leaseFile{}, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return leaseFile{}, fmt.Errorf("lock %s: %w", path, err)
	}
	return want, nil
}

// deadHere reports whether holder ran on this host and its process is
// gone: its lease need not be waited out.
func deadHere(holder Holder, host string) bool {
	if holder.Host != host || holder.PID <= 0 || holder.PID == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(holder.PID, 0), syscall.ESRCH)
}

func (fl *fileLease) renew(h Holder, ttl time.Duration) {
	defer fl.done.Done()
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-fl.stop:
			return
		case <-t.C:
			data, _ := json.Marshal(leaseFile{Holder: h, Expires: time.Now().Add(ttl)})
			tmp := fl.path + ".renew.tmp"
			if os.WriteFile(tmp, data, 0o644) == nil {
				os.Rename(tmp, fl.path)
			}
		}
	}
}

// Release ends the lease.
func (fl *fileLease) Release() error {
	var err error
	fl.once.Do(func() {
		close(fl.stop)
		fl.done.Wait()
		if rerr := os.Remove(fl.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = rerr
		}
	})
	return err
}
