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

	"periph.io/x/conn/v3/gpio"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
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
	want := &Job{
		File:            "dir/test.yaml",
		Name:            "test",
		Baseline:        ImageSpec{Build: &BuildSpec{Version: "1.0.0", Seq: 1, Size: 64 << 10, Seed: 1}},
		Image:           ImageSpec{Build: &BuildSpec{Version: "2.0.0", Seq: 2, Size: 16 << 10, Seed: 1}},
		Profile:         "resumable",
		BlockSize:       1024,
		Path:            "/fw",
		Cuts:            []CutPlan{{Kind: KindNone}},
		OffTime:         100 * time.Millisecond,
		RecoveryTimeout: 30 * time.Second,
		Accept:          map[string][]results.Outcome{"*": {results.Updated}},
		Repeat:          1,
		Seed:            1,
		Parallel:        true,
		Reflash:         true,
	}
	if got := normalize(j); !reflect.DeepEqual(got, normalize(want)) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if j.SZX() != 6 {
		t.Errorf("SZX = %d, want 6", j.SZX())
	}
	if !j.Accepts("anything", results.Updated) || j.Accepts("anything", results.Bricked) {
		t.Errorf("default accept: want updated only")
	}
}

// normalize drops positions so decoded jobs compare with built ones.
func normalize(j *Job) *Job {
	c := *j
	c.benchPos, c.tagPos, c.cutsPos = pos{}, pos{}, pos{}
	c.boardsPos, c.acceptPos, c.profilePos = nil, nil, nil
	c.Baseline.pos, c.Image.pos = pos{}, pos{}
	c.Cuts = nil
	for _, cp := range j.Cuts {
		cp.Line, cp.Column = 0, 0
		cp.Blocks.fromPos, cp.Blocks.toPos = pos{}, pos{}
		cp.Nth.fromPos, cp.Nth.toPos = pos{}, pos{}
		cp.Times.pos, cp.Delay.pos = pos{}, pos{}
		if cp.Random != nil {
			r := *cp.Random
			r.Window.fromPos, r.Window.toPos = pos{}, pos{}
			r.Times.pos, r.Delay.pos = pos{}, pos{}
			cp.Random = &r
		}
		c.Cuts = append(c.Cuts, cp)
	}
	return &c
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
		{"profile", j.ProfileFor("other"), bench.Block1},
		{"profiles", j.ProfileFor("b1"), bench.Resumable},
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
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestParseCutForms(t *testing.T) {
	cases := []struct {
		name string
		cut  string
		want CutPlan
	}{
		{"none scalar", `none`, CutPlan{Kind: KindNone}},
		{"none empty map", `none: {}`, CutPlan{Kind: KindNone}},
		{"none null", `none:`, CutPlan{Kind: KindNone}},
		{"after_block N", `after_block: 7`, CutPlan{Kind: KindAfterBlock, Blocks: IntRange{From: 7, To: 7, Step: 1}}},
		{"after_block last", `after_block: last`, CutPlan{Kind: KindAfterBlock, Blocks: IntRange{Step: 1, FromLast: true, ToLast: true}}},
		{"after_block sweep", `after_block: {from: 2, to: last, step: 3}`, CutPlan{Kind: KindAfterBlock, Blocks: IntRange{From: 2, Step: 3, ToLast: true}}},
		{"after_block all", `after_block: {}`, CutPlan{Kind: KindAfterBlock, Blocks: IntRange{Step: 1, ToLast: true}}},
		{"during_block", `during_block: {block: 3, delay: 2ms}`,
			CutPlan{Kind: KindDuringBlock, Blocks: IntRange{From: 3, To: 3, Step: 1}, Delay: DurRange{From: 2 * time.Millisecond, To: 2 * time.Millisecond}}},
		{"during_block sweeps", `during_block: {block: {from: 1, to: 4}, delay: {from: 0s, to: 1ms, step: 500us}}`,
			CutPlan{Kind: KindDuringBlock, Blocks: IntRange{From: 1, To: 4, Step: 1}, Delay: DurRange{To: time.Millisecond, Step: 500 * time.Microsecond}}},
		{"at_time", `at_time: 150ms`, CutPlan{Kind: KindAtTime, Times: DurRange{From: 150 * time.Millisecond, To: 150 * time.Millisecond}}},
		{"at_time sweep", `at_time: {from: 10ms, to: 30ms, step: 10ms}`,
			CutPlan{Kind: KindAtTime, Times: DurRange{From: 10 * time.Millisecond, To: 30 * time.Millisecond, Step: 10 * time.Millisecond}}},
		{"on_console", `on_console: {pattern: 'block \d+', delay: 1ms}`,
			CutPlan{Kind: KindOnConsole, Pattern: `block \d+`, Delay: DurRange{From: time.Millisecond, To: time.Millisecond}}},
		{"on_gpio defaults", `on_gpio: {pin: BUSY}`, CutPlan{Kind: KindOnGPIO, Pin: "BUSY", Edge: "rising", Nth: IntRange{From: 1, To: 1, Step: 1}}},
		{"on_gpio sweep", `on_gpio: {pin: gpiochip0:17, edge: both, nth: {from: 2, to: 8, step: 2}, delay: 20us}`,
			CutPlan{Kind: KindOnGPIO, Pin: "gpiochip0:17", Edge: "both", Nth: IntRange{From: 2, To: 8, Step: 2},
				Delay: DurRange{From: 20 * time.Microsecond, To: 20 * time.Microsecond}}},
		{"random blocks", `random: {count: 20, kind: during_block, window: {from: 1, to: last}, delay: 1ms, seed: 9}`,
			CutPlan{Kind: KindRandom, Random: &RandomPlan{Count: 20, Kind: KindDuringBlock, Window: IntRange{From: 1, Step: 1, ToLast: true},
				Delay: DurRange{From: time.Millisecond, To: time.Millisecond}, Seed: 9}}},
		{"random default window", `random: {count: 2, kind: after_block}`,
			CutPlan{Kind: KindRandom, Random: &RandomPlan{Count: 2, Kind: KindAfterBlock, Window: IntRange{Step: 1, ToLast: true}}}},
		{"random at_time", `random: {count: 5, kind: at_time, window: {from: 1ms, to: 9ms}}`,
			CutPlan{Kind: KindRandom, Random: &RandomPlan{Count: 5, Kind: KindAtTime, Times: DurRange{From: time.Millisecond, To: 9 * time.Millisecond}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := mustParse(t, head+"cuts:\n  - "+c.cut+"\n")
			got := normalize(j).Cuts
			if len(got) != 1 || !reflect.DeepEqual(got[0], c.want) {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
			if j.Cuts[0].Line != 4 || j.Cuts[0].Column != 5 {
				t.Errorf("entry at %d:%d, want 4:5", j.Cuts[0].Line, j.Cuts[0].Column)
			}
		})
	}
}

func TestAnchorsAndAliases(t *testing.T) {
	j := mustParse(t, `baseline: &b {build: {version: 1.0.0, seq: 1}}
image: *b
cuts:
  - &cut
    during_block: {block: 2, delay: 1ms}
  - *cut
`)
	if j.Image.Build == nil || j.Image.Build.Version != "1.0.0" {
		t.Errorf("alias image = %+v", j.Image)
	}
	cs, err := j.Cycles(4)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[1].Desc != "during_block 2 +1ms" {
		t.Errorf("cycles = %+v", cs)
	}
}

func descs(cs []CycleSpec) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Desc)
	}
	return out
}

