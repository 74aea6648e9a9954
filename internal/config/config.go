// Package config is the strict YAML reader shared by the bench inventory
// (package boards) and job plans (package jobs), and the one
// configuration error type both report.
//
// Reading is strict and keeps positions: an unknown or duplicate key, a
// wrong type or a bad value is an *Error naming the file, line and column,
// which matches ErrConfig with errors.Is (exit code 2 in the CLI). The
// reader walks goccy/go-yaml's syntax tree itself rather than going
// through reflection, so every value keeps its node's position for errors
// found later (a cut point past the image's last block is only known once
// the image is read). Sections that belong to a driver stay nodes until
// the driver decodes them (Decoder.DecodeNode).
package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
)

// ErrConfig marks every configuration error.
var ErrConfig = errors.New("configuration error")

// Error is a configuration error at a place in a file.
type Error struct {
	File         string
	Line, Column int // 0 when unknown
	Msg          string
	// Err is the cause, when there is one (a bad image's fwimage error):
	// errors.Is finds it as well as ErrConfig.
	Err error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Unwrap makes errors.Is(err, ErrConfig) true, and finds the cause.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrConfig, e.Err}
	}
	return []error{ErrConfig}
}

// Wrapf makes an *Error in file at p whose cause is err; the message is
// the format's, then err's.
func Wrapf(file string, p Pos, err error, format string, a ...any) error {
	return &Error{File: file, Line: p.Line, Column: p.Column, Msg: fmt.Sprintf(format, a...) + ": " + err.Error(), Err: err}
}

// Errorf makes an *Error in file at p.
func Errorf(file string, p Pos, format string, a ...any) error {
	return &Error{File: file, Line: p.Line, Column: p.Column, Msg: fmt.Sprintf(format, a...)}
}

// Pos is a line and column in a file, from 1; zero when unknown.
type Pos struct{ Line, Column int }

// PosOf is the position of a node: a mapping value's key, a block
// mapping's first key, otherwise the node's own token.
func PosOf(n ast.Node) Pos {
	if n == nil {
		return Pos{}
	}
	if v := reflect.ValueOf(n); v.Kind() == reflect.Pointer && v.IsNil() {
		return Pos{}
	}
	if mv, ok := n.(*ast.MappingValueNode); ok && mv.Key != nil {
		return PosOf(mv.Key)
	}
	if mn, ok := n.(*ast.MappingNode); ok && !mn.IsFlowStyle && len(mn.Values) > 0 {
		// A block mapping's own token is its first colon.
		return PosOf(mn.Values[0])
	}
	if _, ok := n.(*ast.DocumentNode); ok {
		return Pos{}
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return Pos{}
	}
	return Pos{tk.Position.Line, tk.Position.Column}
}

// MaxDepth bounds recursion over hostile input; a job or bench file is a
// few levels deep.
const MaxDepth = 64

// Decoder reads the nodes of one parsed file.
type Decoder struct {
	File    string
	anchors map[string]ast.Node
	noEnv   string // why variables are refused (RefuseEnv)
}

// Parse checks that data is UTF-8 text holding one YAML document within
// the limits of limits.go and returns a decoder for it and the
// document's body; the body is nil for an empty document (only comments,
// or nothing). name is used in errors.
func Parse(name string, data []byte) (*Decoder, ast.Node, error) {
	if err := checkSize(name, len(data)); err != nil {
		return nil, nil, err
	}
	if err := CheckUTF8(name, data); err != nil {
		return nil, nil, err
	}
	if err := scanBytes(name, data); err != nil {
		return nil, nil, err
	}
	d := &Decoder{File: name, anchors: map[string]ast.Node{}}
	tks := lexer.Tokenize(string(data))
	if tks.InvalidToken() == nil {
		// With an invalid token the parser stops at once, with its error.
		if err := checkTokens(name, tks); err != nil {
			return nil, nil, err
		}
	}
	f, err := parser.Parse(tks, 0)
	if err != nil {
		return nil, nil, d.yamlError(err)
	}
	// checkTokens refused a second document; the parser may still split
	// a directive or a trailing comment into a document of its own.
	var body ast.Node
	for _, doc := range f.Docs {
		n := doc.Body
		if n == nil {
			continue
		}
		if v := reflect.ValueOf(n); v.Kind() == reflect.Pointer && v.IsNil() {
			continue
		}
		switch n.(type) {
		case *ast.CommentGroupNode, *ast.CommentNode, *ast.DirectiveNode:
			continue
		}
		if body != nil {
			return nil, nil, d.Errf(n, "more than one YAML document: the file holds one")
		}
		body = n
	}
	if body != nil {
		d.collectAnchors(body, 0)
		if err := d.checkAliases(body); err != nil {
			return nil, nil, err
		}
	}
	return d, body, nil
}

