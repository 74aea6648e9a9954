package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/results"
)

// TestBombs points the report at output directories whose files are
// bombs: a summary.json of gigabytes (sparse, so it costs no disk), one
// that is /dev/zero, an events.jsonl that is /dev/zero. Each is refused
// with an error naming the file and the bound, having allocated at most
// 8 bytes per byte it read plus 1 MiB (a buffer that grows by doubling:
// 4 bytes a byte, 8 under the race detector).
func TestBombs(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	sum, err := json.Marshal(results.Summary{RunID: "r1", Job: "j"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		limit   int64 // maxSummaryFile for the case
		read    int64 // bytes the report may read
		wantErr string
	}{
		{"summary.json of 8 GiB", func(t *testing.T, dir string) {
			f, err := os.Create(filepath.Join(dir, SummaryFile))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(8 << 30); err != nil {
				t.Skipf("no sparse file: %v", err)
			}
		}, MaxSummaryFile, 0, "8589934592 bytes, more than the 67108864 a run summary may have"},
		{"summary.json is /dev/zero (bound lowered to 1 MiB)", func(t *testing.T, dir string) {
			if err := os.Symlink("/dev/zero", filepath.Join(dir, SummaryFile)); err != nil {
				t.Fatal(err)
			}
		}, 1 << 20, 1<<20 + 1, "more than the 1048576 bytes a run summary may have"},
		{"events.jsonl is /dev/zero", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, SummaryFile), sum, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/dev/zero", filepath.Join(dir, EventsFile)); err != nil {
				t.Fatal(err)
			}
		}, MaxSummaryFile, results.MaxJSONLLine + 1<<20, "events.jsonl: results: jsonl line 1: longer than 16777216 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			defer func(old int64) { maxSummaryFile = old }(maxSummaryFile)
			maxSummaryFile = tt.limit
			var err error
			c := alloccheck.Bound(t, tt.name, int(tt.read), 8, 1<<20, func() { _, err = Load(dir, "") })
			alloccheck.Log(t, tt.name, tt.read, c, err)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tt.wantErr)
			}
		})
	}
}
