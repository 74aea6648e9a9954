package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/ast"
)

func parse(t *testing.T, text string) (*Decoder, ast.Node) {
	t.Helper()
	d, body, err := Parse("f.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return d, body
}

// field returns the value node of key in a top-level mapping.
func field(t *testing.T, d *Decoder, body ast.Node, key string) ast.Node {
	t.Helper()
	fs, err := d.FieldsAny(body, "test", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Name == key {
			return f.Val
		}
	}
	t.Fatalf("no key %s", key)
	return nil
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
		empty            bool
	}{
		{"empty", "", "", true},
		{"comments only", "# nothing\n", "", true},
		{"two documents", "a: 1\n---\nb: 2\n", "f.yaml:2:1: more than one YAML document", false},
		{"not UTF-8", "a: 1\nb: \xff\n", "f.yaml:2:4: not valid UTF-8 text", false},
		{"syntax", "a: [1,\n", "f.yaml:", false},
		{"fine", "a: 1\n", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, body, err := Parse("f.yaml", []byte(tc.text))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig) {
					t.Fatalf("err %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (body == nil) != tc.empty {
				t.Errorf("body %v, empty %v", body, tc.empty)
			}
		})
	}
}

func TestFields(t *testing.T) {
	d, body := parse(t, "a: 1\nb: {x: 1, y: 2}\n")
	if _, err := d.Fields(body, "top", "a"); err == nil || err.Error() != `f.yaml:2:1: top: unknown key "b" (known: a)` {
		t.Errorf("unknown key: %v", err)
	}
	if _, _, err := Parse("f.yaml", []byte("a: 1\na: 2\n")); err == nil || !strings.Contains(err.Error(), `f.yaml:2:1: mapping key "a" already defined`) {
		t.Errorf("duplicate key: %v", err)
	}
	d, body = parse(t, "base: &b {x: 1}\nderived:\n  <<: *b\n")
	if _, err := d.Fields(field(t, d, body, "derived"), "derived", "x"); err == nil || !strings.Contains(err.Error(), "merge keys") {
		t.Errorf("merge key: %v", err)
	}
	d, body = parse(t, "a: [1]\n")
	if _, err := d.Fields(field(t, d, body, "a"), "a", "x"); err == nil || !strings.Contains(err.Error(), "1:4: a: want a mapping, got a list") {
		t.Errorf("not a mapping: %v", err)
	}
}

func TestScalars(t *testing.T) {
	d, body := parse(t, `s: 2.0
i: -3
u: 18446744073709551615
big: 18446744073709551615
b: true
d: 1.5s
d0: 0
dn: 5
dneg: -1s
sz: 64KiB
szb: 4096
hex: 0x08000000
alias: &x 7
use: *x
`)
	v := func(k string) ast.Node { return field(t, d, body, k) }
	if s, err := d.Str(v("s"), "s"); s != "2.0" || err != nil {
		t.Errorf("Str = %q %v", s, err)
	}
	if i, err := d.Int(v("i"), "i"); i != -3 || err != nil {
		t.Errorf("Int = %d %v", i, err)
	}
	if u, err := d.Uint64(v("u"), "u"); u != 18446744073709551615 || err != nil {
		t.Errorf("Uint64 = %d %v", u, err)
	}
	if _, err := d.Int(v("big"), "big"); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("Int out of range: %v", err)
	}
	if _, err := d.Uint64(v("i"), "i"); err == nil || !strings.Contains(err.Error(), "non-negative") {
		t.Errorf("Uint64 of a negative: %v", err)
	}
	if _, err := d.IntIn(v("i"), "i", 0, 10); err == nil || !strings.Contains(err.Error(), "i -3: want 0 to 10") {
		t.Errorf("IntIn: %v", err)
	}
	if b, err := d.Bool(v("b"), "b"); !b || err != nil {
		t.Errorf("Bool = %v %v", b, err)
	}
	if x, err := d.Duration(v("d"), "d", time.Minute); x != 1500*time.Millisecond || err != nil {
		t.Errorf("Duration = %v %v", x, err)
	}
	if x, err := d.Duration(v("d0"), "d0", time.Minute); x != 0 || err != nil {
		t.Errorf("Duration 0 = %v %v", x, err)
	}
	if _, err := d.Duration(v("dn"), "dn", time.Minute); err == nil || !strings.Contains(err.Error(), "5 needs a unit, e.g. 5ms") {
		t.Errorf("Duration without unit: %v", err)
	}
	if _, err := d.Duration(v("dneg"), "dneg", time.Minute); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("negative Duration: %v", err)
	}
	if _, err := d.Duration(v("d"), "d", time.Second); err == nil || !strings.Contains(err.Error(), "1.5s is more than 1s") {
		t.Errorf("Duration over its limit: %v", err)
	}
	if n, err := d.Size(v("sz"), "sz", 0, 1<<20); n != 64<<10 || err != nil {
		t.Errorf("Size = %d %v", n, err)
	}
	if n, err := d.Size(v("szb"), "szb", 0, 1<<20); n != 4096 || err != nil {
		t.Errorf("Size of an integer = %d %v", n, err)
	}
	if _, err := d.Size(v("sz"), "sz", 0, 1024); err == nil || !strings.Contains(err.Error(), "want 0 bytes to 1KiB") {
		t.Errorf("Size over its limit: %v", err)
	}
	if h, err := d.Hex(v("hex"), "hex", 32); h != 0x08000000 || err != nil {
		t.Errorf("Hex = %#x %v", h, err)
	}
	if i, err := d.Int(v("use"), "use"); i != 7 || err != nil {
		t.Errorf("alias: %d %v", i, err)
	}
}

