package results

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fillUntilError records ever larger cycles until RecordCycle fails, and
// returns that error (nil if it never failed).
func fillUntilError(d *DB, run string) error {
	line := strings.Repeat("console output that fills the disk ", 30)
	for i := range 2000 {
		c := testCycles(run)[0]
		c.Cycle = i
		c.LastConsole = []string{line, line, line, line, line, line, line, line}
		if err := d.RecordCycle(c); err != nil {
			return err
		}
	}
	return nil
}

// TestRecordCycleDiskFull fills a tiny tmpfs. Mounting needs root (which
// CI has); elsewhere TestRecordCycleFileTooLarge covers the same path.
func TestRecordCycleDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	path := filepath.Join(mnt, "results.db")
	d, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.BeginRun(testRun("r1")); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJSONL(filepath.Join(mnt, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	sink := d.Events("r1")
	defer sink.Close()

	err = fillUntilError(d, "r1")
	if err == nil {
		t.Fatal("RecordCycle never failed on a 256 KiB file system")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(strings.ToLower(err.Error()), "full") {
		t.Errorf("error %q, want one naming %s and saying full", err, path)
	}
	t.Logf("RecordCycle: %v", err)

	// The other writers report the full disk too, without panicking.
	for range 200 {
		j.Emit(Event{Kind: ConsoleLine, Block: -1, Text: strings.Repeat("x", 4000)})
	}
	if err := j.Err(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("JSONL Err() = %v, want ENOSPC", err)
	}
	for range 2000 {
		sink.Emit(Event{Kind: ConsoleLine, Block: -1, Text: strings.Repeat("y", 400)})
	}
	if err := sink.Flush(); err == nil {
		t.Error("event sink Flush on a full disk returned no error")
	}
	// What was committed before the disk filled is intact.
	if err := d.IntegrityCheck(); err != nil {
		t.Error(err)
	}
	if cs, err := d.Cycles("r1"); err != nil || len(cs) == 0 {
		t.Errorf("cycles after disk full: %d, %v", len(cs), err)
	}
}

// fsizeEnv selects the writer of TestRecordCycleFileTooLarge; it holds
// the database path.
const fsizeEnv = "FUDBENCH_RESULTS_TEST_FSIZE"

// TestHelperFileSizeLimit runs in a child process with RLIMIT_FSIZE set
// low, so writes past the limit fail with EFBIG like writes to a full disk;
// it prints the error RecordCycle returned.
func TestHelperFileSizeLimit(t *testing.T) {
	path := os.Getenv(fsizeEnv)
	if path == "" {
		t.Skip("helper process for TestRecordCycleFileTooLarge")
	}
	// The kernel sends SIGXFSZ on such a write; ignoring it makes write
	// return EFBIG instead.
	signal.Ignore(syscall.SIGXFSZ)
	d, err := OpenDB(path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	if err := d.BeginRun(testRun("r1")); err != nil {
		fmt.Println("begin:", err)
		os.Exit(1)
	}
	lim := syscall.Rlimit{Cur: 256 << 10, Max: 256 << 10}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		fmt.Println("setrlimit:", err)
		os.Exit(1)
	}
	err = fillUntilError(d, "r1")
	fmt.Printf("record-error: %v\n", err)
	os.Exit(0)
}

// TestRecordCycleFileTooLarge makes the database's writes fail in a child
// process limited by RLIMIT_FSIZE (no root needed) and checks that
// RecordCycle returns the error, naming the database, instead of
// panicking, and that the file is intact afterwards.
func TestRecordCycleFileTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFileSizeLimit$", "-test.count=1")
	cmd.Env = append(os.Environ(), fsizeEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("writer: %v\n%s", err, out)
	}
	var msg string
	for l := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(l, "record-error: "); ok {
			msg = strings.TrimSpace(rest)
		}
	}
	if msg == "" || msg == "<nil>" {
		t.Fatalf("RecordCycle never failed under a 256 KiB file size limit:\n%s", out)
	}
	if !strings.Contains(msg, path) {
		t.Errorf("error %q does not name %s", msg, path)
	}
	t.Logf("RecordCycle: %s", msg)
	d, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.IntegrityCheck(); err != nil {
		t.Error(err)
	}
	if cs, err := d.Cycles("r1"); err != nil || len(cs) == 0 {
		t.Errorf("cycles after the failure: %d, %v", len(cs), err)
	}
}
