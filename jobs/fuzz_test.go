package jobs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/internal/config"
)

// FuzzParse: arbitrary bytes never panic, every error is a configuration
// error, and a plan that parses expands (or fails cleanly) for any block
// count.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"../examples/*.yaml", "testdata/bad/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	for _, s := range []string{
		"",
		"a",
		"- - -",
		"{",
		"&a [*a]",
		"image: &x *x",
		head + "cuts: [{after_block: {from: last, to: 0}}]\n",
		head + "cuts: [{random: {count: 3, kind: during_block, window: {from: last}}}]\n",
		head + "cuts: [{on_gpio: {input: busy, nth: {from: 1, to: 4294967295}}}]\n",
		head + "cuts: [none]\nrepeat: 100000\n",
		head + "cuts: [!!map {none: {}}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var j *Job
		var err error
		alloccheck.Bound(t, "jobs.Parse", len(data), alloccheck.YAMLPerByte, alloccheck.YAMLFixed+alloccheck.FuzzSlack, func() { j, err = Parse("fuzz.yaml", data) })
		if err != nil {
			if !errors.Is(err, config.ErrConfig) {
				t.Fatalf("error %v (%T) is not a configuration error", err, err)
			}
			return
		}
		for _, n := range []uint32{0, 1, 16, 1000} {
			cs, err := j.Cycles(n)
			if err != nil {
				if !errors.Is(err, config.ErrConfig) {
					t.Fatalf("Cycles(%d): %v is not a configuration error", n, err)
				}
				continue
			}
			if len(cs) == 0 || len(cs) > MaxCycles {
				t.Fatalf("Cycles(%d): %d cycles", n, len(cs))
			}
			for _, c := range cs {
				if c.Block() >= int64(n) || (c.Block() < 0 && (c.Kind == "after_block" || c.Kind == "during_block")) {
					t.Fatalf("Cycles(%d): %+v outside the image", n, c)
				}
			}
		}
	})
}
