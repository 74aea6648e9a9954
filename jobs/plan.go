// Package jobs holds job plans — which boards, which images, where to cut
// power and what outcome counts as success — and runs them.
//
// A plan is a YAML file (see docs/jobs.md). Decoding is strict and happens
// before anything is powered: an unknown key, a wrong type or a bad value
// is a *boards.ConfigError naming the file, line and column, which matches
// boards.ErrConfig with errors.Is. Cut entries keep the positions of their
// nodes, so a cut point that turns out to lie past the image's last block —
// known only once the image is built or read — is reported at its line by
// Cycles.
package jobs

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"periph.io/x/conn/v3/gpio"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/results"
)

// Duration is a time.Duration; in YAML it is written as 100ms or 1.5s.
type Duration = time.Duration

// Defaults and limits of a job plan.
const (
	DefaultBlockSize       = 1024
	DefaultPath            = "/fw"
	DefaultOffTime         = 100 * time.Millisecond
	DefaultRecoveryTimeout = 30 * time.Second
	DefaultBuildSize       = 64 << 10

	MaxOffTime         = time.Minute
	MaxRecoveryTimeout = time.Hour
	MaxDelay           = 10 * time.Second
	MaxAtTime          = time.Hour
	MaxRepeat          = 100000
	MaxRandomCount     = 100000
	// MaxCycles bounds the cycles one job plans per board, so a typo in
	// a sweep cannot exhaust memory.
	MaxCycles = 1000000

	minBuildSize = 512 // a 256-byte image header plus some payload
	maxBuildSize = 64 << 20
)

// Cut kinds, as written in a plan and in CycleSpec.Kind.
const (
	KindNone        = "none"
	KindAfterBlock  = "after_block"
	KindDuringBlock = "during_block"
	KindAtTime      = "at_time"
	KindOnConsole   = "on_console"
	KindOnGPIO      = "on_gpio"
	KindRandom      = "random" // only in CutPlan.Kind
)

// DemoFile is the name the built-in demo job carries in errors and
// reports.
const DemoFile = "(built-in demo)"

// Job is a decoded, validated job plan. Paths (Bench, image files) are
// resolved against the job file's directory.
type Job struct {
	File  string // the job file; "" for the built-in demo
	Name  string // default: the file's base name without extension
	Bench string // bench file; "" = the built-in simulated bench
	// Boards names the boards; Tag selects the bench's boards with that
	// tag. At most one is set; neither means every board of the bench.
	Boards   []string
	Tag      string
	Baseline ImageSpec
	Image    ImageSpec // the update
	// Profile is the default update profile ("resumable" or "block1");
	// Profiles overrides it per board.
	Profile   string
	Profiles  map[string]string
	BlockSize int    // 16..1024, a power of two
	Path      string // block1 upload path
	Cuts      []CutPlan
	OffTime   Duration
	// RecoveryTimeout bounds each wait for the device after power-on.
	RecoveryTimeout Duration
	// Accept maps a board name, or "*" for any other board, to the
	// outcomes that pass.
	Accept   map[string][]results.Outcome
	Repeat   int    // passes over the whole cut list
	Seed     uint64 // for random cuts
	Parallel bool   // boards run in parallel
	Reflash  bool   // a bricked board is reflashed over its probe

	benchPos   pos
	boardsPos  []pos
	tagPos     pos
	cutsPos    pos
	acceptPos  map[string]pos
	profilePos map[string]pos
}

// ImageSpec is an image: a file, or one built on the fly (sim boards and
// any board that trusts the development key). Exactly one is set.
type ImageSpec struct {
	File  string // resolved path
	Build *BuildSpec
	pos   pos
}

// BuildSpec describes an image built with boards/sim/image.Build.
type BuildSpec struct {
	Version string
	Seq     uint32
	Size    int // bytes, header included
	Seed    int64
}

// CutPlan is one entry of a job's cut list; each expands into one or more
// cycles (see Cycles).
type CutPlan struct {
	Kind    string   // one of the Kind constants
	Blocks  IntRange // after_block, during_block
	Times   DurRange // at_time
	Delay   DurRange // during_block, on_console, on_gpio
	Pattern string   // on_console: a regexp
	Pin     string   // on_gpio
	Edge    string   // on_gpio: rising, falling or both
	Nth     IntRange // on_gpio: which edge, from 1
	Random  *RandomPlan
	// Line and Column locate the entry in the job file.
	Line, Column int
}

// RandomPlan draws Count cut points of one kind, uniformly and with
// replacement, from a window.
type RandomPlan struct {
	Count  int
	Kind   string   // after_block, during_block or at_time
	Window IntRange // block kinds; Step unused
	Times  DurRange // at_time; Step unused
	Delay  DurRange // during_block: drawn from [From, To]
	Seed   uint64   // 0: derived from the job's seed
}

// IntRange is an inclusive sweep over integers; a single value has
// From == To and Step 1. FromLast and ToLast stand for the image's last
// block ("last" in YAML).
type IntRange struct {
	From, To, Step   int64
	FromLast, ToLast bool
	fromPos, toPos   pos
}

// DurRange is an inclusive sweep over durations; a single value has
// From == To and Step 0.
type DurRange struct {
	From, To, Step Duration
	pos            pos
}

// CycleSpec is one planned cycle: the cut to make, fully resolved.
type CycleSpec struct {
	Index  int    // position in the list, from 0
	Repeat int    // pass over the cut list, from 0
	Entry  int    // index into Job.Cuts
	Kind   string // none, after_block, during_block, at_time, on_console, on_gpio
	Random bool   // drawn by a random entry
	// Block is the block of after_block and during_block, -1 otherwise.
	Block   int64
	Delay   Duration // during_block, on_console, on_gpio
	At      Duration // at_time
	Pattern string   // on_console
	Pin     string   // on_gpio
	Edge    string   // on_gpio
	Nth     int      // on_gpio, from 1
	Desc    string   // "after_block 17", "random during_block 3 +1ms"
}

// GPIOEdge maps Edge to periph's edge type.
func (c CycleSpec) GPIOEdge() gpio.Edge {
	switch c.Edge {
	case "falling":
		return gpio.FallingEdge
	case "both":
		return gpio.BothEdges
	}
	return gpio.RisingEdge
}

type pos struct{ line, col int }

// Load reads, decodes and validates a job file, and checks that the files
// it names (bench file, image files) exist. Whether an image fits a
// board's flash is checked by the executor, which knows the board.
func Load(path string) (*Job, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &boards.ConfigError{File: path, Msg: fmt.Sprintf("cannot read job file: %v", err)}
	}
	j, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if j.Bench != "" {
		if err := statFile(j.Bench); err != nil {
			return nil, j.errAt(j.benchPos, "bench: %v", err)
		}
	}
	for _, im := range []*ImageSpec{&j.Baseline, &j.Image} {
		if im.File != "" {
			if err := statFile(im.File); err != nil {
				return nil, j.errAt(im.pos, "image file: %v", err)
			}
		}
	}
	return j, nil
}

func statFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", p)
	}
	return nil
}

// Parse decodes and validates job file contents; name is used in errors
// and relative paths are resolved against its directory. Files are not
// opened.
func Parse(name string, data []byte) (*Job, error) {
	if err := boards.CheckUTF8(name, data); err != nil {
		return nil, err
	}
	d := &decoder{file: name, anchors: map[string]ast.Node{}}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, d.yamlError(err)
	}
	if len(f.Docs) > 1 {
		if n := f.Docs[1].Body; n != nil {
			return nil, d.errf(n, "more than one YAML document: a job file holds one")
		}
	}
	var body ast.Node
	if len(f.Docs) == 1 {
		body = f.Docs[0].Body
	}
	if _, ok := body.(*ast.CommentGroupNode); ok {
		body = nil
	}
	if body == nil {
		return nil, &boards.ConfigError{File: name, Line: 1, Column: 1, Msg: "empty job file: want at least baseline:, image: and cuts:"}
	}
	d.collectAnchors(body, 0)
	j := &Job{File: name}
	if err := d.job(j, body); err != nil {
		return nil, err
	}
	return j, nil
}

// decoder walks the YAML syntax tree itself rather than going through
// reflection: cut entries have several shapes (a number, "last", a sweep)
// and every value keeps its node's position for later errors.
type decoder struct {
	file    string
	anchors map[string]ast.Node
}

func (d *decoder) yamlError(err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) {
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return &boards.ConfigError{File: d.file, Line: tk.Position.Line, Column: tk.Position.Column, Msg: ye.GetMessage()}
		}
		return &boards.ConfigError{File: d.file, Msg: ye.GetMessage()}
	}
	return &boards.ConfigError{File: d.file, Msg: err.Error()}
}

func nodePos(n ast.Node) pos {
	if n == nil {
		return pos{}
	}
	if v := reflect.ValueOf(n); v.Kind() == reflect.Pointer && v.IsNil() {
		return pos{}
	}
	if mv, ok := n.(*ast.MappingValueNode); ok && mv.Key != nil {
		return nodePos(mv.Key)
	}
	if mn, ok := n.(*ast.MappingNode); ok && !mn.IsFlowStyle && len(mn.Values) > 0 {
		// A block mapping's own token is its first colon.
		return nodePos(mn.Values[0])
	}
	if _, ok := n.(*ast.DocumentNode); ok {
		return pos{}
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return pos{}
	}
	return pos{tk.Position.Line, tk.Position.Column}
}

func (d *decoder) errf(n ast.Node, format string, a ...any) error {
	p := nodePos(n)
	return &boards.ConfigError{File: d.file, Line: p.line, Column: p.col, Msg: fmt.Sprintf(format, a...)}
}

func (j *Job) errAt(p pos, format string, a ...any) error {
	f := j.File
	if f == "" {
		f = DemoFile
	}
	return &boards.ConfigError{File: f, Line: p.line, Column: p.col, Msg: fmt.Sprintf(format, a...)}
}

// maxDepth bounds recursion over hostile input; a job is a few levels
// deep.
const maxDepth = 64

func (d *decoder) collectAnchors(n ast.Node, depth int) {
	if n == nil || depth > maxDepth {
		return
	}
	switch v := n.(type) {
	case *ast.AnchorNode:
		if v.Name != nil {
			if tk := v.Name.GetToken(); tk != nil {
				d.anchors[tk.Value] = v.Value
			}
		}
		d.collectAnchors(v.Value, depth+1)
	case *ast.TagNode:
		d.collectAnchors(v.Value, depth+1)
	case *ast.MappingNode:
		for _, mv := range v.Values {
			d.collectAnchors(mv, depth+1)
		}
	case *ast.MappingValueNode:
		d.collectAnchors(v.Key, depth+1)
		d.collectAnchors(v.Value, depth+1)
	case *ast.SequenceNode:
		for _, e := range v.Values {
			d.collectAnchors(e, depth+1)
		}
	}
}

// resolve follows anchors, aliases and tags to the value node; nil means
// null.
func (d *decoder) resolve(n ast.Node) (ast.Node, error) {
	orig := n
	for range maxDepth {
		switch v := n.(type) {
		case nil:
			return nil, nil
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.AliasNode:
			name := ""
			if v.Value != nil {
				if tk := v.Value.GetToken(); tk != nil {
					name = tk.Value
				}
			}
			t, ok := d.anchors[name]
			if !ok {
				return nil, d.errf(v, "unknown alias *%s", name)
			}
			n = t
		case *ast.NullNode:
			return nil, nil
		default:
			// A typed nil from the parser counts as null.
			if v := reflect.ValueOf(n); v.Kind() == reflect.Pointer && v.IsNil() {
				return nil, nil
			}
			return n, nil
		}
	}
	return nil, d.errf(orig, "aliases nest too deeply")
}

func kindName(n ast.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Type() {
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.StringType, ast.LiteralType:
		return "a string"
	case ast.IntegerType:
		return "an integer"
	case ast.FloatType, ast.InfinityType, ast.NanType:
		return "a number"
	case ast.BoolType:
		return "a boolean"
	}
	return "a " + n.Type().YAMLName()
}

// field is one key of a mapping.
type field struct {
	key, val ast.Node
}

// fields reads a mapping whose keys must be among known, in document
// order; unknown and duplicate keys are errors at the key.
func (d *decoder) fields(n ast.Node, what string, known ...string) (map[string]field, error) {
	orig := n
	n, err := d.resolve(n)
	if err != nil {
		return nil, err
	}
	mn, ok := n.(ast.MapNode)
	if !ok {
		at := n
		if at == nil {
			at = orig
		}
		return nil, d.errf(at, "%s: want a mapping, got %s", what, kindName(n))
	}
	out := map[string]field{}
	it := mn.MapRange()
	for it.Next() {
		kv := it.KeyValue()
		k := kv.Key
		if k == nil {
			return nil, d.errf(n, "%s: a key is missing", what)
		}
		if k.IsMergeKey() {
			return nil, d.errf(k, "%s: merge keys (<<) are not supported", what)
		}
		kr, err := d.resolve(k)
		if err != nil {
			return nil, err
		}
		name, ok := scalarText(kr)
		if !ok {
			return nil, d.errf(k, "%s: keys must be strings", what)
		}
		if !contains(known, name) {
			return nil, d.errf(k, "%s: unknown key %q (known: %s)", what, name, strings.Join(known, ", "))
		}
		if _, dup := out[name]; dup {
			return nil, d.errf(k, "%s: duplicate key %q", what, name)
		}
		out[name] = field{key: k, val: kv.Value}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// scalarText is the text of a scalar as written.
func scalarText(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		if v.Value == nil {
			return "", true
		}
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		tk := n.GetToken()
		if tk == nil {
			return "", false
		}
		return tk.Value, true
	}
	return "", false
}

// str reads a string; numbers and booleans count as their text, so that
// version: 2.0 means "2.0".
func (d *decoder) str(n ast.Node, what string) (string, error) {
	r, err := d.resolve(n)
	if err != nil {
		return "", err
	}
	s, ok := scalarText(r)
	if !ok || r == nil {
		return "", d.errf(n, "%s: want a string, got %s", what, kindName(r))
	}
	return s, nil
}

func (d *decoder) integer(n ast.Node, what string) (int64, error) {
	r, err := d.resolve(n)
	if err != nil {
		return 0, err
	}
	in, ok := r.(*ast.IntegerNode)
	if !ok {
		return 0, d.errf(n, "%s: want an integer, got %s", what, kindName(r))
	}
	switch v := in.Value.(type) {
	case int64:
		return v, nil
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), nil
		}
	}
	return 0, d.errf(n, "%s: integer out of range", what)
}

