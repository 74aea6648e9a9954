package config

import (
	"strings"
	"testing"

	"github.com/goccy/go-yaml/ast"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestExpandEnv(t *testing.T) {
	src := `port: ${PORT_DIR}/ttyUSB0
baud: ${BAUD}
quoted: "${BAUD}"
default: ${UNSET:-fallback}
empty: ${EMPTY:-used}
kept: ${EMPTY}
literal: $${NOT_A_VAR} and $HOME and ready$
list:
  - ${A}
  - x-${A}-y
${A}: key not expanded
block: |
  dir ${PORT_DIR}
`
	d, body, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ExpandEnv(body, env(map[string]string{"PORT_DIR": "/dev/serial/by-id", "BAUD": "115200", "EMPTY": "", "A": "a"})); err != nil {
		t.Fatal(err)
	}
	fs, err := d.FieldsAny(body, "t", false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]ast.Node{}
	for _, f := range fs {
		got[f.Name] = f.Val
	}
	for k, want := range map[string]string{
		"port": "/dev/serial/by-id/ttyUSB0", "quoted": "115200", "default": "fallback", "empty": "used", "kept": "",
		"literal": "${NOT_A_VAR} and $HOME and ready$", "${A}": "key not expanded", "block": "dir /dev/serial/by-id\n",
	} {
		s, err := d.Str(got[k], k)
		if err != nil || s != want {
			t.Errorf("%s = %q, %v; want %q", k, s, err, want)
		}
	}
	if _, ok := got["baud"].(*ast.IntegerNode); !ok {
		t.Errorf("baud: %T, want an integer once expanded", got["baud"])
	}
	if _, ok := got["quoted"].(*ast.StringNode); !ok {
		t.Errorf("quoted: %T, want a string", got["quoted"])
	}
	if n, err := d.Int(got["baud"], "baud"); err != nil || n != 115200 {
		t.Errorf("baud %d, %v", n, err)
	}
	items, _ := d.Seq(got["list"], "list", false)
	if a, _ := d.Str(items[0], "list"); a != "a" {
		t.Errorf("list[0] %q", a)
	}
	if b, _ := d.Str(items[1], "list"); b != "x-a-y" {
		t.Errorf("list[1] %q", b)
	}

	for _, tc := range []struct{ src, want string }{
		{"a: 1\nb: ${NOPE}\n", "t.yaml:2:4: ${NOPE} is not set in the environment (give a default with ${NOPE:-value})"},
		{"a: [x, \"${1BAD}\"]\n", `t.yaml:1:8: "${1BAD}": want ${NAME} or ${NAME:-default}`},
		{"a: ${}\n", `t.yaml:1:4: "${}": want ${NAME}`},
	} {
		d, body, err := Parse("t.yaml", []byte(tc.src))
		if err != nil {
			t.Fatal(err)
		}
		err = d.ExpandEnv(body, env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.src, err, tc.want)
		}
	}
	d, body, _ = Parse("t.yaml", []byte("a: ok\nb: ${X}\n"))
	if err := d.RefuseEnv(body, "not from a file"); err == nil || err.Error() != "t.yaml:2:4: ${X}: not from a file" {
		t.Errorf("RefuseEnv: %v", err)
	}
}

func FuzzExpandEnv(f *testing.F) {
	for _, s := range []string{"a: ${A}\n", "a: [${A:-x}, $${B}]\n", "a: {b: ${C}}\n", "a: |\n  ${A}\n", "a: &x ${A}\nb: *x\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		d, body, err := Parse("f.yaml", []byte(src))
		if err != nil {
			return
		}
		_ = d.ExpandEnv(body, env(map[string]string{"A": "1", "B": "x y", "C": "${A}"}))
	})
}