func TestCycles(t *testing.T) {
	cases := []struct {
		name   string
		cuts   string
		extra  string
		blocks uint32
		want   []string
	}{
		{"none", "[none]", "", 4, []string{"none"}},
		{"after_block sweep", "[{after_block: {from: 0, to: last}}]", "", 4,
			[]string{"after_block 0", "after_block 1", "after_block 2", "after_block 3"}},
		{"step", "[{after_block: {from: 1, to: last, step: 2}}]", "", 6, []string{"after_block 1", "after_block 3", "after_block 5"}},
		{"last", "[{after_block: last}, {after_block: {from: last}}]", "", 9, []string{"after_block 8", "after_block 8"}},
		{"during sweep x delay", "[{during_block: {block: {from: 0, to: 1}, delay: {from: 1ms, to: 2ms, step: 1ms}}}]", "", 2,
			[]string{"during_block 0 +1ms", "during_block 0 +2ms", "during_block 1 +1ms", "during_block 1 +2ms"}},
		{"at_time", "[{at_time: {from: 0s, to: 20ms, step: 10ms}}]", "", 1, []string{"at_time 0s", "at_time 10ms", "at_time 20ms"}},
		{"on_console", `[{on_console: {pattern: "x", delay: {from: 0s, to: 1ms, step: 1ms}}}]`, "", 1,
			[]string{`on_console "x"`, `on_console "x" +1ms`}},
		{"on_gpio", "[{on_gpio: {pin: P, edge: falling, nth: {from: 1, to: 5, step: 2}, delay: 3us}}]", "", 1,
			[]string{"on_gpio P falling edge 1 +3µs", "on_gpio P falling edge 3 +3µs", "on_gpio P falling edge 5 +3µs"}},
		{"repeat", "[none, {after_block: 0}]", "repeat: 2\n", 1, []string{"none", "after_block 0", "none", "after_block 0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := mustParse(t, head+c.extra+"cuts: "+c.cuts+"\n")
			cs, err := j.Cycles(c.blocks)
			if err != nil {
				t.Fatal(err)
			}
			if got := descs(cs); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %q\nwant %q", got, c.want)
			}
			for i, cy := range cs {
				if cy.Index != i {
					t.Errorf("cycle %d has Index %d", i, cy.Index)
				}
			}
		})
	}
}