func (d *decoder) uint64(n ast.Node, what string) (uint64, error) {
	r, err := d.resolve(n)
	if err != nil {
		return 0, err
	}
	in, ok := r.(*ast.IntegerNode)
	if !ok {
		return 0, d.errf(n, "%s: want an integer, got %s", what, kindName(r))
	}
	switch v := in.Value.(type) {
	case int64:
		if v >= 0 {
			return uint64(v), nil
		}
	case uint64:
		return v, nil
	}
	return 0, d.errf(n, "%s: want a non-negative integer", what)
}

// intIn reads an integer within [lo, hi].
func (d *decoder) intIn(n ast.Node, what string, lo, hi int64) (int64, error) {
	v, err := d.integer(n, what)
	if err != nil {
		return 0, err
	}
	if v < lo || v > hi {
		return 0, d.errf(n, "%s %d: want %d to %d", what, v, lo, hi)
	}
	return v, nil
}

func (d *decoder) boolean(n ast.Node, what string) (bool, error) {
	r, err := d.resolve(n)
	if err != nil {
		return false, err
	}
	b, ok := r.(*ast.BoolNode)
	if !ok {
		return false, d.errf(n, "%s: want true or false, got %s", what, kindName(r))
	}
	return b.Value, nil
}

// duration reads a non-negative duration of at most limit. A bare 0 is
// allowed; other numbers need a unit, since "5" could mean anything.
func (d *decoder) duration(n ast.Node, what string, limit time.Duration) (time.Duration, error) {
	r, err := d.resolve(n)
	if err != nil {
		return 0, err
	}
	var v time.Duration
	switch t := r.(type) {
	case *ast.IntegerNode:
		if !isZero(t.Value) {
			return 0, d.errf(n, "%s: %s needs a unit, e.g. %sms", what, t.GetToken().Value, t.GetToken().Value)
		}
	case *ast.StringNode:
		v, err = time.ParseDuration(t.Value)
		if err != nil {
			return 0, d.errf(n, "%s: %q is not a duration (want e.g. 20ms or 1.5s)", what, t.Value)
		}
	default:
		return 0, d.errf(n, "%s: want a duration such as 20ms, got %s", what, kindName(r))
	}
	if v < 0 {
		return 0, d.errf(n, "%s: %v is negative", what, v)
	}
	if v > limit {
		return 0, d.errf(n, "%s: %v is more than %v", what, v, limit)
	}
	return v, nil
}

func isZero(v any) bool {
	switch x := v.(type) {
	case int64:
		return x == 0
	case uint64:
		return x == 0
	}
	return false
}

