package jobs

import (
	"errors"
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

func descs(cs []CycleSpec) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Desc)
	}
	return out
}

// TestParseCutForms: every written form of every kind, as the cycles it
// plans for a 16-block image, and the entry's position.
func TestParseCutForms(t *testing.T) {
	cases := []struct {
		name, cut string
		want      []string
	}{
		{"none scalar", `none`, []string{"none"}},
		{"none empty map", `none: {}`, []string{"none"}},
		{"none null", `none:`, []string{"none"}},
		{"after_block N", `after_block: 7`, []string{"after_block 7"}},
		{"after_block last", `after_block: last`, []string{"after_block 15"}},
		{"after_block sweep", `after_block: {from: 2, to: last, step: 5}`, []string{"after_block 2", "after_block 7", "after_block 12"}},
		{"after_block all", `after_block: {}`, nil},
		{"during_block", `during_block: {block: 3, delay: 2ms}`, []string{"during_block 3 +2ms"}},
		{"during_block sweeps", `during_block: {block: {from: 1, to: 2}, delay: {from: 0s, to: 1ms, step: 500us}}`,
			[]string{"during_block 1 +0s", "during_block 1 +500µs", "during_block 1 +1ms", "during_block 2 +0s", "during_block 2 +500µs", "during_block 2 +1ms"}},
		{"at_time", `at_time: 150ms`, []string{"at_time 150ms"}},
		{"at_time sweep", `at_time: {from: 10ms, to: 30ms, step: 10ms}`, []string{"at_time 10ms", "at_time 20ms", "at_time 30ms"}},
		{"on_console", `on_console: {pattern: 'block \d+', delay: 1ms}`, []string{`on_console "block \\d+" +1ms`}},
		{"on_gpio defaults", `on_gpio: {input: busy}`, []string{"on_gpio busy rising edge 1"}},
		{"on_gpio sweep", `on_gpio: {input: busy, edge: both, nth: {from: 2, to: 6, step: 2}, delay: 20us}`,
			[]string{"on_gpio busy both edge 2 +20µs", "on_gpio busy both edge 4 +20µs", "on_gpio busy both edge 6 +20µs"}},
		{"device_work", `device_work: 40%`, []string{"device_work 40%"}},
		{"device_work decimal", `device_work: 12.5%`, []string{"device_work 12.5%"}},
		{"device_work sweep", `device_work: {from: 90%, step: 2.5%}`, []string{"device_work 90%", "device_work 92.5%", "device_work 95%", "device_work 97.5%", "device_work 100%"}},
		{"device_work defaults", `device_work: {}`, []string{"device_work 0%", "device_work 10%", "device_work 20%", "device_work 30%", "device_work 40%", "device_work 50%", "device_work 60%", "device_work 70%", "device_work 80%", "device_work 90%", "device_work 100%"}},
		{"random at_time", `random: {count: 2, kind: at_time, window: {from: 1ms, to: 9ms}}`, nil},
		{"random device_work", `random: {count: 3, kind: device_work, window: {from: 99.8%}, seed: 5}`, []string{"random device_work 100%", "random device_work 99.9%", "random device_work 100%"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := mustParse(t, head+"cuts:\n  - "+c.cut+"\n")
			if j.Cuts[0].At != (config.Pos{Line: 4, Column: 5}) {
				t.Errorf("entry at %+v, want 4:5", j.Cuts[0].At)
			}
			cs, err := j.Cycles(16)
			if err != nil {
				t.Fatal(err)
			}
			if c.want == nil {
				return
			}
			if got := descs(cs); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %q\nwant %q", got, c.want)
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
		{"on_gpio", "[{on_gpio: {input: busy, edge: falling, nth: {from: 1, to: 5, step: 2}, delay: 3us}}]", "", 1,
			[]string{"on_gpio busy falling edge 1 +3µs", "on_gpio busy falling edge 3 +3µs", "on_gpio busy falling edge 5 +3µs"}},
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
  - on_gpio: {input: busy, edge: both, nth: 4, delay: 2ms}
  - at_time: 5ms
  - during_block: {block: 1, delay: 1ms}
`)
	cs, err := j.Cycles(3)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Index, Repeat, Entry int
		Kind                 string
		Block                int64
		Desc                 string
	}
	var got []row
	for _, c := range cs[:4] {
		got = append(got, row{c.Index, c.Repeat, c.Entry, c.Kind, c.Block(), c.Desc})
	}
	want := []row{
		{0, 0, 0, "none", -1, "none"},
		{1, 0, 1, "on_gpio", -1, "on_gpio busy both edge 4 +2ms"},
		{2, 0, 2, "at_time", -1, "at_time 5ms"},
		{3, 0, 3, "during_block", 1, "during_block 1 +1ms"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if len(cs) != 8 || cs[7].Repeat != 1 || cs[7].Entry != 3 || cs[7].Index != 7 {
		t.Errorf("second pass: %+v", cs[4:])
	}
}

var randomDuringRE = regexp.MustCompile(`^random during_block (\d+) \+(.+)$`)
var randomAtRE = regexp.MustCompile(`^random at_time (.+)$`)

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
	if !reflect.DeepEqual(descs(a), descs(b)) {
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
		switch cy.Kind {
		case "during_block":
			m := randomDuringRE.FindStringSubmatch(cy.Desc)
			if m == nil {
				t.Fatalf("cycle %d: %q", cy.Index, cy.Desc)
			}
			blk, _ := strconv.ParseInt(m[1], 10, 64)
			dl, _ := time.ParseDuration(m[2])
			if blk != cy.Block() || blk < 2 || blk > 9 || dl < time.Millisecond || dl > 3*time.Millisecond || dl%time.Microsecond != 0 {
				t.Errorf("cycle %d out of window: %s", cy.Index, cy.Desc)
			}
			seen[blk] = true
		case "at_time":
			m := randomAtRE.FindStringSubmatch(cy.Desc)
			if m == nil {
				t.Fatalf("cycle %d: %q", cy.Index, cy.Desc)
			}
			at, _ := time.ParseDuration(m[1])
			if at < 10*time.Millisecond || at > 20*time.Millisecond || cy.Block() != -1 {
				t.Errorf("cycle %d out of window: %s", cy.Index, cy.Desc)
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
	if _, err := j.Cycles(0); !errors.Is(err, config.ErrConfig) {
		t.Errorf("0 blocks: %v", err)
	}
}

func cutAt(block, inFlight int64, dev *results.DeviceCut) *results.CutInfo {
	return &results.CutInfo{LastAcked: block, InFlight: inFlight, Device: dev}
}

func dev(writing, acked int64) *results.DeviceCut {
	return &results.DeviceCut{Writing: writing, LastAcked: acked, Flash: "program"}
}

// TestLanding: each kind's rule for a cut that landed where planned, and
// the sentences for one that did not — from the bench's own view (last
// block acknowledged, block in flight) and from the device's record.
func TestLanding(t *testing.T) {
	cases := []struct {
		name, plan string
		cut        *results.CutInfo
		want       string // "" landed; else a substring of why not
	}{
		{"after_block landed", "after_block 5", cutAt(5, -1, nil), ""},
		{"after_block landed, device agrees", "after_block 5", cutAt(5, -1, dev(-1, 5)), ""},
		{"after_block never fired", "after_block 5", nil, "never fired: block 5 was never acknowledged"},
		{"after_block next block in flight", "after_block 5", cutAt(5, 6, nil), "block 5 acknowledged and block 6 in flight"},
		{"after_block device writing", "after_block 5", cutAt(5, -1, dev(6, 5)), "the device's record: writing block 6"},
		{"after_block device behind", "after_block 5", cutAt(5, -1, dev(-1, 4)), "last acknowledged 4"},
		{"after_block device restarted", "after_block 5", cutAt(5, -1, dev(-1, -1)), ""},
		{"during_block landed", "during_block 4 +1ms", cutAt(3, 4, nil), ""},
		{"during_block device writing it", "during_block 4 +1ms", cutAt(3, 4, dev(4, 3)), ""},
		{"during_block still on its way", "during_block 4 +1ms", cutAt(3, 4, dev(-1, 3)), ""},
		{"during_block never fired", "during_block 4 +1ms", nil, "never fired: the transfer was past block 4"},
		{"during_block a later block", "during_block 4 +1ms", cutAt(5, 6, nil), "block 6 in flight and block 5 acknowledged, planned during block 4"},
		{"during_block device had written it", "during_block 4 +1ms", cutAt(3, 4, dev(-1, 4)), "had already written and acknowledged block 4"},
		{"at_time fired", "at_time 5ms", cutAt(2, 3, nil), ""},
		{"at_time never fired", "at_time 5ms", nil, "the update was over before 5ms"},
		{"none", "none", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := mustParse(t, head+"cuts: ["+planYAML(c.plan)+"]\n")
			cs, err := j.Cycles(16)
			if err != nil {
				t.Fatal(err)
			}
			got := cs[0].Cut.Missed(c.cut)
			if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
				t.Errorf("Missed = %q, want %q", got, c.want)
			}
		})
	}
	on := mustParse(t, head+"cuts: [{on_console: {pattern: x}}, {on_gpio: {input: busy, nth: 3}}]\n")
	cs, _ := on.Cycles(4)
	if got := cs[0].Cut.Missed(nil); !strings.Contains(got, `no console line matched "x"`) {
		t.Errorf("on_console: %q", got)
	}
	if got := cs[1].Cut.Missed(nil); !strings.Contains(got, "input busy saw fewer than 3 rising edges") {
		t.Errorf("on_gpio: %q", got)
	}
	if got := cs[1].Cut.Missed(cutAt(1, 2, nil)); got != "" {
		t.Errorf("on_gpio fired: %q", got)
	}
}

func planYAML(p string) string {
	switch {
	case p == "none":
		return "none"
	case strings.HasPrefix(p, "after_block "):
		return "{after_block: " + strings.TrimPrefix(p, "after_block ") + "}"
	case strings.HasPrefix(p, "during_block "):
		f := strings.Fields(p)
		return "{during_block: {block: " + f[1] + ", delay: " + strings.TrimPrefix(f[2], "+") + "}}"
	}
	return "{at_time: " + strings.TrimPrefix(p, "at_time ") + "}"
}

func benchFile(t *testing.T, text string) *boards.Bench {
	t.Helper()
	b, err := boards.Parse("lab.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckBoard: a cut the board's wiring or timing cannot make is a
// configuration error at the cut's line, before anything is powered.
func TestCheckBoard(t *testing.T) {
	inv := benchFile(t, `boards:
  - name: wired
    console: {port: /dev/ttyACM0}
    inputs:
      busy: {driver: gpio, pin: GPIO27}
    flash: {program_time: 41us, write_unit: 4}
  - name: bare
  - name: instant
    flash: {program_time: 0s, write_unit: 4}
`)
	wired, _ := inv.Board("wired")
	bare, _ := inv.Board("bare")
	instant, _ := inv.Board("instant")
	cases := []struct {
		name, cuts string
		bd         *boards.Board
		want       string
		land       bool
	}{
		{"console present", "[{on_console: {pattern: x}}]", wired, "", false},
		{"no console", "[{on_console: {pattern: x}}]", bare, `3:9: cuts[0].on_console: board bare has no console in lab.yaml: a console cut needs one`, false},
		{"input present", "[{on_gpio: {input: busy}}]", wired, "", false},
		{"no such input", "[{on_gpio: {input: ready}}]", wired, `3:26: cuts[0].on_gpio: board wired has no trigger input "ready" in lab.yaml (its inputs: [busy])`, false},
		{"no inputs", "[{on_gpio: {input: busy}}]", bare, `(its inputs: none)`, false},
		// 1024-byte blocks at 41 µs per 4 bytes: 10.496 ms each.
		{"delay lands", "[{during_block: {block: 1, delay: 10ms}}]", wired, "", false},
		{"delay too long", "[{during_block: {block: 1, delay: 11ms}}]", wired,
			"3:41: cuts[0].during_block.delay 11ms cannot land during a block on board wired: it programs a 1024-byte block in 10.496ms", true},
		{"sweep reaching too far", "[{during_block: {block: 1, delay: {from: 1ms, to: 20ms, step: 1ms}}}]", wired, "cannot land", true},
		{"random too far", "[{random: {count: 2, kind: during_block, delay: {from: 0s, to: 12ms}}}]", wired, "cuts[0].random.delay 12ms cannot land", true},
		{"instant flash", "[{during_block: {block: 1, delay: 1ms}}]", instant, "it programs a 1024-byte block in 0s", true},
		{"instant flash, no delay", "[{during_block: {block: 1, delay: 0s}}]", instant, "", false},
		{"timing unknown", "[{during_block: {block: 1, delay: 5s}}]", bare, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j, err := Parse("job.yaml", []byte(head+"cuts: "+c.cuts+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			err = j.CheckBoard(c.bd)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, config.ErrConfig) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if errors.Is(err, ErrCannotLand) != c.land {
				t.Errorf("ErrCannotLand: %v, want %v", errors.Is(err, ErrCannotLand), c.land)
			}
		})
	}
}