// CheckUTF8 returns an *Error at the first byte of data that is not valid
// UTF-8: YAML is Unicode text, and names and patterns end up in reports
// that must stay valid text (JSON, JUnit XML).
func CheckUTF8(file string, data []byte) error {
	if utf8.Valid(data) {
		return nil
	}
	line, col := 1, 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size <= 1 {
			return &Error{File: file, Line: line, Column: col, Msg: "not valid UTF-8 text"}
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		data = data[size:]
	}
	return nil
}

func (d *Decoder) yamlError(err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) {
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return &Error{File: d.File, Line: tk.Position.Line, Column: tk.Position.Column, Msg: ye.GetMessage()}
		}
		return &Error{File: d.File, Msg: ye.GetMessage()}
	}
	return &Error{File: d.File, Msg: err.Error()}
}

// Errf makes an *Error at node n.
func (d *Decoder) Errf(n ast.Node, format string, a ...any) error {
	return Errorf(d.File, PosOf(n), format, a...)
}

// ErrAt makes an *Error at p.
func (d *Decoder) ErrAt(p Pos, format string, a ...any) error {
	return Errorf(d.File, p, format, a...)
}

func (d *Decoder) collectAnchors(n ast.Node, depth int) {
	if n == nil || depth > MaxDepth {
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

// Resolve follows anchors, aliases and tags to the value node; nil means
// null.
func (d *Decoder) Resolve(n ast.Node) (ast.Node, error) {
	orig := n
	for range MaxDepth {
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
				return nil, d.Errf(v, "unknown alias *%s", name)
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
	return nil, d.Errf(orig, "aliases nest too deeply")
}

// KindName says what a node is, for messages: "a mapping", "a list", ….
func KindName(n ast.Node) string {
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

// Field is one key of a mapping and its value.
type Field struct {
	Key, Val ast.Node
}

// Fields reads a mapping whose keys must be among known; unknown and
// duplicate keys are errors at the key. what names the mapping in
// messages ("job", "boards[2].coap").
func (d *Decoder) Fields(n ast.Node, what string, known ...string) (map[string]Field, error) {
	out := map[string]Field{}
	err := d.eachKey(n, what, func(name string, k, v ast.Node) error {
		if !slices.Contains(known, name) {
			return d.Errf(k, "%s: unknown key %q (known: %s)", what, name, strings.Join(known, ", "))
		}
		if _, dup := out[name]; dup {
			return d.Errf(k, "%s: duplicate key %q", what, name)
		}
		out[name] = Field{Key: k, Val: v}
		return nil
	})
	return out, err
}

// NamedField is a key of a mapping with free keys.
type NamedField struct {
	Name     string
	Key, Val ast.Node
}

// FieldsAny reads a mapping with free keys, in document order; a
// duplicate key is an error. An empty mapping is an error unless
// allowEmpty.
func (d *Decoder) FieldsAny(n ast.Node, what string, allowEmpty bool) ([]NamedField, error) {
	var out []NamedField
	seen := map[string]bool{}
	err := d.eachKey(n, what, func(name string, k, v ast.Node) error {
		if seen[name] {
			return d.Errf(k, "%s: duplicate key %q", what, name)
		}
		seen[name] = true
		out = append(out, NamedField{name, k, v})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 && !allowEmpty {
		return nil, d.Errf(n, "%s: empty mapping", what)
	}
	return out, nil
}

func (d *Decoder) eachKey(n ast.Node, what string, f func(name string, k, v ast.Node) error) error {
	orig := n
	n, err := d.Resolve(n)
	if err != nil {
		return err
	}
	mn, ok := n.(ast.MapNode)
	if !ok {
		at := n
		if at == nil {
			at = orig
		}
		return d.Errf(at, "%s: want a mapping, got %s", what, KindName(n))
	}
	it := mn.MapRange()
	for it.Next() {
		kv := it.KeyValue()
		k := kv.Key
		if k == nil {
			return d.Errf(n, "%s: a key is missing", what)
		}
		if k.IsMergeKey() {
			return d.Errf(k, "%s: merge keys (<<) are not supported", what)
		}
		kr, err := d.Resolve(k)
		if err != nil {
			return err
		}
		name, ok := ScalarText(kr)
		if !ok {
			return d.Errf(k, "%s: keys must be strings", what)
		}
		if err := f(name, k, kv.Value); err != nil {
			return err
		}
	}
	return nil
}

// ScalarText is the text of a scalar as written.
func ScalarText(n ast.Node) (string, bool) {
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

// Str reads a string; numbers and booleans count as their text, so that
// version: 2.0 means "2.0".
func (d *Decoder) Str(n ast.Node, what string) (string, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return "", err
	}
	s, ok := ScalarText(r)
	if !ok || r == nil {
		return "", d.Errf(n, "%s: want a string, got %s", what, KindName(r))
	}
	return s, nil
}

// intNode resolves n to an integer node.
func (d *Decoder) intNode(n ast.Node, what string) (*ast.IntegerNode, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return nil, err
	}
	in, ok := r.(*ast.IntegerNode)
	if !ok {
		return nil, d.Errf(n, "%s: want an integer, got %s", what, KindName(r))
	}
	return in, nil
}

// Int reads an integer.
func (d *Decoder) Int(n ast.Node, what string) (int64, error) {
	in, err := d.intNode(n, what)
	if err != nil {
		return 0, err
	}
	switch v := in.Value.(type) {
	case int64:
		return v, nil
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), nil
		}
	}
	return 0, d.Errf(n, "%s: integer out of range", what)
}

// Uint64 reads a non-negative integer.
func (d *Decoder) Uint64(n ast.Node, what string) (uint64, error) {
	in, err := d.intNode(n, what)
	if err != nil {
		return 0, err
	}
	switch v := in.Value.(type) {
	case int64:
		if v >= 0 {
			return uint64(v), nil
		}
	case uint64:
		return v, nil
	}
	return 0, d.Errf(n, "%s: want a non-negative integer", what)
}

// IntIn reads an integer within [lo, hi].
func (d *Decoder) IntIn(n ast.Node, what string, lo, hi int64) (int64, error) {
	v, err := d.Int(n, what)
	if err != nil {
		return 0, err
	}
	if v < lo || v > hi {
		return 0, d.Errf(n, "%s %d: want %d to %d", what, v, lo, hi)
	}
	return v, nil
}

// Hex reads an unsigned integer of at most bits bits, written in decimal
// or with a 0x prefix (addresses: 0x08000000).
func (d *Decoder) Hex(n ast.Node, what string, bits int) (uint64, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return 0, err
	}
	s, ok := ScalarText(r)
	if !ok || r == nil {
		return 0, d.Errf(n, "%s: want a number such as 0x08000000, got %s", what, KindName(r))
	}
	v, err := strconv.ParseUint(s, 0, bits)
	if err != nil {
		return 0, d.Errf(n, "%s %q: want a %d-bit number such as 0x%0*x", what, s, bits, bits/4, 0)
	}
	return v, nil
}

// Bool reads true or false.
func (d *Decoder) Bool(n ast.Node, what string) (bool, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return false, err
	}
	b, ok := r.(*ast.BoolNode)
	if !ok {
		return false, d.Errf(n, "%s: want true or false, got %s", what, KindName(r))
	}
	return b.Value, nil
}

// Duration reads a non-negative duration of at most limit, written as
// 20ms or 1.5s. A bare 0 is allowed; other numbers need a unit, since "5"
// could mean anything.
func (d *Decoder) Duration(n ast.Node, what string, limit time.Duration) (time.Duration, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return 0, err
	}
	var v time.Duration
	switch t := r.(type) {
	case *ast.IntegerNode:
		if !isZero(t.Value) {
			return 0, d.Errf(n, "%s: %s needs a unit, e.g. %sms", what, t.GetToken().Value, t.GetToken().Value)
		}
	case *ast.StringNode:
		v, err = time.ParseDuration(t.Value)
		if err != nil {
			return 0, d.Errf(n, "%s: %q is not a duration (want e.g. 20ms or 1.5s)", what, t.Value)
		}
	default:
		return 0, d.Errf(n, "%s: want a duration such as 20ms, got %s", what, KindName(r))
	}
	if v < 0 {
		return 0, d.Errf(n, "%s: %v is negative", what, v)
	}
	if v > limit {
		return 0, d.Errf(n, "%s: %v is more than %v", what, v, limit)
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

var sizeRE = regexp.MustCompile(`^\s*(\d+)\s*(|B|KiB|K|k|KB|MiB|M|MB)\s*$`)

// ParseSize reads a byte count written as 524288, 512KiB or 1MiB.
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with KiB or MiB", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > 1<<40 {
		return 0, fmt.Errorf("size %q: out of range", s)
	}
	switch m[2] {
	case "KiB", "K", "k", "KB":
		n <<= 10
	case "MiB", "M", "MB":
		n <<= 20
	}
	return n, nil
}

