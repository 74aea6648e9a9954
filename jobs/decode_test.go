package jobs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/results"
)

// head is the part every valid test job needs.
const head = `baseline: {build: {version: 1.0.0, seq: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 16KiB}}
`

func mustParse(t *testing.T, src string) *Job {
	t.Helper()
	j, err := Parse("dir/test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return j
}

func TestDefaults(t *testing.T) {
	j := mustParse(t, head+"cuts: [none]\n")
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", j.Name, "test"},
		{"baseline", *j.Baseline.Build, BuildSpec{Version: "1.0.0", Seq: 1, Size: 64 << 10, Seed: 1}},
		{"image", *j.Image.Build, BuildSpec{Version: "2.0.0", Seq: 2, Size: 16 << 10, Seed: 1}},
		{"profile: the bench's", j.Profile, ""},
		{"block_size", j.BlockSize, 1024},
		{"path: the board's", j.Path, ""},
		{"cuts", len(j.Cuts), 1},
		{"off_time", j.OffTime, 100 * time.Millisecond},
		{"recovery_timeout", j.RecoveryTimeout, 30 * time.Second},
		{"accept", j.Accept, map[string][]results.Outcome{"*": {results.Updated}}},
		{"repeat", j.Repeat, 1},
		{"seed", j.Seed, uint64(1)},
		{"parallel", j.Parallel, true},
		{"reflash", j.Reflash, true},
		{"missed_cut", j.MissedCut, MissedRetry},
		{"szx", j.SZX(), uint8(6)},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if !j.Accepts("anything", results.Updated) || j.Accepts("anything", results.Bricked) {
		t.Errorf("default accept: want updated only")
	}
	// No profile in the job: each board's bench entry decides.
	if j.ProfileFor("b", boards.ProfileBlock1) != boards.ProfileBlock1 || j.ProfileFor("b", "") != boards.ProfileResumable {
		t.Error("the bench entry's profile is not the default")
	}
}

func TestParseFields(t *testing.T) {
	src := `name: nightly
bench: ../benches/lab.yaml
tag: nrf52
baseline: {file: fw/old.bin}
image: {file: /abs/new.bin}
profile: block1
profiles: {b1: resumable}
block_size: 64
path: /upload
off_time: 0
recovery_timeout: 1h
accept:
  b1: updated
  "*": [updated, rolled-back, updated]
repeat: 3
seed: 18446744073709551615
parallel: false
reflash: false
missed_cut: fail
cuts: [none]
`
	j := mustParse(t, src)
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", j.Name, "nightly"},
		{"bench", j.Bench, filepath.Join("dir", "../benches/lab.yaml")},
		{"tag", j.Tag, "nrf52"},
		{"baseline", j.Baseline.File, filepath.Join("dir", "fw/old.bin")},
		{"image", j.Image.File, "/abs/new.bin"},
		{"profile overrides the bench", j.ProfileFor("other", boards.ProfileResumable), boards.ProfileBlock1},
		{"profiles", j.ProfileFor("b1", boards.ProfileBlock1), boards.ProfileResumable},
		{"block_size", j.BlockSize, 64},
		{"szx", j.SZX(), uint8(2)},
		{"path", j.Path, "/upload"},
		{"off_time", j.OffTime, time.Duration(0)},
		{"recovery_timeout", j.RecoveryTimeout, time.Hour},
		{"accept b1", j.AcceptedFor("b1"), []results.Outcome{results.Updated}},
		{"accept *", j.AcceptedFor("b2"), []results.Outcome{results.Updated, results.RolledBack}},
		{"repeat", j.Repeat, 3},
		{"seed", j.Seed, uint64(18446744073709551615)},
		{"parallel", j.Parallel, false},
		{"reflash", j.Reflash, false},
		{"missed_cut", j.MissedCut, MissedFail},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestSelectBoards(t *testing.T) {
	inv := []boards.Board{{Name: "a", Tags: []string{"x"}}, {Name: "b", Tags: []string{"x", "y"}}, {Name: "c"}}
	cases := []struct {
		name, src string
		want      []string
		err       string
	}{
		{"all", "", []string{"a", "b", "c"}, ""},
		{"names in job order", "boards: [c, a]\n", []string{"c", "a"}, ""},
		{"tag", "tag: x\n", []string{"a", "b"}, ""},
		{"unknown name", "boards: [a, zz]\n", nil, `4:13: board "zz" is not on the bench (have: a, b, c)`},
		{"unknown tag", "tag: nope\n", nil, `4:6: no board of the bench has tag "nope" (tags: x, y)`},
		{"accept other board", "tag: y\naccept: {a: [updated]}\n", nil, `5:10: accept: board "a" is not among`},
		{"profiles other board", "boards: [a]\nprofiles:\n  c: block1\n", nil, `6:3: profiles: board "c" is not among`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := mustParse(t, head+"cuts: [none]\n"+c.src)
			got, err := j.SelectBoards(inv)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, config.ErrConfig) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	d := Demo()
	names, err := d.SelectBoards([]boards.Board{{Name: "sim-safe"}, {Name: "sim-naive"}})
	if err != nil || !reflect.DeepEqual(names, []string{"sim-safe", "sim-naive"}) {
		t.Fatalf("SelectBoards = %v, %v", names, err)
	}
	// Profiles come from the bench: sim-naive's entry says block1.
	if d.ProfileFor("sim-naive", boards.ProfileBlock1) != boards.ProfileBlock1 || d.ProfileFor("sim-safe", boards.ProfileResumable) != boards.ProfileResumable {
		t.Error("profiles")
	}
	if !d.Accepts("sim-naive", results.Bricked) || d.Accepts("sim-safe", results.Bricked) {
		t.Error("accept")
	}
	if !d.Chain || d.Image.Build == nil || d.Image.Build.Seq != 2 {
		t.Errorf("the demo is a chain from image seq 2: chain %v, image %+v", d.Chain, d.Image.Build)
	}
	cs, err := d.Cycles(16)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 20 {
		t.Fatalf("%d cycles, want 20", len(cs))
	}
	for i := range 16 {
		if cs[i].Kind != "after_block" || cs[i].Block() != int64(i) {
			t.Errorf("cycle %d = %+v", i, cs[i])
		}
	}
	for _, c := range cs[16:] {
		if c.Kind != "during_block" || !strings.HasPrefix(c.Desc, "random during_block ") || !strings.HasSuffix(c.Desc, " +300µs") {
			t.Errorf("random cycle = %+v", c)
		}
	}
	// examples/demo.yaml is the same job, written out.
	f, err := Load("../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fc, err := f.Cycles(16)
	if err != nil || !reflect.DeepEqual(descs(fc), descs(cs)) {
		t.Errorf("demo.yaml cycles differ: %v\n%q\n%q", err, descs(fc), descs(cs))
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"boards", f.Boards, d.Boards}, {"baseline: chain", f.Chain, d.Chain}, {"baseline", f.Baseline, d.Baseline}, {"image", *f.Image.Build, *d.Image.Build},
		{"profile", f.Profile, d.Profile}, {"block_size", f.BlockSize, d.BlockSize}, {"off_time", f.OffTime, d.OffTime},
		{"recovery_timeout", f.RecoveryTimeout, d.RecoveryTimeout}, {"accept", f.Accept, d.Accept}, {"repeat", f.Repeat, d.Repeat},
		{"seed", f.Seed, d.Seed}, {"parallel", f.Parallel, d.Parallel}, {"reflash", f.Reflash, d.Reflash}, {"missed_cut", f.MissedCut, d.MissedCut},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("examples/demo.yaml %s = %v, the built-in demo's %v", c.name, c.got, c.want)
		}
	}
}

func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) < 6 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			j, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			// Built images give the block count; every example expands.
			img := j.Image.Build
			if img == nil {
				t.Fatalf("example without a built image")
			}
			blocks := j.Blocks(img.Size)
			cs, err := j.Cycles(blocks)
			if err != nil || len(cs) == 0 {
				t.Fatalf("Cycles(%d) = %d cycles, %v", blocks, len(cs), err)
			}
			t.Logf("%s: %d boards, %d blocks, %d cycles", j.Name, len(j.Boards), blocks, len(cs))
		})
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("new.bin", "x")
	write("bench.yaml", "boards: [{name: a}]\n")
	ok := write("ok.yaml", "bench: bench.yaml\nbaseline: {build: {version: 1.0.0, seq: 1}}\nimage: {file: new.bin}\ncuts: [none]\n")
	j, err := Load(ok)
	if err != nil {
		t.Fatal(err)
	}
	if j.Image.File != filepath.Join(dir, "new.bin") || j.Bench != filepath.Join(dir, "bench.yaml") {
		t.Errorf("paths not resolved against the job file: %q %q", j.Image.File, j.Bench)
	}
	missing := write("missing.yaml", "baseline: {build: {version: 1.0.0, seq: 1}}\nimage: {file: nope.bin}\ncuts: [none]\n")
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), "missing.yaml:2:15: image file:") {
		t.Errorf("missing image: %v", err)
	}
	nobench := write("nobench.yaml", "bench: gone.yaml\nbaseline: {build: {version: 1.0.0, seq: 1}}\nimage: {file: new.bin}\ncuts: [none]\n")
	if _, err := Load(nobench); err == nil || !strings.Contains(err.Error(), "nobench.yaml:1:8: bench:") {
		t.Errorf("missing bench: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "absent.yaml")); !errors.Is(err, config.ErrConfig) {
		t.Errorf("absent job file: %v", err)
	}
}