func (d *decoder) size(n ast.Node, what string) (int, error) {
	r, err := d.resolve(n)
	if err != nil {
		return 0, err
	}
	var v int64
	switch t := r.(type) {
	case *ast.IntegerNode:
		v, err = d.integer(r, what)
		if err != nil {
			return 0, err
		}
	case *ast.StringNode:
		s, err := boards.ParseSize(t.Value)
		if err != nil {
			return 0, d.errf(n, "%s: %v", what, err)
		}
		v = int64(s)
	default:
		return 0, d.errf(n, "%s: want a size such as 64KiB, got %s", what, kindName(r))
	}
	if v < minBuildSize || v > maxBuildSize {
		return 0, d.errf(n, "%s %d: want %d bytes to 64MiB", what, v, minBuildSize)
	}
	return int(v), nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

var topKeys = []string{"name", "bench", "boards", "tag", "baseline", "image", "profile", "profiles",
	"block_size", "path", "cuts", "off_time", "recovery_timeout", "accept", "repeat", "seed",
	"parallel", "reflash"}

func (d *decoder) job(j *Job, body ast.Node) error {
	fs, err := d.fields(body, "job", topKeys...)
	if err != nil {
		return err
	}
	dir := filepath.Dir(d.file)
	rel := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	j.Name = strings.TrimSuffix(filepath.Base(d.file), filepath.Ext(d.file))
	j.Profile = string(bench.Resumable)
	j.BlockSize = DefaultBlockSize
	j.OffTime = DefaultOffTime
	j.RecoveryTimeout = DefaultRecoveryTimeout
	j.Repeat = 1
	j.Seed = 1
	j.Parallel = true
	j.Reflash = true

	if f, ok := fs["name"]; ok {
		if j.Name, err = d.str(f.val, "name"); err != nil {
			return err
		}
		if strings.TrimSpace(j.Name) == "" || len(j.Name) > 128 {
			return d.errf(f.val, "name: want 1 to 128 characters")
		}
	}
	if f, ok := fs["bench"]; ok {
		b, err := d.str(f.val, "bench")
		if err != nil {
			return err
		}
		if b == "" {
			return d.errf(f.val, "bench: empty path (leave bench out for the built-in simulated bench)")
		}
		j.Bench, j.benchPos = rel(b), nodePos(f.val)
	}
	fb, hasBoards := fs["boards"]
	ft, hasTag := fs["tag"]
	if hasBoards && hasTag {
		return d.errf(ft.key, "tag: give boards or tag, not both")
	}
	if hasBoards {
		if err := d.boardList(j, fb.val); err != nil {
			return err
		}
	}
	if hasTag {
		if j.Tag, err = d.str(ft.val, "tag"); err != nil {
			return err
		}
		if j.Tag == "" {
			return d.errf(ft.val, "tag: empty")
		}
		j.tagPos = nodePos(ft.val)
	}
	for _, im := range []struct {
		key  string
		spec *ImageSpec
	}{{"baseline", &j.Baseline}, {"image", &j.Image}} {
		f, ok := fs[im.key]
		if !ok {
			return d.errf(body, "%s: required (the %s image: file: or build:)", im.key, map[string]string{"baseline": "baseline", "image": "update"}[im.key])
		}
		if err := d.image(im.spec, f.val, im.key, rel); err != nil {
			return err
		}
	}
	if f, ok := fs["profile"]; ok {
		if j.Profile, err = d.profile(f.val, "profile"); err != nil {
			return err
		}
	}
	if f, ok := fs["profiles"]; ok {
		pf, err := d.fieldsAny(f.val, "profiles")
		if err != nil {
			return err
		}
		j.Profiles = map[string]string{}
		j.profilePos = map[string]pos{}
		for _, e := range pf {
			if !nameRE.MatchString(e.name) {
				return d.errf(e.key, "profiles: %q is not a board name", e.name)
			}
			p, err := d.profile(e.val, "profiles."+e.name)
			if err != nil {
				return err
			}
			j.Profiles[e.name] = p
			j.profilePos[e.name] = nodePos(e.key)
		}
	}
	if f, ok := fs["block_size"]; ok {
		v, err := d.integer(f.val, "block_size")
		if err != nil {
			return err
		}
		if v < 16 || v > 1024 || v&(v-1) != 0 {
			return d.errf(f.val, "block_size %d: want a power of two from 16 to 1024", v)
		}
		j.BlockSize = int(v)
	}
	if f, ok := fs["path"]; ok {
		if j.Path, err = d.str(f.val, "path"); err != nil {
			return err
		}
		if !strings.HasPrefix(j.Path, "/") || strings.ContainsAny(j.Path, "?# ") {
			return d.errf(f.val, "path %q: want an absolute URI path such as /fw", j.Path)
		}
		if !j.usesBlock1() {
			return d.errf(f.key, "path: only the block1 profile uploads to a path, and no board uses it")
		}
	} else {
		j.Path = DefaultPath
	}
	if f, ok := fs["off_time"]; ok {
		if j.OffTime, err = d.duration(f.val, "off_time", MaxOffTime); err != nil {
			return err
		}
	}
	if f, ok := fs["recovery_timeout"]; ok {
		if j.RecoveryTimeout, err = d.duration(f.val, "recovery_timeout", MaxRecoveryTimeout); err != nil {
			return err
		}
		if j.RecoveryTimeout == 0 {
			return d.errf(f.val, "recovery_timeout: must be more than 0")
		}
	}
	if f, ok := fs["accept"]; ok {
		if err := d.accept(j, f.val); err != nil {
			return err
		}
	} else {
		j.Accept = map[string][]results.Outcome{"*": {results.Updated}}
	}
	if f, ok := fs["repeat"]; ok {
		v, err := d.intIn(f.val, "repeat", 1, MaxRepeat)
		if err != nil {
			return err
		}
		j.Repeat = int(v)
	}
	if f, ok := fs["seed"]; ok {
		if j.Seed, err = d.uint64(f.val, "seed"); err != nil {
			return err
		}
	}
	if f, ok := fs["parallel"]; ok {
		if j.Parallel, err = d.boolean(f.val, "parallel"); err != nil {
			return err
		}
	}
	if f, ok := fs["reflash"]; ok {
		if j.Reflash, err = d.boolean(f.val, "reflash"); err != nil {
			return err
		}
	}
	f, ok := fs["cuts"]
	if !ok {
		return d.errf(body, "cuts: required (a list; use [none] for plain updates)")
	}
	j.cutsPos = nodePos(f.key)
	if err := d.cuts(j, f.val); err != nil {
		return err
	}
	return nil
}

func (j *Job) usesBlock1() bool {
	if j.Profile == string(bench.Block1) {
		return true
	}
	for _, p := range j.Profiles {
		if p == string(bench.Block1) {
			return true
		}
	}
	return false
}

func (d *decoder) profile(n ast.Node, what string) (string, error) {
	p, err := d.str(n, what)
	if err != nil {
		return "", err
	}
	switch bench.Profile(p) {
	case bench.Resumable, bench.Block1:
		return p, nil
	}
	return "", d.errf(n, "%s %q: want resumable or block1", what, p)
}

// seq reads a list; a single value counts as a list of one when one is
// true.
func (d *decoder) seq(n ast.Node, what string, one bool) ([]ast.Node, error) {
	r, err := d.resolve(n)
	if err != nil {
		return nil, err
	}
	if sn, ok := r.(*ast.SequenceNode); ok {
		return sn.Values, nil
	}
	if one && r != nil {
		if _, ok := scalarText(r); ok {
			return []ast.Node{n}, nil
		}
	}
	return nil, d.errf(n, "%s: want a list, got %s", what, kindName(r))
}

func (d *decoder) boardList(j *Job, n ast.Node) error {
	items, err := d.seq(n, "boards", false)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return d.errf(n, "boards: empty list (leave boards out for every board of the bench)")
	}
	seen := map[string]bool{}
	for _, it := range items {
		s, err := d.str(it, "boards")
		if err != nil {
			return err
		}
		if !nameRE.MatchString(s) {
			return d.errf(it, "boards: %q is not a board name", s)
		}
		if seen[s] {
			return d.errf(it, "boards: %q listed twice", s)
		}
		seen[s] = true
		j.Boards = append(j.Boards, s)
		j.boardsPos = append(j.boardsPos, nodePos(it))
	}
	return nil
}

type namedField struct {
	name     string
	key, val ast.Node
}

// fieldsAny reads a mapping with free keys, in document order.
func (d *decoder) fieldsAny(n ast.Node, what string) ([]namedField, error) {
	r, err := d.resolve(n)
	if err != nil {
		return nil, err
	}
	mn, ok := r.(ast.MapNode)
	if !ok {
		return nil, d.errf(n, "%s: want a mapping, got %s", what, kindName(r))
	}
	var out []namedField
	seen := map[string]bool{}
	it := mn.MapRange()
	for it.Next() {
		kv := it.KeyValue()
		if kv.Key == nil {
			return nil, d.errf(r, "%s: a key is missing", what)
		}
		if kv.Key.IsMergeKey() {
			return nil, d.errf(kv.Key, "%s: merge keys (<<) are not supported", what)
		}
		kr, err := d.resolve(kv.Key)
		if err != nil {
			return nil, err
		}
		name, ok := scalarText(kr)
		if !ok {
			return nil, d.errf(kv.Key, "%s: keys must be strings", what)
		}
		if seen[name] {
			return nil, d.errf(kv.Key, "%s: duplicate key %q", what, name)
		}
		seen[name] = true
		out = append(out, namedField{name, kv.Key, kv.Value})
	}
	if len(out) == 0 {
		return nil, d.errf(n, "%s: empty mapping", what)
	}
	return out, nil
}

func (d *decoder) accept(j *Job, n ast.Node) error {
	fs, err := d.fieldsAny(n, "accept")
	if err != nil {
		return err
	}
	j.Accept = map[string][]results.Outcome{}
	j.acceptPos = map[string]pos{}
	for _, e := range fs {
		if e.name != "*" && !nameRE.MatchString(e.name) {
			return d.errf(e.key, "accept: %q is not a board name or \"*\"", e.name)
		}
		items, err := d.seq(e.val, "accept."+e.name, true)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return d.errf(e.val, "accept.%s: empty list: no outcome would pass", e.name)
		}
		var outs []results.Outcome
		for _, it := range items {
			s, err := d.str(it, "accept."+e.name)
			if err != nil {
				return err
			}
			o := results.Outcome(s)
			if !knownOutcome(o) {
				return d.errf(it, "accept.%s: unknown outcome %q (known: %s)", e.name, s, outcomeList())
			}
			if !contains(outcomeStrings(outs), s) {
				outs = append(outs, o)
			}
		}
		j.Accept[e.name] = outs
		j.acceptPos[e.name] = nodePos(e.key)
	}
	return nil
}

