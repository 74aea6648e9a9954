package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Bounds of the bomb table: a refused file costs at most yamlPerByte
// bytes of allocation per byte of input plus yamlFixed. The lexer alone
// takes about 300 bytes a byte; the byte scan takes nothing.
const (
	yamlPerByte = 400
	yamlFixed   = 1 << 20
	// scanPerByte bounds the bombs the byte scan refuses before the
	// lexer runs.
	scanPerByte = 1
)

func keysFile(n int, indent string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%sk%d: 1\n", indent, i)
	}
	return b.String()
}

func keysFlow(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "k%d: 1, ", i)
	}
	return b.String()
}

// aliasBomb is a "billion laughs": each level is a list of ten aliases
// to the level before.
func aliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// TestBombs is the YAML part of docs/RELIABILITY.md's bomb table: each
// row is refused with an error at its place, within the allocation bound.
func TestBombs(t *testing.T) {
	big := MaxFileSize
	for _, tt := range []struct {
		name, doc string
		perByte   uint64
		want      string
	}{
		{"cuts nested 100,000 deep in brackets", "cuts: " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "\n", scanPerByte, "1:1031: brackets nest more than 1024 deep"},
		{"brackets 65 deep", strings.Repeat("[", 65) + strings.Repeat("]", 65), yamlPerByte, "1:65: nested more than 64 levels deep"},
		{"\"- \" 100,000 times on one line", strings.Repeat("- ", 100_000) + "x\n", scanPerByte, "1:2049: more than 1024 \"-\" indicators on one line"},
		{"\"- \" 65 times on one line", strings.Repeat("- ", 65) + "x\n", yamlPerByte, "1:129: nested more than 64 levels deep"},
		{"\"? \" 100,000 times on one line", strings.Repeat("? ", 100_000) + "x\n", scanPerByte, "more than 1024 \"?\" indicators"},
		{"mappings indented 65 deep", func() string {
			var b strings.Builder
			for i := range 65 {
				fmt.Fprintf(&b, "%sk:\n", strings.Repeat(" ", i))
			}
			return b.String()
		}(), yamlPerByte, "65:65: nested more than 64 levels deep"},
		{"mixed block and flow 65 deep", strings.Repeat("- ", 40) + strings.Repeat("[", 25) + strings.Repeat("]", 25), yamlPerByte, "1:105: nested more than 64 levels deep"},
		{"keys under bare \"-\" entries, nested by the parser (20,000 times)", strings.Repeat("k:\n-\n", 20_000), yamlPerByte, "65:1: nested more than 64 levels deep"},
		{"a list whose bare entries take the next key (10,000 times)", "a:\n" + strings.Repeat("- 1\n-\nb:\n", 10_000), yamlPerByte, "nested more than 64 levels deep"},
		{"keys under tags alone on their lines, nested by the parser (20,000 times)", strings.Repeat("k: !t\n", 20_000), yamlPerByte, "65:1: nested more than 64 levels deep"},
		{"a mapping of 1,001 keys", keysFile(1001, ""), yamlPerByte, "1001:1: a mapping with more than 1000 keys"},
		{"a mapping of 28,000 keys (the largest file)", keysFile(30_000, "")[:big-100], yamlPerByte, "1001:1: a mapping with more than 1000 keys"},
		{"a flow mapping of 1,001 keys", "{" + keysFlow(1001) + "}", yamlPerByte, "1:8900: a mapping with more than 1000 keys"},
		{"documents: 40,000 \"--- a\"", strings.Repeat("--- a\n", 40_000), yamlPerByte, "2:1: more than one YAML document"},
		{"a document after \"...\"", "a: 1\n...\nb: 2\n", yamlPerByte, "3:1: more than one YAML document"},
		{"1,001 empty entries", strings.Repeat("-\n", 1001), yamlPerByte, "1001:1: more than 1000 empty values"},
		{"empty entries filling the largest file", strings.Repeat("-\n", big/2), yamlPerByte, "1001:1: more than 1000 empty values"},
		{"1,001 empty values of keys", func() string {
			var b strings.Builder
			for i := range 1001 {
				if i%500 == 0 {
					fmt.Fprintf(&b, "m%d:\n", i)
				}
				fmt.Fprintf(&b, "  k%d:\n", i)
			}
			return b.String()
		}(), yamlPerByte, "more than 1000 empty values"},
		{"1,001 flow keys without values", "[" + strings.Repeat("{a}, ", 1001) + "]", yamlPerByte, "more than 1000 empty values"},
		{"billion laughs (10 levels of 10 aliases)", aliasBomb(10), yamlPerByte, "5:40: aliases expand to more than 100000 nodes"},
		{"alias nested past the depth limit", "a: &a " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\nb: " + strings.Repeat("[", 30) + "*a" + strings.Repeat("]", 30) + "\n", yamlPerByte, "2:34: alias *a nests more than 64 levels deep"},
		{"alias inside its own anchor", "a: &a [1, *a]\n", yamlPerByte, "1:11: alias *a is inside the anchor &a"},
		{"a list of 131,000 numbers (the largest file)", "[" + strings.Repeat("1,", big/2-1) + "]", yamlPerByte, "1:50001: more than 50000 YAML tokens"},
		{"file of 256 KiB + 1", "a: " + strings.Repeat("x", big-3+1), 0, "bomb.yaml: 262145 bytes of text is too large: the limit is 256KiB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			fixed := uint64(yamlFixed)
			if tt.perByte <= scanPerByte {
				fixed = 4 << 10
			}
			doc := []byte(tt.doc)
			c := alloccheck.Bound(t, tt.name, len(doc), tt.perByte, fixed, func() { _, _, err = Parse("bomb.yaml", doc) })
			alloccheck.Log(t, tt.name, int64(len(doc)), c, err)
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestLimitsLeaveGoodFilesAlone: files at every limit parse.
func TestLimitsLeaveGoodFilesAlone(t *testing.T) {
	for _, tt := range []struct{ name, doc string }{
		{"brackets 64 deep", strings.Repeat("[", 64) + strings.Repeat("]", 64)},
		{"\"- \" 64 times", strings.Repeat("- ", 64) + "x\n"},
		{"a mapping of 1,000 keys", keysFile(1000, "")},
		{"two mappings of 1,000 keys", "a:\n" + keysFile(1000, "  ") + "b:\n" + keysFile(1000, "  ")},
		{"list items, each a mapping of 3 keys", strings.Repeat("- a: 1\n  b: 2\n  c: 3\n", 2000)},
		{"a flow mapping of 1,000 keys", "{" + keysFlow(1000) + "}"},
		{"1,000 empty values", strings.Repeat("-\n", 1000)},
		{"one document with markers", "%YAML 1.2\n---\na: 1\n...\n# done\n"},
		{"a key whose value is a list at its column", "a:\n- 1\n- 2\nb:\n- 3\n"},
		{"brackets in strings and block scalars", "a: '" + strings.Repeat("[", 600) + "'\nb: |\n  " + strings.Repeat("{", 400) + "\n  - - - - x\n"},
		{"aliases adding 99,000 nodes", func() string {
			s := "a: &a [" + strings.Repeat("1, ", 98) + "1]\nb: [" + strings.Repeat("*a, ", 980) + "*a]\n"
			return s
		}()},
		{"a file of 256 KiB", "a: " + strings.Repeat("x", MaxFileSize-3)},
		{"50,000 tokens", "[" + strings.Repeat("1,", 24_998) + "1]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Parse("good.yaml", []byte(tt.doc)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	big := alloccheck.Sparse(t, filepath.Join(dir, "big.yaml"), 10<<30)
	var data []byte
	var err error
	c := alloccheck.Bound(t, "10 GiB file", 0, 0, 64<<10, func() { data, err = ReadFile(big, "job file") })
	alloccheck.Log(t, "job file of 10 GiB", 10<<30, c, err)
	if data != nil || err == nil || err.Error() != big+": job file of 10.0 GiB is too large: the limit is 256KiB" {
		t.Errorf("10 GiB: %v", err)
	}
	if _, err := ReadFile("/dev/zero", "bench file"); err == nil || !strings.Contains(err.Error(), "/dev/zero: bench file is too large: more than the limit of 256KiB") {
		t.Errorf("/dev/zero: %v", err)
	}
	if _, err := ReadFile(dir, "bench file"); err == nil || err.Error() != dir+": cannot read bench file: is a directory" {
		t.Errorf("directory: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "none.yaml"), "job file"); err == nil || !strings.HasSuffix(err.Error(), "none.yaml: cannot read job file: no such file or directory") {
		t.Errorf("missing: %v", err)
	}
	ok := filepath.Join(dir, "ok.yaml")
	os.WriteFile(ok, []byte("a: 1\n"), 0o644)
	if b, err := ReadFile(ok, "job file"); err != nil || string(b) != "a: 1\n" {
		t.Errorf("ok: %q %v", b, err)
	}
}

// astStats measures a parsed document the way checkTokens does: the
// deepest nesting of collections, the most keys in one mapping, and the
// values the parser made null for want of one.
func astStats(n ast.Node, depth int, parent ast.Node, s *TokenStats) {
	if n == nil {
		return
	}
	level := 0
	switch v := n.(type) {
	case *ast.MappingNode:
		level = 1
		s.Keys = max(s.Keys, len(v.Values))
	case *ast.SequenceNode:
		level = 1
	case *ast.MappingValueNode:
		if _, ok := parent.(*ast.MappingNode); !ok {
			level = 1
			s.Keys = max(s.Keys, 1)
		}
	case *ast.NullNode:
		if tk := v.GetToken(); tk != nil && tk.Type == token.ImplicitNullType {
			s.Empty++
		}
	}
	depth += level
	s.Depth = max(s.Depth, depth)
	switch v := n.(type) {
	case *ast.DocumentNode:
		astStats(v.Body, depth, n, s)
	case *ast.AnchorNode:
		astStats(v.Value, depth, n, s)
	case *ast.TagNode:
		astStats(v.Value, depth, n, s)
	case *ast.MappingNode:
		for _, mv := range v.Values {
			astStats(mv, depth, n, s)
		}
	case *ast.MappingValueNode:
		astStats(v.Key, depth, n, s)
		astStats(v.Value, depth, n, s)
	case *ast.SequenceNode:
		for _, e := range v.Values {
			astStats(e, depth, n, s)
		}
	}
}

// FuzzLimits checks the limits against the parser they protect: for any
// document goccy/go-yaml parses, the nesting and keys checkTokens
// measured are at least what the parser built (and the empty values
// about as many), so nothing the parser does quadratic work for is
// hidden from the limits; and Parse allocates within the bomb table's
// bound. It found the parser's own nestings: a key after a bare "-" at
// the "-"'s column, and anything after a tag alone on its line.
func FuzzLimits(f *testing.F) {
	for _, s := range []string{
		"a: 1\n", "a:\n- 1\n-\nb:\n", "- - - x\n", "? a\n: b\n", "&a k: *a\n", "{a, b: , c: [1, {d: }]}\n",
		"a: |\n  - - x\n  [[\nb: 2\n", "\"k\": v\n'q': [w]\n", "- a: 1\n  b:\n- c:\n", "---\na: 1\n...\n",
		"a: >-\n   x\n  b\n", "[a: 1, b: ]\n", "*x : y\n", "a: !!str\nb: &n\n", "- ? a\n  : b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		var err error
		alloccheck.Bound(t, "Parse", len(data), yamlPerByte+200, yamlFixed+alloccheck.FuzzSlack, func() { _, _, err = Parse("fuzz.yaml", data) })
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Fatalf("%v is not a configuration error", err)
		}
		tks := lexer.Tokenize(string(data))
		if tks.InvalidToken() != nil {
			return
		}
		got := measureTokens(tks)
		file, perr := parser.Parse(tks, 0)
		if perr != nil {
			return
		}
		var want TokenStats
		for _, doc := range file.Docs {
			astStats(doc, 0, nil, &want)
		}
		// Where the parser's reading is not followed exactly, the
		// count errs deeper: a mapping it splits in two costs a level,
		// so keys may fall short by at most the depth. Empty values are
		// counted within a factor: each null the parser inserts costs a
		// copy of the tokens after it, so what matters is that their
		// number stays of the order of the limit.
		if want.Depth > got.Depth || want.Keys > got.Keys+got.Depth || want.Empty > 2*got.Empty+1 {
			t.Fatalf("limits measured %+v, the parser built %+v, for %q", got, want, data)
		}
	})
}
