package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/results"
)

// The bad-input corpus: broken job files (testdata/badinput/jobs, and the
// jobs package's own corpus jobs/testdata/bad) run against a good bench,
// broken bench files (testdata/badinput/benches) run with a good job, and
// a few cases made here (an empty file, a huge file, a directory, a file
// that does not exist, images that do not verify). The first line of each
// corpus file says what the error must contain:
//
//	# want LINE:COL substring        FILE:LINE:COL: in the error, and substring
//	# want-cycles N LINE:COL substr  (jobs package corpus) the same
//	# want-path WHICH substring      the path of WHICH (self, job, or a path
//	                                 relative to the corpus), and substring
//
// Every run must exit 2 with one line on stderr, create no output
// directory and no database, leave an existing database's bytes and mtime
// as they were, and power nothing (the good bench's exec power switch
// leaves a file behind when it runs).

var badWantRE = regexp.MustCompile(`^# (?:want|want-cycles \d+) (\d+):(\d+) ?(.*)$`)
var badWantPathRE = regexp.MustCompile(`^# want-path (\S+) ?(.*)$`)

type badCase struct {
	name string
	args []string // after "run"; --out, --db, --lock-dir are added
	want []string // substrings of the error line
}

// badCorpus copies the corpus to a temporary directory, makes its images
// and returns it with every case.
func badCorpus(t *testing.T) (string, []badCase) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "corpus")
	if err := os.CopyFS(root, os.DirFS("testdata/badinput")); err != nil {
		t.Fatal(err)
	}
	badImages(t, filepath.Join(root, "images"))
	bench, job := filepath.Join(root, "bench.yaml"), filepath.Join(root, "job.yaml")

	var cases []badCase
	add := func(name, file string, args []string) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		c := badCase{name: name, args: args}
		if m := badWantRE.FindStringSubmatch(first); m != nil {
			c.want = []string{fmt.Sprintf("%s:%s:%s: ", file, m[1], m[2]), m[3]}
		} else if m := badWantPathRE.FindStringSubmatch(first); m != nil {
			p := m[1]
			switch p {
			case "self":
				p = file
			case "job":
				p = job
			default:
				p = filepath.Join(root, p)
			}
			c.want = []string{p, m[2]}
		} else {
			t.Fatalf("%s: first line %q states no expected error", file, first)
		}
		cases = append(cases, c)
	}
	glob := func(pattern string) []string {
		fs, err := filepath.Glob(pattern)
		if err != nil || len(fs) == 0 {
			t.Fatalf("corpus %s: %v %v", pattern, fs, err)
		}
		return fs
	}
	for _, f := range glob(filepath.Join(root, "jobs", "*.yaml")) {
		add("job/"+filepath.Base(f), f, []string{f, "--bench", bench})
	}
	for _, f := range glob(filepath.Join(root, "benches", "*.yaml")) {
		add("bench/"+filepath.Base(f), f, []string{job, "--bench", f})
	}
	pkg, err := filepath.Abs("../../jobs/testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range glob(filepath.Join(pkg, "*.yaml")) {
		add("jobs-pkg/"+filepath.Base(f), f, []string{f, "--bench", bench})
	}

	// Made here: what a repository should not hold.
	gen := filepath.Join(root, "gen")
	if err := os.MkdirAll(filepath.Join(gen, "a-directory.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	emptyJob := runWrite(t, filepath.Join(gen, "empty-job.yaml"), "")
	emptyBench := runWrite(t, filepath.Join(gen, "empty-bench.yaml"), "")
	dir := filepath.Join(gen, "a-directory.yaml")
	missing := filepath.Join(gen, "no-such-file.yaml")
	// A 10 MB job whose only mistake is on its last line: refused by its
	// size before it is read.
	var huge bytes.Buffer
	huge.WriteString("baseline: {build: {version: 1.0.0, seq: 1, size: 4KiB}}\nimage: {build: {version: 2.0.0, seq: 2, size: 4KiB}}\ncuts: [none]\n")
	pad := "# " + strings.Repeat("padding ", 8) + "\n"
	const padLines = 150_000
	for range padLines {
		huge.WriteString(pad)
	}
	huge.WriteString("colour: red\n")
	hugeJob := runWrite(t, filepath.Join(gen, "huge-job.yaml"), huge.String())
	// The bomb of docs/RELIABILITY.md: cuts nested 100,000 deep.
	deepJob := runWrite(t, filepath.Join(gen, "deep-job.yaml"), deepJobText(100_000))
	cases = append(cases,
		badCase{"gen/empty-job", []string{emptyJob, "--bench", bench}, []string{emptyJob + ":1:1: ", "empty job file"}},
		badCase{"gen/empty-bench", []string{job, "--bench", emptyBench}, []string{emptyBench + ":1:1: ", "empty file"}},
		badCase{"gen/job-is-directory", []string{dir, "--bench", bench}, []string{dir + ": ", "is a directory"}},
		badCase{"gen/bench-is-directory", []string{job, "--bench", dir}, []string{dir + ": ", "is a directory"}},
		badCase{"gen/job-missing", []string{missing, "--bench", bench}, []string{missing + ": ", "no such file"}},
		badCase{"gen/bench-missing", []string{job, "--bench", missing}, []string{missing + ": ", "no such file"}},
		badCase{"gen/huge-job", []string{hugeJob, "--bench", bench}, []string{hugeJob + ": job file of 9.6 MiB is too large: the limit is 256KiB"}},
		badCase{"gen/deep-job", []string{deepJob, "--bench", bench}, []string{deepJob + ":3:1031: ", "brackets nest more than 1024 deep (the limit is 64 levels)"}},
		badCase{"gen/image-key-missing", []string{job, "--bench", bench, "--image-key", missing}, []string{"--image-key", missing}},
	)
	return root, cases
}

// deepJobText is a job whose cuts are lists nested depth deep.
func deepJobText(depth int) string {
	return "baseline: {build: {version: 1.0.0, seq: 1, size: 4KiB}}\nimage: {build: {version: 2.0.0, seq: 2, size: 4KiB}}\ncuts: " +
		strings.Repeat("[", depth) + strings.Repeat("]", depth) + "\n"
}

// badImages writes the images the corpus's jobs name: each fails
// verification in its own way.
func badImages(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	good, err := fwimage.Build(fwimage.Spec{Version: "2.0.0", Seq: 2, Size: 4 << 10, Seed: 2}, fwimage.DevKey())
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherImg, err := fwimage.Build(fwimage.Spec{Version: "2.0.0", Seq: 2, Size: 4 << 10, Seed: 2}, other)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(off int) []byte {
		b := slices.Clone(good)
		b[off] ^= 0x01
		return b
	}
	for name, b := range map[string][]byte{
		"bad-signature.bin": flip(fwimage.SignedSize + 5), // inside the signature
		"bad-digest.bin":    flip(len(good) - 1),          // a payload byte
		"other-key.bin":     otherImg,
		"truncated.bin":     good[:1000],
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// badExistingDB makes a results database holding one run, with an old
// mtime, and returns its bytes.
func badExistingDB(t *testing.T, path string) []byte {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := results.OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.BeginRun(results.RunInfo{ID: "earlier", Job: "earlier", JobHash: "00", Started: time.Unix(1_700_000_000, 0).UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1_600_000_000, 0)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dirEntries lists what is under dir, as paths relative to it.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBadInputCorpus runs `fudbench run` on every broken job and bench
// file: exit 2, one error line with the file (and line:column for YAML),
// nothing written, no database touched, nothing powered.
func TestBadInputCorpus(t *testing.T) {
	_, cases := badCorpus(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, existing := range []bool{false, true} {
				work := t.TempDir()
				out, dbPath := filepath.Join(work, "out"), filepath.Join(work, "db", "results.db")
				var before []byte
				if existing {
					before = badExistingDB(t, dbPath)
				}
				args := append([]string{"run"}, c.args...)
				args = append(args, "--out", out, "--db", dbPath, "--lock-dir", filepath.Join(work, "locks"))
				_, stderr, code := runCLI(t, work, args...)
				if code != ExitUsage {
					t.Fatalf("exit %d, want %d; stderr:\n%s", code, ExitUsage, stderr)
				}
				line := strings.TrimSuffix(stderr, "\n")
				if line == "" || strings.Contains(line, "\n") || !strings.HasPrefix(line, "fudbench: ") {
					t.Errorf("stderr is not one error line:\n%s", stderr)
				}
				for _, w := range c.want {
					if !strings.Contains(line, w) {
						t.Errorf("error %q lacks %q", line, w)
					}
				}
				// Nothing but runCLI's TMPDIR (and the database made
				// before the run) may be in the work directory, and
				// TMPDIR stays empty: no output, no database, no lock, no
				// power switch call, no simulated board started.
				want := []string{"tmp"}
				if existing {
					want = []string{"db", filepath.Join("db", "results.db"), "tmp"}
				}
				if got := dirEntries(t, work); !slices.Equal(got, want) {
					t.Errorf("work directory holds %v, want %v", got, want)
				}
				if existing {
					after, err := os.ReadFile(dbPath)
					if err != nil || !bytes.Equal(before, after) {
						t.Errorf("existing database changed (%v)", err)
					}
					if fi, err := os.Stat(dbPath); err != nil || !fi.ModTime().Equal(time.Unix(1_600_000_000, 0)) {
						t.Errorf("existing database's mtime changed: %v %v", fi.ModTime(), err)
					}
				}
			}
		})
	}
}

// TestBadInputCorpusBaseIsGood proves the corpus's good halves are good:
// the good job on the good bench passes every check `fudbench run` makes
// before it powers a board, so each broken file is the only mistake of
// its case.
func TestBadInputCorpusBaseIsGood(t *testing.T) {
	root, _ := badCorpus(t)
	j, err := jobs.Load(filepath.Join(root, "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := boards.Load(filepath.Join(root, "bench.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := jobs.Prepare(context.Background(), j, inv, jobs.PrepareOptions{Use: jobs.UseRun, Log: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Boards) != 1 || p.Boards[0].Name != "dut-a" || len(p.Plan) != 2 {
		t.Errorf("boards %v, %d cycles: want [dut-a] and 2", p.Names(), len(p.Plan))
	}
	// Each bad image differs from a good one only where its name says.
	for _, name := range []string{"bad-signature.bin", "bad-digest.bin", "other-key.bin", "truncated.bin"} {
		bad := *j
		bad.Image = jobs.ImageSpec{File: filepath.Join(root, "images", name)}
		_, err := jobs.Prepare(context.Background(), &bad, inv, jobs.PrepareOptions{Use: jobs.UseRun, Log: discardLog()})
		if err == nil {
			t.Errorf("%s verifies", name)
		}
		if name == "bad-signature.bin" && !errors.Is(err, fwimage.ErrSignature) ||
			name == "bad-digest.bin" && !errors.Is(err, fwimage.ErrDigest) ||
			name == "truncated.bin" && !errors.Is(err, fwimage.ErrTruncated) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