var wantRE = regexp.MustCompile(`^# (want|want-cycles (\d+)) (\d+):(\d+) ?(.*)$`)

// TestBadJobs runs the corpus of broken job files: the first line of each
// states the error position and a substring of its message.
func TestBadJobs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("corpus: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			m := wantRE.FindStringSubmatch(first)
			if m == nil {
				t.Fatalf("first line %q: want '# want L:C substring' or '# want-cycles N L:C substring'", first)
			}
			j, err := Load(f)
			if m[2] != "" {
				if err != nil {
					t.Fatalf("Load: %v (the error should come from Cycles)", err)
				}
				n, _ := strconv.Atoi(m[2])
				_, err = j.Cycles(uint32(n))
			}
			if err == nil {
				t.Fatal("no error")
			}
			var ce *config.Error
			if !errors.As(err, &ce) || !errors.Is(err, config.ErrConfig) {
				t.Fatalf("%T is not a *config.Error", err)
			}
			line, _ := strconv.Atoi(m[3])
			col, _ := strconv.Atoi(m[4])
			if ce.File != f || ce.Line != line || ce.Column != col || !strings.Contains(ce.Msg, m[5]) {
				t.Errorf("got  %v\nwant %s:%d:%d: ...%s...", err, f, line, col, m[5])
			}
		})
	}
}