// Size reads a byte count (an integer, or a string such as 64KiB) within
// [lo, hi].
func (d *Decoder) Size(n ast.Node, what string, lo, hi int64) (int64, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return 0, err
	}
	var v int64
	switch t := r.(type) {
	case *ast.IntegerNode:
		if v, err = d.Int(r, what); err != nil {
			return 0, err
		}
	case *ast.StringNode:
		if v, err = ParseSize(t.Value); err != nil {
			return 0, d.Errf(n, "%s: %v", what, err)
		}
	default:
		return 0, d.Errf(n, "%s: want a size such as 64KiB, got %s", what, KindName(r))
	}
	if v < lo || v > hi {
		return 0, d.Errf(n, "%s %d: want %s to %s", what, v, FormatSize(lo), FormatSize(hi))
	}
	return v, nil
}

// FormatSize writes a byte count the way ParseSize reads it.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Seq reads a list; with one, a single scalar counts as a list of one.
func (d *Decoder) Seq(n ast.Node, what string, one bool) ([]ast.Node, error) {
	r, err := d.Resolve(n)
	if err != nil {
		return nil, err
	}
	if sn, ok := r.(*ast.SequenceNode); ok {
		return sn.Values, nil
	}
	if one && r != nil {
		if _, ok := ScalarText(r); ok {
			return []ast.Node{n}, nil
		}
	}
	return nil, d.Errf(n, "%s: want a list, got %s", what, KindName(r))
}

