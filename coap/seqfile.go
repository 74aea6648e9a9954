package coap

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// SeqFile keeps a sender sequence number on disk the way RFC 8613
// Appendix B.1.1 asks of a device: a block of numbers is reserved (the
// file advanced past it, durably) before any of them is used, so that a
// crash, a kill or a second process never uses a number twice. Processes
// sharing the file take disjoint blocks, ordered by a lock on PATH.lock;
// the number is replaced by rename, so a crash leaves the old value or
// the new one, never none.
type SeqFile struct{ path string }

// NewSeqFile returns the sequence file at path (made on first use).
func NewSeqFile(path string) *SeqFile { return &SeqFile{path: path} }

// Path is the file's path.
func (s *SeqFile) Path() string { return s.path }

// Reserve reserves n numbers and returns the first.
func (s *SeqFile) Reserve(n uint64) (uint64, error) { return s.reserve(0, n) }

// reserve reserves n numbers, none below floor, and returns the first:
// the file's number, or floor when the file is behind it. A sender that
// has used every number below floor passes floor, so that a file found
// behind them (removed, or restored from an old copy) never leaves it
// using a number the file does not cover.
func (s *SeqFile) reserve(floor, n uint64) (uint64, error) {
	fail := func(err error) (uint64, error) { return 0, fmt.Errorf("sequence file %s: %w", s.path, err) }
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	lock, err := os.OpenFile(s.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fail(err)
	}
	defer lock.Close() // and unlocked
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fail(fmt.Errorf("lock: %w", err))
	}
	next := uint64(0)
	switch b, err := os.ReadFile(s.path); {
	case os.IsNotExist(err):
	case err != nil:
		return fail(err)
	default:
		txt := strings.TrimSpace(string(b))
		if next, err = strconv.ParseUint(txt, 10, 64); err != nil {
			// Never guess: a number below the true one reuses nonces.
			return fail(fmt.Errorf("not a sequence number: %q", txt))
		}
	}
	next = max(next, floor)
	end := next + n
	if end < next {
		return fail(fmt.Errorf("sequence numbers exhausted"))
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(strconv.FormatUint(end, 10) + "\n")
	serr := tmp.Sync()
	cerr := tmp.Close()
	for _, err := range []error{werr, serr, cerr} {
		if err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fail(err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return next, nil
}