func knownOutcome(o results.Outcome) bool {
	for _, k := range results.Outcomes {
		if k == o {
			return true
		}
	}
	return false
}

func outcomeStrings(os []results.Outcome) []string {
	s := make([]string, len(os))
	for i, o := range os {
		s[i] = string(o)
	}
	return s
}

func outcomeList() string { return strings.Join(outcomeStrings(results.Outcomes), ", ") }

func (d *decoder) image(im *ImageSpec, n ast.Node, what string, rel func(string) string) error {
	fs, err := d.fields(n, what, "file", "build")
	if err != nil {
		return err
	}
	ff, hasFile := fs["file"]
	fb, hasBuild := fs["build"]
	switch {
	case hasFile && hasBuild:
		return d.errf(fb.key, "%s: give file or build, not both", what)
	case !hasFile && !hasBuild:
		return d.errf(n, "%s: want file: or build:", what)
	case hasFile:
		p, err := d.str(ff.val, what+".file")
		if err != nil {
			return err
		}
		if p == "" {
			return d.errf(ff.val, "%s.file: empty path", what)
		}
		im.File, im.pos = rel(p), nodePos(ff.val)
		return nil
	}
	w := what + ".build"
	bs, err := d.fields(fb.val, w, "version", "seq", "size", "seed")
	if err != nil {
		return err
	}
	b := &BuildSpec{Size: DefaultBuildSize, Seed: 1}
	f, ok := bs["version"]
	if !ok {
		return d.errf(fb.key, "%s: version is required", w)
	}
	if b.Version, err = d.str(f.val, w+".version"); err != nil {
		return err
	}
	if b.Version == "" || len(b.Version) > 32 || strings.ContainsRune(b.Version, 0) {
		return d.errf(f.val, "%s.version: want 1 to 32 bytes", w)
	}
	f, ok = bs["seq"]
	if !ok {
		return d.errf(fb.key, "%s: seq (the anti-rollback sequence) is required", w)
	}
	seq, err := d.intIn(f.val, w+".seq", 0, math.MaxUint32)
	if err != nil {
		return err
	}
	b.Seq = uint32(seq)
	if f, ok := bs["size"]; ok {
		if b.Size, err = d.size(f.val, w+".size"); err != nil {
			return err
		}
	}
	if f, ok := bs["seed"]; ok {
		if b.Seed, err = d.integer(f.val, w+".seed"); err != nil {
			return err
		}
	}
	im.Build, im.pos = b, nodePos(fb.key)
	return nil
}

func (d *decoder) cuts(j *Job, n ast.Node) error {
	items, err := d.seq(n, "cuts", false)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return d.errf(n, "cuts: empty list (use [none] for plain updates)")
	}
	for i, it := range items {
		c, err := d.cut(it, fmt.Sprintf("cuts[%d]", i))
		if err != nil {
			return err
		}
		j.Cuts = append(j.Cuts, c)
	}
	return nil
}

var cutKinds = []string{KindNone, KindAfterBlock, KindDuringBlock, KindAtTime, KindOnConsole, KindOnGPIO, KindRandom}

func (d *decoder) cut(n ast.Node, what string) (CutPlan, error) {
	p := nodePos(n)
	c := CutPlan{Line: p.line, Column: p.col}
	r, err := d.resolve(n)
	if err != nil {
		return c, err
	}
	if s, ok := r.(*ast.StringNode); ok && s.Value == KindNone {
		c.Kind = KindNone
		return c, nil
	}
	fs, err := d.fields(n, what, cutKinds...)
	if err != nil {
		return c, err
	}
	if len(fs) != 1 {
		return c, d.errf(n, "%s: want exactly one of %s per entry", what, strings.Join(cutKinds, ", "))
	}
	for k, f := range fs {
		c.Kind = k
		w := what + "." + k
		switch k {
		case KindNone:
			r, err := d.resolve(f.val)
			if err != nil {
				return c, err
			}
			if mn, ok := r.(*ast.MappingNode); r != nil && (!ok || len(mn.Values) != 0) { // null or {}
				return c, d.errf(f.val, "%s: takes no parameters (write none: {})", w)
			}
		case KindAfterBlock:
			c.Blocks, err = d.intRange(f.val, w, true, 0)
		case KindDuringBlock:
			err = d.duringBlock(&c, f, w)
		case KindAtTime:
			c.Times, err = d.durRange(f.val, w, MaxAtTime, false)
		case KindOnConsole:
			err = d.onConsole(&c, f, w)
		case KindOnGPIO:
			err = d.onGPIO(&c, f, w)
		case KindRandom:
			err = d.random(&c, f, w)
		}
	}
	return c, err
}

func (d *decoder) duringBlock(c *CutPlan, f field, w string) error {
	fs, err := d.fields(f.val, w, "block", "delay")
	if err != nil {
		return err
	}
	b, ok := fs["block"]
	if !ok {
		return d.errf(f.key, "%s: block is required", w)
	}
	if c.Blocks, err = d.intRange(b.val, w+".block", true, 0); err != nil {
		return err
	}
	if df, ok := fs["delay"]; ok {
		c.Delay, err = d.durRange(df.val, w+".delay", MaxDelay, false)
	}
	return err
}

func (d *decoder) onConsole(c *CutPlan, f field, w string) error {
	fs, err := d.fields(f.val, w, "pattern", "delay")
	if err != nil {
		return err
	}
	pf, ok := fs["pattern"]
	if !ok {
		return d.errf(f.key, "%s: pattern is required", w)
	}
	if c.Pattern, err = d.str(pf.val, w+".pattern"); err != nil {
		return err
	}
	if c.Pattern == "" {
		return d.errf(pf.val, "%s.pattern: empty (it would match every line)", w)
	}
	if _, err := regexp.Compile(c.Pattern); err != nil {
		return d.errf(pf.val, "%s.pattern: %v", w, err)
	}
	if df, ok := fs["delay"]; ok {
		c.Delay, err = d.durRange(df.val, w+".delay", MaxDelay, false)
	}
	return err
}

var pinRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$`)

func (d *decoder) onGPIO(c *CutPlan, f field, w string) error {
	fs, err := d.fields(f.val, w, "pin", "edge", "nth", "delay")
	if err != nil {
		return err
	}
	pf, ok := fs["pin"]
	if !ok {
		return d.errf(f.key, "%s: pin is required", w)
	}
	if c.Pin, err = d.str(pf.val, w+".pin"); err != nil {
		return err
	}
	if !pinRE.MatchString(c.Pin) {
		return d.errf(pf.val, "%s.pin %q: want a pin name such as GPIO17 or gpiochip0:17", w, c.Pin)
	}
	c.Edge = "rising"
	if ef, ok := fs["edge"]; ok {
		if c.Edge, err = d.str(ef.val, w+".edge"); err != nil {
			return err
		}
		switch c.Edge {
		case "rising", "falling", "both":
		default:
			return d.errf(ef.val, "%s.edge %q: want rising, falling or both", w, c.Edge)
		}
	}
	c.Nth = IntRange{From: 1, To: 1, Step: 1}
	if nf, ok := fs["nth"]; ok {
		if c.Nth, err = d.intRange(nf.val, w+".nth", false, 1); err != nil {
			return err
		}
	}
	if df, ok := fs["delay"]; ok {
		c.Delay, err = d.durRange(df.val, w+".delay", MaxDelay, false)
	}
	return err
}

func (d *decoder) random(c *CutPlan, f field, w string) error {
	fs, err := d.fields(f.val, w, "count", "kind", "window", "delay", "seed")
	if err != nil {
		return err
	}
	rp := &RandomPlan{}
	cf, ok := fs["count"]
	if !ok {
		return d.errf(f.key, "%s: count is required", w)
	}
	cnt, err := d.intIn(cf.val, w+".count", 1, MaxRandomCount)
	if err != nil {
		return err
	}
	rp.Count = int(cnt)
	kf, ok := fs["kind"]
	if !ok {
		return d.errf(f.key, "%s: kind is required (after_block, during_block or at_time)", w)
	}
	if rp.Kind, err = d.str(kf.val, w+".kind"); err != nil {
		return err
	}
	wf, hasWindow := fs["window"]
	switch rp.Kind {
	case KindAfterBlock, KindDuringBlock:
		rp.Window = IntRange{From: 0, ToLast: true, Step: 1}
		if hasWindow {
			if rp.Window, err = d.window(wf.val, w+".window"); err != nil {
				return err
			}
		}
	case KindAtTime:
		if !hasWindow {
			return d.errf(f.key, "%s: window {from, to} is required for at_time", w)
		}
		if rp.Times, err = d.durRange(wf.val, w+".window", MaxAtTime, true); err != nil {
			return err
		}
	default:
		return d.errf(kf.val, "%s.kind %q: want after_block, during_block or at_time", w, rp.Kind)
	}
	if df, ok := fs["delay"]; ok {
		if rp.Kind != KindDuringBlock {
			return d.errf(df.key, "%s: delay applies to kind during_block only", w)
		}
		if rp.Delay, err = d.durRange(df.val, w+".delay", MaxDelay, true); err != nil {
			return err
		}
	}
	if sf, ok := fs["seed"]; ok {
		if rp.Seed, err = d.uint64(sf.val, w+".seed"); err != nil {
			return err
		}
		if rp.Seed == 0 {
			return d.errf(sf.val, "%s.seed: 0 means \"derived from the job's seed\": leave it out or pick another", w)
		}
	}
	c.Random = rp
	return nil
}

// window reads a block window {from, to} for random cuts.
func (d *decoder) window(n ast.Node, w string) (IntRange, error) {
	fs, err := d.fields(n, w, "from", "to")
	if err != nil {
		return IntRange{}, err
	}
	r := IntRange{From: 0, ToLast: true, Step: 1}
	return r, d.rangeEnds(&r, fs, w, true)
}

// intRange reads N, "last" (when allowLast) or {from, to, step}. from
// defaults to lo; to defaults to last when allowLast and is required
// otherwise.
func (d *decoder) intRange(n ast.Node, w string, allowLast bool, lo int64) (IntRange, error) {
	rn, err := d.resolve(n)
	if err != nil {
		return IntRange{}, err
	}
	if _, isMap := rn.(ast.MapNode); !isMap {
		v, last, err := d.point(n, w, allowLast, lo)
		p := nodePos(n)
		return IntRange{From: v, To: v, Step: 1, FromLast: last, ToLast: last, fromPos: p, toPos: p}, err
	}
	fs, err := d.fields(n, w, "from", "to", "step")
	if err != nil {
		return IntRange{}, err
	}
	r := IntRange{From: lo, Step: 1, ToLast: allowLast, fromPos: nodePos(n), toPos: nodePos(n)}
	if _, ok := fs["to"]; !ok && !allowLast {
		return r, d.errf(n, "%s: to is required", w)
	}
	if err := d.rangeEnds(&r, fs, w, allowLast); err != nil {
		return r, err
	}
	if sf, ok := fs["step"]; ok {
		if r.Step, err = d.intIn(sf.val, w+".step", 1, math.MaxInt32); err != nil {
			return r, err
		}
	}
	return r, nil
}

func (d *decoder) rangeEnds(r *IntRange, fs map[string]field, w string, allowLast bool) error {
	lo := r.From
	var err error
	if ff, ok := fs["from"]; ok {
		if r.From, r.FromLast, err = d.point(ff.val, w+".from", allowLast, lo); err != nil {
			return err
		}
		r.fromPos = nodePos(ff.val)
	}
	if tf, ok := fs["to"]; ok {
		if r.To, r.ToLast, err = d.point(tf.val, w+".to", allowLast, lo); err != nil {
			return err
		}
		r.toPos = nodePos(tf.val)
	}
	if !r.FromLast && !r.ToLast && r.From > r.To {
		return &boards.ConfigError{File: d.file, Line: r.fromPos.line, Column: r.fromPos.col,
			Msg: fmt.Sprintf("%s: from %d is after to %d", w, r.From, r.To)}
	}
	return nil
}

// point reads one integer >= lo, or "last".
func (d *decoder) point(n ast.Node, w string, allowLast bool, lo int64) (int64, bool, error) {
	r, err := d.resolve(n)
	if err != nil {
		return 0, false, err
	}
	if s, ok := r.(*ast.StringNode); ok && allowLast {
		if s.Value == "last" {
			return 0, true, nil
		}
		return 0, false, d.errf(n, "%s: %q: want a block number or last", w, s.Value)
	}
	if _, ok := r.(*ast.IntegerNode); !ok {
		want := "an integer"
		if allowLast {
			want = "a block number, last, or {from, to, step}"
		}
		return 0, false, d.errf(n, "%s: want %s, got %s", w, want, kindName(r))
	}
	v, err := d.intIn(n, w, lo, math.MaxUint32)
	return v, false, err
}

// durRange reads a duration or {from, to, step}; window ranges take no
// step (random draws from them).
func (d *decoder) durRange(n ast.Node, w string, limit time.Duration, window bool) (DurRange, error) {
	rn, err := d.resolve(n)
	if err != nil {
		return DurRange{}, err
	}
	if _, isMap := rn.(ast.MapNode); !isMap {
		v, err := d.duration(n, w, limit)
		return DurRange{From: v, To: v, pos: nodePos(n)}, err
	}
	keys := []string{"from", "to", "step"}
	if window {
		keys = keys[:2]
	}
	fs, err := d.fields(n, w, keys...)
	if err != nil {
		return DurRange{}, err
	}
	r := DurRange{pos: nodePos(n)}
	if ff, ok := fs["from"]; ok {
		if r.From, err = d.duration(ff.val, w+".from", limit); err != nil {
			return r, err
		}
	}
	tf, ok := fs["to"]
	if !ok {
		return r, d.errf(n, "%s: to is required", w)
	}
	if r.To, err = d.duration(tf.val, w+".to", limit); err != nil {
		return r, err
	}
	if r.From > r.To {
		return r, d.errf(fs["from"].val, "%s: from %v is after to %v", w, r.From, r.To)
	}
	if window {
		return r, nil
	}
	sf, ok := fs["step"]
	if !ok {
		return r, d.errf(n, "%s: step is required for a sweep of durations", w)
	}
	if r.Step, err = d.duration(sf.val, w+".step", limit); err != nil {
		return r, err
	}
	if r.Step <= 0 {
		return r, d.errf(sf.val, "%s.step: must be more than 0", w)
	}
	if (r.To-r.From)/r.Step >= MaxCycles {
		return r, d.errf(sf.val, "%s: the sweep has more than %d values", w, MaxCycles)
	}
	return r, nil
}

// values lists a duration sweep's values.
func (r DurRange) values() []time.Duration {
	if r.Step <= 0 || r.From == r.To {
		return []time.Duration{r.From}
	}
	var out []time.Duration
	for v := r.From; v <= r.To; v += r.Step {
		out = append(out, v)
	}
	return out
}

// draw picks a duration in [From, To], in whole microseconds when the
// window allows, so descriptions stay readable.
func (r DurRange) draw(rng *rand.Rand) time.Duration {
	span := r.To - r.From
	if span <= 0 {
		return r.From
	}
	if span >= time.Microsecond {
		return r.From + time.Duration(rng.Int64N(int64(span/time.Microsecond)+1))*time.Microsecond
	}
	return r.From + time.Duration(rng.Int64N(int64(span)+1))
}

// resolve turns a block range into concrete bounds for an image of blocks
// blocks; a point past the last block is an error at its line.
func (r IntRange) resolve(j *Job, blocks uint32, what string) (from, to int64, err error) {
	last := int64(blocks) - 1
	from, to = r.From, r.To
	if r.FromLast {
		from = last
	}
	if r.ToLast {
		to = last
	}
	if from > last {
		return 0, 0, j.errAt(r.fromPos, "%s: block %d is past the last block (%d) of the %d-block update image", what, from, last, blocks)
	}
	if to > last {
		return 0, 0, j.errAt(r.toPos, "%s: block %d is past the last block (%d) of the %d-block update image", what, to, last, blocks)
	}
	if from > to {
		return 0, 0, j.errAt(r.fromPos, "%s: from %d is after to %d", what, from, to)
	}
	return from, to, nil
}

// SZX is the RFC 7959 block size exponent of BlockSize.
func (j *Job) SZX() uint8 {
	var szx uint8
	for bs := 16; bs < j.BlockSize && szx < 6; bs <<= 1 {
		szx++
	}
	return szx
}

// Blocks is the number of blocks of an update image of size bytes: the
// argument Cycles needs.
func (j *Job) Blocks(size int) uint32 {
	bs := max(j.BlockSize, 16)
	return uint32((size + bs - 1) / bs)
}

// ProfileFor is the update profile of a board.
func (j *Job) ProfileFor(board string) bench.Profile {
	if p, ok := j.Profiles[board]; ok {
		return bench.Profile(p)
	}
	return bench.Profile(j.Profile)
}

// AcceptedFor lists the outcomes that pass for a board: its own accept
// entry, else "*", else updated.
func (j *Job) AcceptedFor(board string) []results.Outcome {
	if o, ok := j.Accept[board]; ok {
		return o
	}
	if o, ok := j.Accept["*"]; ok {
		return o
	}
	return []results.Outcome{results.Updated}
}

// Accepts tells whether outcome o passes for board.
func (j *Job) Accepts(board string, o results.Outcome) bool {
	for _, a := range j.AcceptedFor(board) {
		if a == o {
			return true
		}
	}
	return false
}

// SelectBoards resolves the job's boards against a bench's inventory: the
// listed names in the job's order, or the bench's boards carrying Tag, or
// all of them, in bench order. A name the bench does not have — in boards,
// accept or profiles — is a configuration error at its line.
func (j *Job) SelectBoards(inventory []boards.Board) ([]string, error) {
	have := map[string]boards.Board{}
	for _, b := range inventory {
		have[b.Name] = b
	}
	var out []string
	switch {
	case len(j.Boards) > 0:
		for i, name := range j.Boards {
			if _, ok := have[name]; !ok {
				var p pos
				if i < len(j.boardsPos) {
					p = j.boardsPos[i]
				}
				return nil, j.errAt(p, "board %q is not on the bench (have: %s)", name, boardNames(inventory))
			}
			out = append(out, name)
		}
	case j.Tag != "":
		for _, b := range inventory {
			if contains(b.Tags, j.Tag) {
				out = append(out, b.Name)
			}
		}
		if len(out) == 0 {
			return nil, j.errAt(j.tagPos, "no board of the bench has tag %q", j.Tag)
		}
	default:
		for _, b := range inventory {
			out = append(out, b.Name)
		}
		if len(out) == 0 {
			return nil, j.errAt(pos{}, "the bench has no boards")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(j.Accept)) {
		if name != "*" && !contains(out, name) {
			return nil, j.errAt(j.acceptPos[name], "accept: board %q is not among the job's boards (%s)", name, strings.Join(out, ", "))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(j.Profiles)) {
		if !contains(out, name) {
			return nil, j.errAt(j.profilePos[name], "profiles: board %q is not among the job's boards (%s)", name, strings.Join(out, ", "))
		}
	}
	return out, nil
}

func boardNames(bs []boards.Board) string {
	if len(bs) == 0 {
		return "none"
	}
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Name
	}
	return strings.Join(names, ", ")
}

// Cycles expands the cut list for an update image of blocks blocks:
// sweeps give one cycle per value, random entries draw their points
// (deterministically from the seed, fresh points on each pass), and the
// whole list runs Repeat times. A cut point past the last block is a
// configuration error at the entry's line.
func (j *Job) Cycles(blocks uint32) ([]CycleSpec, error) {
	if blocks == 0 {
		return nil, j.errAt(j.cutsPos, "the update image has no blocks")
	}
	// Check every entry and count before building anything.
	total := 0
	for i := range j.Cuts {
		n, err := j.Cuts[i].count(j, blocks, i)
		if err != nil {
			return nil, err
		}
		total += n
		if total > MaxCycles {
			break
		}
	}
	if total*j.Repeat > MaxCycles || total > MaxCycles {
		return nil, j.errAt(j.cutsPos, "cuts: the plan expands to more than %d cycles per board", MaxCycles)
	}
	out := make([]CycleSpec, 0, total*j.Repeat)
	rngs := make([]*rand.Rand, len(j.Cuts))
	for i, c := range j.Cuts {
		if c.Random != nil {
			seed := c.Random.Seed
			if seed == 0 {
				seed = j.Seed
			}
			rngs[i] = rand.New(rand.NewPCG(seed, uint64(i)+1))
		}
	}
	for rep := range j.Repeat {
		for i, c := range j.Cuts {
			add := func(cs CycleSpec) {
				cs.Index, cs.Repeat, cs.Entry = len(out), rep, i
				cs.Desc = describe(cs)
				out = append(out, cs)
			}
			if err := c.expand(j, blocks, i, rngs[i], add); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// count is the number of cycles of one pass of the entry, computed
// without expanding (a sweep can be huge); it also checks block bounds.
func (c *CutPlan) count(j *Job, blocks uint32, i int) (int, error) {
	what := fmt.Sprintf("cuts[%d].%s", i, c.Kind)
	delays := int64(len(c.Delay.values()))
	var n int64
	switch c.Kind {
	case KindAfterBlock, KindDuringBlock:
		from, to, err := c.Blocks.resolve(j, blocks, what)
		if err != nil {
			return 0, err
		}
		n = ((to-from)/max(c.Blocks.Step, 1) + 1) * delays
	case KindAtTime:
		n = int64(len(c.Times.values()))
	case KindOnConsole:
		n = delays
	case KindOnGPIO:
		n = ((c.Nth.To-c.Nth.From)/max(c.Nth.Step, 1) + 1) * delays
	case KindRandom:
		if c.Random.Kind != KindAtTime {
			if _, _, err := c.Random.Window.resolve(j, blocks, what+".window"); err != nil {
				return 0, err
			}
		}
		n = int64(c.Random.Count)
	default:
		n = 1
	}
	return int(min(n, MaxCycles+1)), nil
}

// expand calls add for each cycle of one pass of the entry.
func (c *CutPlan) expand(j *Job, blocks uint32, i int, rng *rand.Rand, add func(CycleSpec)) error {
	what := fmt.Sprintf("cuts[%d].%s", i, c.Kind)
	base := CycleSpec{Kind: c.Kind, Block: -1}
	switch c.Kind {
	case KindNone:
		add(base)
	case KindAfterBlock, KindDuringBlock:
		from, to, err := c.Blocks.resolve(j, blocks, what)
		if err != nil {
			return err
		}
		delays := c.Delay.values()
		for b := from; b <= to; b += max(c.Blocks.Step, 1) {
			for _, dl := range delays {
				cs := base
				cs.Block = b
				if c.Kind == KindDuringBlock {
					cs.Delay = dl
				}
				add(cs)
			}
		}
	case KindAtTime:
		for _, t := range c.Times.values() {
			cs := base
			cs.At = t
			add(cs)
		}
	case KindOnConsole:
		for _, dl := range c.Delay.values() {
			cs := base
			cs.Pattern, cs.Delay = c.Pattern, dl
			add(cs)
		}
	case KindOnGPIO:
		for n := c.Nth.From; n <= c.Nth.To; n += max(c.Nth.Step, 1) {
			for _, dl := range c.Delay.values() {
				cs := base
				cs.Pin, cs.Edge, cs.Nth, cs.Delay = c.Pin, c.Edge, int(n), dl
				add(cs)
			}
		}
	case KindRandom:
		rp := c.Random
		var from, to int64
		if rp.Kind != KindAtTime {
			var err error
			if from, to, err = rp.Window.resolve(j, blocks, what+".window"); err != nil {
				return err
			}
		}
		for range rp.Count {
			cs := base
			cs.Kind, cs.Random = rp.Kind, true
			if rng != nil {
				switch rp.Kind {
				case KindAtTime:
					cs.At = rp.Times.draw(rng)
				default:
					cs.Block = from + rng.Int64N(to-from+1)
					if rp.Kind == KindDuringBlock {
						cs.Delay = rp.Delay.draw(rng)
					}
				}
			}
			add(cs)
		}
	}
	return nil
}

func describe(c CycleSpec) string {
	var s string
	switch c.Kind {
	case KindNone:
		return "none"
	case KindAfterBlock:
		s = fmt.Sprintf("after_block %d", c.Block)
	case KindDuringBlock:
		s = fmt.Sprintf("during_block %d +%v", c.Block, c.Delay)
	case KindAtTime:
		s = fmt.Sprintf("at_time %v", c.At)
	case KindOnConsole:
		s = fmt.Sprintf("on_console %q", c.Pattern)
		if c.Delay > 0 {
			s += fmt.Sprintf(" +%v", c.Delay)
		}
	case KindOnGPIO:
		s = fmt.Sprintf("on_gpio %s %s edge %d", c.Pin, c.Edge, c.Nth)
		if c.Delay > 0 {
			s += fmt.Sprintf(" +%v", c.Delay)
		}
	default:
		s = c.Kind
	}
	if c.Random {
		s = "random " + s
	}
	return s
}

// Demo is the built-in demo job (`fudbench run` with no job): both
// default simulated boards, 16 KiB images built on the fly, a cut after
// every block plus four random cuts during blocks. sim-safe must update
// every time; sim-naive speaks only block1 and may brick, to be reflashed.
func Demo() *Job {
	return &Job{
		Name:      "demo",
		Boards:    []string{"sim-safe", "sim-naive"},
		Baseline:  ImageSpec{Build: &BuildSpec{Version: "1.0.0", Seq: 1, Size: 16 << 10, Seed: 1}},
		Image:     ImageSpec{Build: &BuildSpec{Version: "2.0.0", Seq: 2, Size: 16 << 10, Seed: 2}},
		Profile:   string(bench.Resumable),
		Profiles:  map[string]string{"sim-naive": string(bench.Block1)},
		BlockSize: DefaultBlockSize,
		Path:      DefaultPath,
		Cuts: []CutPlan{
			{Kind: KindAfterBlock, Blocks: IntRange{From: 0, ToLast: true, Step: 1}},
			{Kind: KindRandom, Random: &RandomPlan{Count: 4, Kind: KindDuringBlock,
				Window: IntRange{From: 0, ToLast: true, Step: 1},
				Delay:  DurRange{From: time.Millisecond, To: time.Millisecond}}},
		},
		OffTime:         20 * time.Millisecond,
		RecoveryTimeout: 2 * time.Second, // sim boards boot in milliseconds; silence for 2 s is a brick
		Accept: map[string][]results.Outcome{
			"sim-safe":  {results.Updated},
			"sim-naive": {results.Updated, results.Bricked},
		},
		Repeat:   1,
		Seed:     1,
		Parallel: true,
		Reflash:  true,
	}
}