// IsMap reports whether n resolves to a mapping.
func (d *Decoder) IsMap(n ast.Node) bool {
	r, err := d.Resolve(n)
	if err != nil {
		return false
	}
	_, ok := r.(ast.MapNode)
	return ok
}

// DecodeNode decodes a mapping node strictly into v (a struct with yaml
// tags) through goccy's reflection, for sections a driver owns: an unknown
// key or a value of the wrong kind is an *Error at its position. Keys in
// skip (such as "driver") are left out.
func (d *Decoder) DecodeNode(n ast.Node, v any, skip ...string) error {
	r, err := d.Resolve(n)
	if err != nil {
		return err
	}
	if r == nil {
		return nil
	}
	mn, ok := r.(*ast.MappingNode)
	if !ok {
		return d.Errf(n, "want a mapping, got %s", KindName(r))
	}
	rest := *mn
	rest.Values = nil
	for _, mv := range mn.Values {
		if k, ok := ScalarText(mv.Key); ok && slices.Contains(skip, k) {
			continue
		}
		rest.Values = append(rest.Values, mv)
	}
	if len(rest.Values) == 0 {
		return nil
	}
	if err := nodeToValue(&rest, v); err != nil {
		var pe *PosError
		if errors.As(err, &pe) {
			return Errorf(d.File, pe.Pos, "%v", pe.Err)
		}
		return d.yamlError(err)
	}
	return nil
}

// nodeToValue is goccy's yaml.NodeToValue, strict, with its panics made
// errors: its decoder dereferences a nil iterator when a tagged value is
// not of the kind the field wants (a list field given "!t" and a string
// on the next line). The panic stays inside the decoder, which holds no
// state of ours.
func nodeToValue(n ast.Node, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PosError{Pos: PosOf(n), Err: fmt.Errorf("a value the YAML decoder cannot read (%v)", r)}
		}
	}()
	return yaml.NodeToValue(n, v, yaml.DisallowUnknownField())
}

// PosError is a value error at a position. A type's own UnmarshalYAML
// returns one (see Scalar) so that DecodeNode can report where the bad
// value stands: goccy reports no position for a custom type's errors.
type PosError struct {
	Pos Pos
	Err error
}

func (e *PosError) Error() string { return e.Err.Error() }
func (e *PosError) Unwrap() error { return e.Err }

// Scalar feeds a scalar node's text to parse, for a type's UnmarshalYAML,
// keeping the node's position in the error.
func Scalar(n ast.Node, parse func(string) error) error {
	text := strings.Trim(n.String(), `"'`)
	if err := parse(text); err != nil {
		return &PosError{Pos: PosOf(n), Err: err}
	}
	return nil
}