// sized validates itself in UnmarshalYAML, as the simulator's settings
// types do.
type sized int

func (s *sized) UnmarshalYAML(n ast.Node) error {
	return Scalar(n, func(text string) error {
		v, err := ParseSize(text)
		*s = sized(v)
		return err
	})
}

func TestDecodeNode(t *testing.T) {
	d, body := parse(t, "sec:\n  driver: x\n  size: 12 parsecs\n")
	var v struct {
		Size sized `yaml:"size"`
	}
	err := d.DecodeNode(field(t, d, body, "sec"), &v, "driver")
	if err == nil || !strings.HasPrefix(err.Error(), "f.yaml:3:9: size \"12 parsecs\"") || !errors.Is(err, ErrConfig) {
		t.Errorf("value error: %v", err)
	}
	d, body = parse(t, "sec: {driver: x, sise: 1}\n")
	if err := d.DecodeNode(field(t, d, body, "sec"), &v, "driver"); err == nil || !strings.Contains(err.Error(), `unknown field "sise"`) || !strings.HasPrefix(err.Error(), "f.yaml:1:") {
		t.Errorf("unknown field: %v", err)
	}
}

func TestErrorWrapsItsCause(t *testing.T) {
	cause := errors.New("bad signature")
	err := Wrapf("job.yaml", Pos{3, 5}, cause, "update image %s", "x.bin")
	if err.Error() != "job.yaml:3:5: update image x.bin: bad signature" || !errors.Is(err, cause) || !errors.Is(err, ErrConfig) {
		t.Errorf("%v", err)
	}
}

func TestReadPSK(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	for _, tc := range []struct {
		name, path, want, err string
	}{
		{"plain", write("a", "  secret\n"), "secret", ""},
		{"hex", write("b", "hex:00ff10\n"), "\x00\xff\x10", ""},
		{"0x", write("c", "0x0a0b"), "\x0a\x0b", ""},
		{"odd hex", write("d", "0xabc"), "", "bad hex"},
		{"empty", write("e", " \n"), "", "is empty"},
		{"too big", write("f", strings.Repeat("k", MaxPSKFile+1)), "", "larger than"},
		{"directory", dir, "", "not a regular file"},
		{"missing", filepath.Join(dir, "nope"), "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ReadPSK(tc.path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || string(k) != tc.want {
				t.Errorf("key %q %v, want %q", k, err, tc.want)
			}
		})
	}
}

// FuzzParse: any bytes parse or give a configuration error, and every
// reader on every node of what parses gives a value or a configuration
// error, never a panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"a: 1\n", "a: &x [*x]\n", "{", "a: 0x10\nb: 1KiB\nc: 2ms\n", "- - -\n", "a: !!binary aGk=\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, body, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("%v is not a configuration error", err)
			}
			return
		}
		if body == nil {
			return
		}
		fs, err := d.FieldsAny(body, "fuzz", true)
		if err != nil {
			return
		}
		for _, fl := range fs {
			for _, read := range []func() error{
				func() error { _, err := d.Str(fl.Val, "x"); return err },
				func() error { _, err := d.Int(fl.Val, "x"); return err },
				func() error { _, err := d.Duration(fl.Val, "x", time.Hour); return err },
				func() error { _, err := d.Size(fl.Val, "x", 0, 1<<30); return err },
				func() error { _, err := d.Hex(fl.Val, "x", 32); return err },
				func() error { _, err := d.Seq(fl.Val, "x", true); return err },
				func() error { _, err := d.Fields(fl.Val, "x", "a"); return err },
			} {
				if err := read(); err != nil && !errors.Is(err, ErrConfig) {
					t.Fatalf("%v is not a configuration error", err)
				}
			}
		}
	})
}

// TestDecodeNodeTaggedValue: goccy's decoder panics on a tagged value of
// the wrong kind for a list field; DecodeNode makes it an error.
func TestDecodeNodeTaggedValue(t *testing.T) {
	d, body, err := Parse("bench.yaml", []byte("sec:\n  coap: !t\n    x\n"))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := d.Fields(body, "top", "sec")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		CoAP []string `yaml:"coap"`
	}
	err = d.DecodeNode(fs["sec"].Val, &v)
	if err == nil || !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), "bench.yaml:2:3: a value the YAML decoder cannot read") {
		t.Fatalf("error %v", err)
	}
}
