package jobs_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/jobs"
)

// An image file is refused by its size before it is read: a file of
// gigabytes (sparse here), or one that never ends (/dev/zero), costs the
// bench no more than the largest slot among the job's boards.
func TestImageFileBombs(t *testing.T) {
	dir := t.TempDir()
	sparse := alloccheck.Sparse(t, filepath.Join(dir, "huge.img"), 10<<30)
	bench := func(slot string) *boards.Bench {
		text := `boards:
  - name: b
    power: {driver: gpio, pin: GPIO99}
    coap: {address: "127.0.0.1:5683"}
`
		if slot != "" {
			text += "    flash: {size: 1MiB, slot_size: " + slot + "}\n"
		}
		inv, err := boards.Parse(filepath.Join(dir, "bench.yaml"), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	for _, tc := range []struct {
		name, file, slot, want string
		bound                  uint64 // bytes allocated at most
	}{
		{"10 GiB file, 64 KiB slot", sparse, "64KiB", "does not fit board b's 65536-byte slot", 1 << 20},
		{"10 GiB file, no slot declared", sparse, "", "more than 67108864", 1 << 20},
		{"endless file, 64 KiB slot", "/dev/zero", "64KiB", "does not fit board b's 65536-byte slot", 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jobFile := filepath.Join(dir, "job.yaml")
			if err := os.WriteFile(jobFile, []byte("boards: [b]\nimage: {file: "+tc.file+"}\nbaseline: {build: {version: 1.0.0, seq: 1, size: 4KiB}}\nblock_size: 1024\ncuts: [none]\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			j, err := jobs.Load(jobFile)
			if err != nil {
				t.Fatal(err)
			}
			inv := bench(tc.slot)
			var perr error
			c := alloccheck.Measure(func() {
				_, perr = jobs.Prepare(context.Background(), j, inv, jobs.PrepareOptions{Use: jobs.UseUpdate, NoDrivers: true})
			})
			if perr == nil || !strings.Contains(perr.Error(), tc.want) || !strings.Contains(perr.Error(), "job.yaml:2:") {
				t.Fatalf("error %v, want %q at the image's line", perr, tc.want)
			}
			t.Logf("%s: refused having allocated %d bytes: %v", tc.name, c.Bytes, perr)
			if c.Bytes > tc.bound {
				t.Errorf("allocated %d bytes, more than %d", c.Bytes, tc.bound)
			}
		})
	}
}