func TestCycleFields(t *testing.T) {
	j := mustParse(t, head+`repeat: 2
cuts:
  - none
  - on_gpio: {pin: BUSY, edge: both, nth: 4, delay: 2ms}
  - at_time: 5ms
  - during_block: {block: 1, delay: 1ms}
`)
	cs, err := j.Cycles(3)
	if err != nil {
		t.Fatal(err)
	}
	want := []CycleSpec{
		{Index: 0, Repeat: 0, Entry: 0, Kind: "none", Block: -1, Desc: "none"},
		{Index: 1, Repeat: 0, Entry: 1, Kind: "on_gpio", Block: -1, Pin: "BUSY", Edge: "both", Nth: 4, Delay: 2 * time.Millisecond, Desc: "on_gpio BUSY both edge 4 +2ms"},
		{Index: 2, Repeat: 0, Entry: 2, Kind: "at_time", Block: -1, At: 5 * time.Millisecond, Desc: "at_time 5ms"},
		{Index: 3, Repeat: 0, Entry: 3, Kind: "during_block", Block: 1, Delay: time.Millisecond, Desc: "during_block 1 +1ms"},
	}
	if !reflect.DeepEqual(cs[:4], want) {
		t.Errorf("got %+v\nwant %+v", cs[:4], want)
	}
	if len(cs) != 8 || cs[7].Repeat != 1 || cs[7].Entry != 3 || cs[7].Index != 7 {
		t.Errorf("second pass: %+v", cs[4:])
	}
	if cs[1].GPIOEdge() != gpio.BothEdges {
		t.Errorf("GPIOEdge = %v", cs[1].GPIOEdge())
	}
}