// TestDocExamples parses every YAML example of docs/jobs.md (completed
// with the required keys when it shows only a part) and checks the
// expansion table the document shows.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/jobs.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 10 {
		t.Fatalf("found %d yaml blocks", len(blocks))
	}
	for i, b := range blocks {
		src := string(b[1])
		if strings.HasPrefix(src, "boards:\n  - name:") {
			continue // a bench file
		}
		if !strings.Contains(src, "baseline:") {
			src += "baseline: {build: {version: 1.0.0, seq: 1}}\n"
		}
		if !strings.Contains(src, "image:") {
			src += "image: {build: {version: 2.0.0, seq: 2}}\n"
		}
		if !strings.Contains(src, "cuts:") {
			src += "cuts: [none]\n"
		}
		j, err := Parse("doc.yaml", []byte(src))
		if err != nil {
			t.Errorf("block %d: %v\n%s", i, err, src)
			continue
		}
		if _, err := j.Cycles(64); err != nil {
			t.Errorf("block %d: Cycles: %v", i, err)
		}
	}
	j := mustParse(t, head+`cuts:
  - none
  - after_block: {from: 0, to: last, step: 8}
  - random: {count: 2, kind: during_block, delay: 1ms}
repeat: 2
`)
	cs, err := j.Cycles(32)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"none", "after_block 0", "after_block 8", "after_block 16", "after_block 24",
		"random during_block 18 +1ms", "random during_block 5 +1ms",
		"none", "after_block 0", "after_block 8", "after_block 16", "after_block 24",
		"random during_block 8 +1ms", "random during_block 26 +1ms"}
	if got := descs(cs); !reflect.DeepEqual(got, want) {
		t.Errorf("expansion changed (update docs/jobs.md):\n got %q\nwant %q", got, want)
	}
	for i, w := range want {
		row := regexp.MustCompile(`(?m)\b` + strconv.Itoa(i) + `  ` + regexp.QuoteMeta(w) + `(\s|$)`)
		if !row.Match(doc) {
			t.Errorf("docs/jobs.md does not show cycle %d as %q", i, w)
		}
	}
}

// TestJobLink: the job's link applies to every board, links: to one;
// a links entry for a board the job does not run is refused at its line.
func TestJobLink(t *testing.T) {
	j := mustParse(t, head+`cuts: [none]
link: {profile: 6lowpan-good, seed: 9}
links:
  b: none
  c: {loss: 2.5%, delay: 1s, jitter: 0.5s, rate: 5.47kbit}
`)
	if l := j.LinkFor("a"); l == nil || l.Profile != "6lowpan-good" || l.Seed != 9 || l.Loss != 100 {
		t.Errorf("a: %+v", l)
	}
	if l := j.LinkFor("b"); l == nil || !l.Off {
		t.Errorf("b: %+v", l)
	}
	if l := j.LinkFor("c"); l == nil || l.Loss != 250 || l.Delay != time.Second || l.Jitter != 500*time.Millisecond || l.Rate != 5470 {
		t.Errorf("c: %+v", l)
	}
	if _, err := j.SelectBoards([]boards.Board{{Name: "a"}, {Name: "b"}, {Name: "c"}}); err != nil {
		t.Fatal(err)
	}
	_, err := j.SelectBoards([]boards.Board{{Name: "a"}, {Name: "b"}})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Line != 7 || ce.Column != 3 || !strings.Contains(ce.Msg, `links: board "c" is not among the job's boards`) {
		t.Errorf("links for a board not in the job: %v", err)
	}
	if l := mustParse(t, head+"cuts: [none]\n").LinkFor("a"); l != nil {
		t.Errorf("no link: %+v", l)
	}
}
