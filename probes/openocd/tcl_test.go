package openocd

import (
	"bufio"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

func TestParseList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "", want: nil},
		{in: "  \t\n", want: nil},
		{in: "a b c", want: []string{"a", "b", "c"}},
		// Replies seen from OpenOCD 0.12 (Jim Tcl).
		{in: "0 {Open On-Chip Debugger 0.12.0}", want: []string{"0", "Open On-Chip Debugger 0.12.0"}},
		{in: "1 boom", want: []string{"1", "boom"}},
		{in: `1 {invalid command name "nosuchcmd"}`, want: []string{"1", `invalid command name "nosuchcmd"`}},
		{in: `1 a\ \{b`, want: []string{"1", "a {b"}},
		{in: `1 {a\\b c}`, want: []string{"1", `a\\b c`}},
		{in: "1 {x\ny}", want: []string{"1", "x\ny"}},
		{in: "0 {a b {c d} {} {$x}}", want: []string{"0", "a b {c d} {} {$x}"}},
		{in: "0 {}", want: []string{"0", ""}},
		{in: "0x12 0x34 0xff", want: []string{"0x12", "0x34", "0xff"}},
		// Nesting, escapes inside braces stay literal.
		{in: `{a {b} c} {x\}y}`, want: []string{"a {b} c", `x\}y`}},
		// Quotes and backslash substitution.
		{in: `"a b" "c\"d" "\n\t"`, want: []string{"a b", `c"d`, "\n\t"}},
		{in: `\x41\u00e9\101\U0001F600`, want: []string{"Aé" + "A" + "😀"}},
		{in: `\x \u \q`, want: []string{"x", "u", "q"}},
		{in: `\777`, want: []string{"?7"}},
		{in: "a\\\n   b", want: []string{"a b"}},
		{in: `a\`, want: []string{`a\`}},
		{in: `a\ b`, want: []string{"a b"}},
		{in: `\{`, want: []string{"{"}},
		// Malformed.
		{in: "{a", err: true},
		{in: `{a\}`, err: true},
		{in: `"a`, err: true},
		{in: "{a}b", err: true},
		{in: `"a"b`, err: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			got, err := parseList(tt.in)
			if tt.err {
				if err == nil || !errors.Is(err, errList) {
					t.Fatalf("parseList = %q, %v; want an errList error", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseList = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "{}"},
		{"abc", "abc"},
		{"0x08000000", "0x08000000"},
		{"a b", "{a b}"},
		{"a {b} c", "{a {b} c}"},
		{"a {b", `a\ \{b`},
		{`a\b`, `a\\b`},
		{"x\ny", "{x\ny}"},
		{"}{", `\}\{`},
		{"$x;[y]", "{$x;[y]}"},
		{"\"q\"", "{\"q\"}"},
		{"#c", "{#c}"},
		{"a\\\n", `a\\\n`},
	}
	for _, tt := range tests {
		if got := quote(tt.in); got != tt.want {
			t.Errorf("quote(%q) = %q, want %q", tt.in, got, tt.want)
		}
		got, err := parseList(quote(tt.in))
		if err != nil || len(got) != 1 || got[0] != tt.in {
			t.Errorf("parseList(quote(%q)) = %q, %v", tt.in, got, err)
		}
	}
}

func TestBodySafe(t *testing.T) {
	tests := []struct {
		in  string
		err string
	}{
		{in: "reset run"},
		{in: "reset halt; resume"},
		{in: "if {1} {reset run}"},
		{in: `echo \{`},
		{in: "a {", err: "unmatched open brace"},
		{in: "a }", err: "unmatched close brace"},
		{in: `a\`, err: "ends in a backslash"},
		{in: "a\x1a", err: "0x1a"},
		{in: "a\\\x1a", err: "0x1a"},
	}
	for _, tt := range tests {
		err := bodySafe(tt.in)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("bodySafe(%q) = %v, want %q", tt.in, err, tt.err)
		}
	}
}

func TestMisdetected(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"\x7fELF\x01\x01\x01\x00\x00", "an ELF file"},
		{":10000000AB", "an Intel HEX file"},
		{":020000040800F2", "an Intel HEX file"},
		{":10000006AB", ""}, // record type 06 does not exist
		{"S00F000068", "an S-record file"},
		{"S9xx00000", ""},
		{"\x00\x50\x00\x20\x09\x01\x00\x08\x00", ""},
		{"\x7fELF", ""}, // under 9 bytes OpenOCD takes any file as binary
	}
	for _, tt := range tests {
		if got := misdetected([]byte(tt.in)); got != tt.want {
			t.Errorf("misdetected(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want []byte
		err  string
	}{
		{in: "0x0 0x7f 0xff", n: 3, want: []byte{0, 0x7f, 0xff}},
		{in: "0 127 255", n: 3, want: []byte{0, 127, 255}},
		{in: "0x1 0x2", n: 3, err: "2 values, want 3"},
		{in: "0x100", n: 1, err: "is no byte"},
		{in: "-1", n: 1, err: "is no byte"},
		{in: "zz", n: 1, err: "is no byte"},
		{in: "{0x1", n: 1, err: "unmatched"},
	}
	for _, tt := range tests {
		got := make([]byte, tt.n)
		err := parseBytes(tt.in, got)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseBytes(%q) = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("parseBytes(%q) = %x, %v; want %x", tt.in, got, err, tt.want)
		}
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   reply
		notes  []string
		err    string
	}{
		{name: "ok", stream: "0 {Open On-Chip Debugger 0.12.0}\x1a", want: reply{0, "Open On-Chip Debugger 0.12.0"}},
		{name: "error", stream: "1 {** Unable to reset target **}\x1a", want: reply{1, "** Unable to reset target **"}},
		{name: "empty message", stream: "1 {}\x1a", want: reply{1, ""}},
		{
			name:   "notifications first",
			stream: "type target_reset mode run\r\n\x1atype target_event event reset-start\r\n\x1a0 {}\x1a",
			want:   reply{0, ""},
			notes:  []string{"type target_reset mode run", "type target_event event reset-start"},
		},
		{name: "reply holds 0x1a-free newlines", stream: "1 {line1\nline2}\x1a", want: reply{1, "line1\nline2"}},
		{name: "eof", stream: "", err: "EOF"},
		{name: "eof mid-reply", stream: "0 {Open", err: "EOF"},
		{name: "not a list", stream: "unmatched \"[\"\x1a", err: "unexpected reply"},
		{name: "one element", stream: "hello\x1a", err: "1 elements, want 2"},
		{name: "three elements", stream: "0 a b\x1a", err: "3 elements, want 2"},
		{name: "code not a number", stream: "x y\x1a", err: "is no integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var notes []string
			got, err := readReply(bufio.NewReader(strings.NewReader(tt.stream)), func(s string) { notes = append(notes, s) })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("readReply = %+v, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("reply %+v, want %+v", got, tt.want)
			}
			if !slices.Equal(notes, tt.notes) {
				t.Errorf("notifications %q, want %q", notes, tt.notes)
			}
		})
	}
}

// FuzzTclList checks that parsing never panics, that what parses comes
// back the same through quote and parse again, and that any elements
// survive joinList and parseList.
func FuzzTclList(f *testing.F) {
	for _, s := range []string{
		"", "a b c", "0 {Open On-Chip Debugger 0.12.0}", `1 a\ \{b`, `1 {a\\b c}`, "1 {x\ny}",
		"0 {a b {c d} {} {$x}}", `"a b" "c\"d"`, `\x41\u00e9\101\U0001F600`, "a\\\n  b", "{a", `"a`, "{a}b",
		"a|b c|{d|}", `\777 \x \`, "0x12 0x34",
	} {
		f.Add(s)
	}
	// Bounded: parsing allocates at most 32 bytes a byte plus 64 KiB and
	// alloccheck.FuzzSlack (TestBombs measures the worst, about 9).
	f.Fuzz(func(t *testing.T, s string) {
		var (
			elems []string
			err   error
		)
		alloccheck.Bound(t, "parseList", len(s), 32, 64<<10+alloccheck.FuzzSlack, func() { elems, err = parseList(s) })
		if err == nil {
			again, err := parseList(joinList(elems...))
			if err != nil {
				t.Fatalf("parseList(joinList(%q)): %v", elems, err)
			}
			if !slices.Equal(again, elems) {
				t.Fatalf("round trip of %q: %q, want %q", s, again, elems)
			}
		}
		elems = strings.Split(s, "|")
		got, err := parseList(joinList(elems...))
		if err != nil {
			t.Fatalf("parseList(joinList(%q)) = %v (list %q)", elems, err, joinList(elems...))
		}
		if !slices.Equal(got, elems) {
			t.Fatalf("parseList(joinList(%q)) = %q (list %q)", elems, got, joinList(elems...))
		}
	})
}

// FuzzReply feeds a stream of bytes to the reply reader: it must not
// panic, must pass on only frames that start with "type " as
// notifications, and must return a reply only when one frame parses as
// "CODE MESSAGE". A well-formed reply built from the input, preceded by
// notifications, must come back intact.
func FuzzReply(f *testing.F) {
	for _, s := range []string{
		"0 {}\x1a", "1 {** Unable to reset target **}\x1a", "type target_reset mode run\r\n\x1a0 {}\x1a",
		"0 {Open", "unmatched \"[\"\x1a", "1 a\\ \\{b\x1a", "type x\x1a\x1a", "\x1a\x1a", "0 {a\x1ab}\x1a",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		var (
			notes []string
			rep   reply
			err   error
		)
		// Bounded like parseList, framing included (8 bytes a byte).
		alloccheck.Bound(t, "readReply", len(stream), 40, 64<<10+alloccheck.FuzzSlack, func() {
			rep, err = readReply(bufio.NewReader(strings.NewReader(string(stream))), func(s string) { notes = append(notes, s) })
		})
		for _, n := range notes {
			if !strings.HasPrefix(n, "type ") {
				t.Fatalf("notification %q does not start with \"type \"", n)
			}
		}
		if err == nil {
			frames := strings.Split(string(stream), "\x1a")
			elems, perr := parseList(frames[len(notes)])
			if perr != nil || len(elems) != 2 || elems[1] != rep.msg {
				t.Fatalf("reply %+v from frame %q (elements %q, %v)", rep, frames[len(notes)], elems, perr)
			}
		}

		msg := strings.ReplaceAll(string(stream), "\x1a", "")
		built := "type target_event event halted\r\n\x1a" + joinList("1", msg) + "\x1a"
		notes = nil
		rep, err = readReply(bufio.NewReader(strings.NewReader(built)), func(s string) { notes = append(notes, s) })
		if err != nil || rep.code != 1 || rep.msg != msg || len(notes) != 1 {
			t.Fatalf("built %q: reply %+v, notes %q, err %v", built, rep, notes, err)
		}
	})
}