func TestRandomDeterministic(t *testing.T) {
	src := head + `repeat: 3
cuts:
  - random: {count: 50, kind: during_block, window: {from: 2, to: 9}, delay: {from: 1ms, to: 3ms}}
  - random: {count: 50, kind: at_time, window: {from: 10ms, to: 20ms}}
`
	a, err := mustParse(t, src).Cycles(16)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := mustParse(t, src).Cycles(16)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different cycles")
	}
	c, _ := mustParse(t, src+"seed: 2\n").Cycles(16)
	if reflect.DeepEqual(descs(a), descs(c)) {
		t.Error("another seed drew the same cycles")
	}
	if len(a) != 300 {
		t.Fatalf("%d cycles, want 300", len(a))
	}
	seen := map[int64]bool{}
	for _, cy := range a {
		if !cy.Random || !strings.HasPrefix(cy.Desc, "random ") {
			t.Errorf("cycle %d: %+v not marked random", cy.Index, cy)
		}
		switch cy.Kind {
		case KindDuringBlock:
			if cy.Block < 2 || cy.Block > 9 || cy.Delay < time.Millisecond || cy.Delay > 3*time.Millisecond || cy.Delay%time.Microsecond != 0 {
				t.Errorf("cycle %d out of window: %+v", cy.Index, cy)
			}
			seen[cy.Block] = true
		case KindAtTime:
			if cy.At < 10*time.Millisecond || cy.At > 20*time.Millisecond || cy.Block != -1 {
				t.Errorf("cycle %d out of window: %+v", cy.Index, cy)
			}
		default:
			t.Errorf("cycle %d: kind %s", cy.Index, cy.Kind)
		}
	}
	if len(seen) != 8 {
		t.Errorf("150 draws hit %d of 8 blocks", len(seen))
	}
	// Each pass draws fresh points.
	if reflect.DeepEqual(descs(a[:50]), descs(a[100:150])) {
		t.Error("second pass repeated the first pass's draws")
	}
}

// TestRandomEntriesIndependent: adding an entry does not change another
// entry's draws, so a plan can grow without invalidating old results.
func TestRandomEntriesIndependent(t *testing.T) {
	r := "  - random: {count: 10, kind: after_block}\n"
	a, err := mustParse(t, head+"cuts:\n"+r).Cycles(100)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mustParse(t, head+"cuts:\n"+r+"  - after_block: 3\n").Cycles(100)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(descs(a), descs(b[:10])) {
		t.Errorf("draws changed: %q vs %q", descs(a), descs(b[:10]))
	}
}

func TestCyclesErrors(t *testing.T) {
	j := mustParse(t, head+"cuts: [none]\n")
	if _, err := j.Cycles(0); !errors.Is(err, boards.ErrConfig) {
		t.Errorf("0 blocks: %v", err)
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
		{"unknown name", "boards: [a, zz]\n", nil, `4:13: board "zz" is not on the bench`},
		{"unknown tag", "tag: nope\n", nil, `4:6: no board of the bench has tag "nope"`},
		{"accept other board", "tag: y\naccept: {a: [updated]}\n", nil, `5:10: accept: board "a" is not among`},
		{"profiles other board", "boards: [a]\nprofiles:\n  c: block1\n", nil, `6:3: profiles: board "c" is not among`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := mustParse(t, head+"cuts: [none]\n"+c.src)
			got, err := j.SelectBoards(inv)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, boards.ErrConfig) {
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
	if d.ProfileFor("sim-naive") != bench.Block1 || d.ProfileFor("sim-safe") != bench.Resumable {
		t.Error("profiles")
	}
	if !d.Accepts("sim-naive", results.Bricked) || d.Accepts("sim-safe", results.Bricked) {
		t.Error("accept")
	}
	cs, err := d.Cycles(16)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 20 {
		t.Fatalf("%d cycles, want 20", len(cs))
	}
	for i := range 16 {
		if cs[i].Kind != KindAfterBlock || cs[i].Block != int64(i) {
			t.Errorf("cycle %d = %+v", i, cs[i])
		}
	}
	for _, c := range cs[16:] {
		if c.Kind != KindDuringBlock || !c.Random || c.Delay != time.Millisecond {
			t.Errorf("random cycle = %+v", c)
		}
	}
	// examples/demo.yaml is the same job, written out.
	f, err := Load("../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	nf, nd := normalize(f), normalize(d)
	nf.File = ""
	if !reflect.DeepEqual(nf, nd) {
		t.Errorf("examples/demo.yaml differs from Demo():\n%+v\n%+v", nf, nd)
	}
	fc, err := f.Cycles(16)
	if err != nil || !reflect.DeepEqual(fc, cs) {
		t.Errorf("demo.yaml cycles differ: %v", err)
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
	if _, err := Load(filepath.Join(dir, "absent.yaml")); !errors.Is(err, boards.ErrConfig) {
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
			if !errors.Is(err, boards.ErrConfig) {
				t.Errorf("%v does not match boards.ErrConfig", err)
			}
			var ce *boards.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("%T is not a *boards.ConfigError", err)
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
