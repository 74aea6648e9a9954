package config

// Limits on what a bench or job file may ask of the YAML parser.
//
// goccy/go-yaml's parser does quadratic work in several shapes of input:
// in nesting depth (a 200 KB file of nested brackets took 15 GB), in the
// keys of one mapping, in the number of documents, and in the number of
// values left empty (each inserts a token into the middle of a slice).
// Its lexer is linear. So a file is checked in three steps before the
// parser sees it:
//
//  1. its size, before it is read (ReadFile) and again in Parse;
//  2. a byte scan that costs no allocation and refuses the cheap bombs
//     (brackets or "- " chains thousands deep) before the lexer turns
//     every byte into a token;
//  3. the lexer's tokens, with the exact limits (MaxTokens, MaxDepth,
//     MaxKeys, MaxEmpty, one document), then the parser runs on those
//     tokens.
//
// After parsing, aliases are expanded in count only: what they add is
// bounded by MaxAliasNodes (a "billion laughs" file is refused).

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

const (
	// MaxFileSize bounds a bench or job file. The bench file `fudbench
	// sim --write-bench` writes takes 670 bytes a board (about 400
	// boards fit); the parser takes up to about 600 bytes of allocation
	// per byte of input.
	MaxFileSize = 256 << 10
	// MaxKeys bounds the keys of one mapping.
	MaxKeys = 1000
	// MaxEmpty bounds the values left empty ("key:" with nothing, "-"
	// alone) in one file.
	MaxEmpty = 1000
	// MaxAliasNodes bounds the nodes aliases add when expanded.
	MaxAliasNodes = 100_000
	// MaxTokens bounds the lexer's tokens (keys, values, indicators,
	// comments) the parser is given: it allocates about 500 bytes per
	// token. A simulated board's bench entry has about 120.
	MaxTokens = 50_000

	// scanDepth is where the byte scan gives up: far past MaxDepth, so
	// that brackets inside strings never make it refuse a good file.
	scanDepth = 16 * MaxDepth
)

// ReadFile reads a bench or job file (what says which, for messages),
// refusing one larger than MaxFileSize before reading it.
func ReadFile(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Errorf(path, Pos{}, "cannot read %s: %v", what, unwrapPath(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, Errorf(path, Pos{}, "%s of %s is too large: the limit is %s", what, humanSize(fi.Size()), FormatSize(MaxFileSize))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, Errorf(path, Pos{}, "cannot read %s: %v", what, unwrapPath(err))
	}
	if len(data) > MaxFileSize {
		return nil, Errorf(path, Pos{}, "%s is too large: more than the limit of %s", what, FormatSize(MaxFileSize))
	}
	return data, nil
}

// unwrapPath drops the path an *fs.PathError repeats: the message already
// starts with it.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// scanBytes refuses the bombs that are cheap to write and cheap to find:
// brackets, or "- " and "? " chains on one line, nested scanDepth deep.
// It counts brackets anywhere (in strings and comments too) and
// allocates nothing; the exact limits are checkTokens's.
func scanBytes(file string, data []byte) error {
	depth, line, lineStart := 0, 1, 0
	atIndent, chain := true, 0
	for i, c := range data {
		switch c {
		case '\n':
			line, lineStart, atIndent, chain = line+1, i+1, true, 0
			continue
		case '[', '{':
			depth++
			if depth > scanDepth {
				return bytesErr(file, data, line, lineStart, i, "brackets nest more than %d deep (the limit is %d levels)", scanDepth, MaxDepth)
			}
		case ']', '}':
			if depth > 0 {
				depth--
			}
		case '-', '?':
			if atIndent && (i+1 == len(data) || data[i+1] == ' ' || data[i+1] == '\t') {
				chain++
				if chain > scanDepth {
					return bytesErr(file, data, line, lineStart, i, "more than %d %q indicators on one line (the limit is %d levels)", scanDepth, string(c), MaxDepth)
				}
				continue
			}
		case ' ', '\t':
			continue
		}
		atIndent = false
	}
	return nil
}

// bytesErr is an *Error at byte i of data, whose line starts at
// lineStart; the column counts runes, as editors do.
func bytesErr(file string, data []byte, line, lineStart, i int, format string, a ...any) error {
	return Errorf(file, Pos{line, utf8.RuneCount(data[lineStart:i]) + 1}, format, a...)
}

// blockLevel is an open block collection: its column and what it holds.
type blockLevel struct {
	col int
	seq bool
	n   int // keys or entries so far
	// bare is the token after the sequence's last "-" when that "-"
	// had nothing after it on its line, else -1. The parser takes a key
	// there at the "-"'s own column as the entry's value, a mapping
	// nested in the entry (where YAML would end the sequence), so such
	// a key opens a level.
	bare int
}

// flowLevel is an open flow collection.
type flowLevel struct {
	mapping bool
	n       int  // entries so far
	entry   bool // the current entry has content
	colon   bool // the current entry has a ':'
	dashes  int  // "-" in the current entry: the parser nests each
	pairs   int  // ':' after the first in a mapping's entry: each nests a mapping
}

// tokenCheck holds the state of checkTokens.
type tokenCheck struct {
	file      string
	tks       token.Tokens
	block     []blockLevel
	flow      []flowLevel
	empty     int
	lastQ     *token.Token // the last block "?" seen
	directive int          // the line of the last directive (%YAML)
	nestAt    int          // the token after a tag alone at the end of its line
	dashes    int          // the flow levels' dashes, together
	pairs     int          // the flow levels' nested pairs, together
	docs      int
	body      bool // a token of the document's content was seen
	ended     bool // a "..." was seen
	stats     TokenStats
	limits    bool // enforce the limits (false: only measure, for tests)
}

// TokenStats is what checkTokens measured of a file: the deepest
// nesting, the most keys in one mapping and the empty values.
type TokenStats struct {
	Depth, Keys, Empty int
}

// checkTokens applies the exact limits to the lexer's tokens of a file.
func checkTokens(file string, tks token.Tokens) error {
	c := &tokenCheck{file: file, tks: tks, limits: true, nestAt: -1}
	return c.run()
}

// measureTokens returns what checkTokens measures, without limits.
func measureTokens(tks token.Tokens) TokenStats {
	c := &tokenCheck{tks: tks, nestAt: -1}
	_ = c.run()
	return c.stats
}

func (c *tokenCheck) errAt(tk *token.Token, format string, a ...any) error {
	return Errorf(c.file, Pos{tk.Position.Line, tk.Position.Column}, format, a...)
}

func (c *tokenCheck) run() error {
	for i, tk := range c.tks {
		if c.limits && i == MaxTokens {
			return c.errAt(tk, "more than %d YAML tokens (keys, values, indicators): too large for a bench or job file", MaxTokens)
		}
		switch tk.Type {
		case token.CommentType:
			continue
		case token.DocumentHeaderType:
			if c.limits && (c.body || c.docs > 0 || c.ended) {
				return c.errAt(tk, "more than one YAML document: a second starts here, and the file holds one")
			}
			c.docs++
			continue
		case token.DocumentEndType:
			c.ended = true
			continue
		case token.DirectiveType:
			c.directive = tk.Position.Line
			continue
		}
		if tk.Position.Line == c.directive {
			continue // the directive's own words
		}
		if c.ended && c.limits {
			return c.errAt(tk, "more than one YAML document: this follows the end marker \"...\", and the file holds one")
		}
		c.body = true
		var err error
		if len(c.flow) > 0 {
			err = c.flowToken(i, tk)
		} else {
			err = c.blockToken(i, tk)
		}
		if err != nil {
			return err
		}
		if tk.Type == token.TagType || tk.Type == token.AnchorType {
			if err := c.bareProperty(i, tk); err != nil {
				return err
			}
		}
	}
	return nil
}

// bareProperty counts a tag or an anchor with no value after it on its
// line as an empty value: the parser gives it a null.
func (c *tokenCheck) bareProperty(i int, tk *token.Token) error {
	j := i + 1
	if tk.Type == token.AnchorType {
		j++ // its name
	}
	for j < len(c.tks) && c.tks[j].Type == token.CommentType {
		j++
	}
	if j < len(c.tks) && c.tks[j].Position.Line == tk.Position.Line {
		switch c.tks[j].Type {
		case token.CollectEntryType, token.SequenceEndType, token.MappingEndType, token.MappingValueType:
			// "!t :" is an empty key.
		default:
			return nil
		}
	}
	if len(c.flow) == 0 && j < len(c.tks) && c.takesNext(i, tk) {
		// The parser takes whatever comes next, at any column, as the
		// property's value: a key or "-" there opens a level.
		last := i
		if tk.Type == token.AnchorType {
			last++ // its name
		}
		c.nestAt = c.nextValue(last)
	}
	return c.addEmpty(tk)
}

// takesNext reports whether the parser takes the node after the tag or
// anchor at i, alone at the end of its line, as its value: a tag always;
// an anchor unless it follows a "-" or a key's ":" on its line (then the
// column of what follows decides, as for an empty value).
func (c *tokenCheck) takesNext(i int, tk *token.Token) bool {
	if tk.Type == token.TagType {
		return true
	}
	p := c.prev(i)
	if p < 0 || c.tks[p].Position.Line != tk.Position.Line {
		return true
	}
	switch c.tks[p].Type {
	case token.SequenceEntryType, token.MappingValueType, token.MappingKeyType:
		return false
	}
	return true
}

// next returns the index of the first token after i that is not a
// comment, or -1.
func (c *tokenCheck) next(i int) int {
	for j := i + 1; j < len(c.tks); j++ {
		if c.tks[j].Type != token.CommentType {
			return j
		}
	}
	return -1
}

// nextValue returns the index of the first token after i that is not a
// comment, anchor or tag (they leave a value empty), or -1.
func (c *tokenCheck) nextValue(i int) int {
	for j := i + 1; j < len(c.tks); j++ {
		switch c.tks[j].Type {
		case token.CommentType, token.TagType:
			continue
		case token.AnchorType:
			j++ // and its name
			continue
		}
		return j
	}
	return -1
}

func (c *tokenCheck) prev(i int) int {
	for j := i - 1; j >= 0; j-- {
		if c.tks[j].Type != token.CommentType {
			return j
		}
	}
	return -1
}

func (c *tokenCheck) addEmpty(tk *token.Token) error {
	c.empty++
	c.stats.Empty = c.empty
	if c.limits && c.empty > MaxEmpty {
		return c.errAt(tk, "more than %d empty values in the file", MaxEmpty)
	}
	return nil
}

func (c *tokenCheck) push(tk *token.Token) error {
	d := len(c.block) + len(c.flow) + c.dashes + c.pairs
	c.stats.Depth = max(c.stats.Depth, d)
	if c.limits && d > MaxDepth {
		return c.errAt(tk, "nested more than %d levels deep", MaxDepth)
	}
	return nil
}

func (c *tokenCheck) count(tk *token.Token, n int, mapping bool) error {
	if !mapping {
		return nil
	}
	c.stats.Keys = max(c.stats.Keys, n)
	if c.limits && n > MaxKeys {
		return c.errAt(tk, "a mapping with more than %d keys", MaxKeys)
	}
	return nil
}

// blockToken follows the block structure by columns: a "-" opens or
// continues the sequence at its column, a key the mapping at its.
func (c *tokenCheck) blockToken(i int, tk *token.Token) error {
	switch tk.Type {
	case token.SequenceStartType, token.MappingStartType:
		c.flow = append(c.flow, flowLevel{mapping: tk.Type == token.MappingStartType})
		return c.push(tk)
	case token.SequenceEntryType:
		col := tk.Position.Column
		for len(c.block) > 0 && c.top().col > col && i != c.nestAt {
			c.block = c.block[:len(c.block)-1]
		}
		if len(c.block) > 0 && c.top().col == col && c.top().seq && i != c.nestAt {
			c.top().n++
		} else {
			c.block = append(c.block, blockLevel{col: col, seq: true, n: 1, bare: -1})
			if err := c.push(tk); err != nil {
				return err
			}
		}
		c.top().bare = -1
		if j := c.nextValue(i); j >= 0 && c.tks[j].Position.Line > tk.Position.Line {
			c.top().bare = j
		}
		if c.emptyAfter(i, col, false) {
			return c.addEmpty(tk)
		}
	case token.MappingKeyType:
		c.lastQ = tk
		if err := c.key(i, i, tk.Position.Column); err != nil {
			return err
		}
		// The value may be missing (no ": " follows): counted as empty,
		// whatever follows.
		return c.addEmpty(tk)
	case token.MappingValueType:
		col := tk.Position.Column
		p := c.prev(i)
		explicit := p < 0 || c.tks[p].Position.Line < tk.Position.Line && c.lastQ != nil && c.lastQ.Position.Column == col
		if !explicit {
			p = c.keyStart(p)
			col = c.tks[p].Position.Column
			if err := c.key(p, i, col); err != nil {
				return err
			}
		}
		if c.emptyAfter(i, col, true) {
			return c.addEmpty(tk)
		}
	}
	return nil
}

func (c *tokenCheck) top() *blockLevel { return &c.block[len(c.block)-1] }

// keyStart walks back from a key's last token over the anchor, alias
// and tag tokens before it on its line.
func (c *tokenCheck) keyStart(p int) int {
	line := c.tks[p].Position.Line
	for p > 0 {
		q := c.tks[p-1]
		if q.Type == token.AnchorType || q.Type == token.AliasType || q.Type == token.LiteralType || q.Type == token.FoldedType {
			// An anchor's or alias's name, or a block scalar's text,
			// wherever it stands.
			p--
			line = q.Position.Line
			continue
		}
		if q.Position.Line != line {
			break
		}
		switch {
		case q.Type == token.TagType:
		case p > 1 && (c.tks[p-2].Type == token.AnchorType || c.tks[p-2].Type == token.AliasType) && c.tks[p-2].Position.Line == line:
		default:
			return p
		}
		p--
	}
	return p
}

// key counts the key whose tokens are p to end (its ":"), at column
// col.
func (c *tokenCheck) key(p, end, col int) error {
	tk := c.tks[p]
	in := func(j int) bool { return j >= p && j <= end }
	nest := in(c.nestAt)
	for len(c.block) > 0 && !nest && (c.top().col > col || c.top().col == col && c.top().seq && !in(c.top().bare)) {
		c.block = c.block[:len(c.block)-1]
	}
	if len(c.block) > 0 && c.top().col == col && !c.top().seq && !nest {
		c.top().n++
		return c.count(tk, c.top().n, true)
	}
	c.block = append(c.block, blockLevel{col: col, n: 1})
	if err := c.push(tk); err != nil {
		return err
	}
	return c.count(tk, 1, true)
}

// emptyAfter reports whether the indicator at token i (a key's ":" or
// "?" at column col, or a "-") is followed by no value: nothing more on
// its line and nothing indented deeper after it (a key's value may be a
// sequence at the key's own column).
func (c *tokenCheck) emptyAfter(i, col int, isKey bool) bool {
	j := c.next(i)
	if j < 0 {
		return true
	}
	n := c.tks[j]
	switch n.Type {
	case token.DocumentHeaderType, token.DocumentEndType:
		return true
	}
	if n.Position.Line == c.tks[i].Position.Line {
		return false
	}
	switch {
	case n.Position.Column > col:
		return false
	case n.Position.Column < col:
		return true
	case isKey:
		// A key's value may be a sequence at the key's own column.
		return n.Type != token.SequenceEntryType
	}
	// After a bare "-", the parser takes anything at its column but
	// another "-" as the entry's value.
	return n.Type == token.SequenceEntryType
}

// flowToken follows brackets, counting a flow mapping's entries and the
// empty values in it.
func (c *tokenCheck) flowToken(i int, tk *token.Token) error {
	f := &c.flow[len(c.flow)-1]
	switch tk.Type {
	case token.SequenceStartType, token.MappingStartType:
		f.entry = true
		c.flow = append(c.flow, flowLevel{mapping: tk.Type == token.MappingStartType})
		return c.push(tk)
	case token.SequenceEndType, token.MappingEndType, token.CollectEntryType:
		if f.entry || f.colon {
			f.n++
			if err := c.count(tk, f.n, f.mapping); err != nil {
				return err
			}
			if f.mapping && !f.colon {
				// {a, b}: a key without a value.
				if err := c.addEmpty(tk); err != nil {
					return err
				}
			}
		}
		f.entry, f.colon = false, false
		c.dashes -= f.dashes
		f.dashes = 0
		c.pairs -= f.pairs
		f.pairs = 0
		if tk.Type != token.CollectEntryType {
			c.flow = c.flow[:len(c.flow)-1]
		}
	case token.SequenceEntryType:
		// [- a]: the parser reads a block sequence inside brackets.
		f.entry = true
		f.dashes++
		c.dashes++
		c.flow = append(c.flow, flowLevel{})
		err := c.push(tk)
		c.flow = c.flow[:len(c.flow)-1]
		return err
	case token.MappingValueType:
		if f.mapping && f.colon {
			// {a: b: c}: the parser reads b: c as a mapping in a's value.
			f.pairs++
			c.pairs++
			if err := c.push(tk); err != nil {
				return err
			}
		}
		f.colon = true
		if !f.mapping {
			// [a: b]: an entry that is a mapping of one pair.
			c.flow = append(c.flow, flowLevel{mapping: true})
			err := c.push(tk)
			c.flow = c.flow[:len(c.flow)-1]
			if err != nil {
				return err
			}
			if err := c.count(tk, 1, true); err != nil {
				return err
			}
		}
		if j := c.next(i); j < 0 || c.tks[j].Type == token.CollectEntryType || c.tks[j].Type == token.SequenceEndType || c.tks[j].Type == token.MappingEndType {
			return c.addEmpty(tk)
		}
	default:
		f.entry = true
	}
	return nil
}

// expansion bounds what aliases add to the document once expanded: the
// nodes each alias stands for, counted once per anchor, and the depth an
// alias reaches where it is used.
type expansion struct {
	d        *Decoder
	memo     map[string][2]int // anchor → nodes, height
	visiting map[string]bool
	added    int
}

func (d *Decoder) checkAliases(body ast.Node) error {
	e := &expansion{d: d, memo: map[string][2]int{}, visiting: map[string]bool{}}
	_, _, err := e.walk(body, 0, nil)
	return err
}

// walk returns the nodes under n with aliases expanded, and n's height
// in collections (a mapping's key-value pair is not a level of its own).
func (e *expansion) walk(n ast.Node, depth int, parent ast.Node) (nodes, height int, err error) {
	if n == nil || depth > 2*MaxDepth {
		return 0, 0, nil
	}
	var kids []ast.Node
	switch v := n.(type) {
	case *ast.AliasNode:
		name := ""
		if v.Value != nil {
			if tk := v.Value.GetToken(); tk != nil {
				name = tk.Value
			}
		}
		target, ok := e.d.anchors[name]
		if !ok {
			return 1, 0, nil // Resolve reports it where it is used
		}
		if e.visiting[name] {
			return 0, 0, e.d.Errf(v, "alias *%s is inside the anchor &%s it refers to", name, name)
		}
		m, seen := e.memo[name]
		if !seen {
			e.visiting[name] = true
			m[0], m[1], err = e.walk(target, 0, nil)
			delete(e.visiting, name)
			if err != nil {
				return 0, 0, err
			}
			e.memo[name] = m
		}
		e.added += m[0]
		if e.added > MaxAliasNodes {
			return 0, 0, e.d.Errf(v, "aliases expand to more than %d nodes", MaxAliasNodes)
		}
		if depth+m[1] > MaxDepth {
			return 0, 0, e.d.Errf(v, "alias *%s nests more than %d levels deep where it is used", name, MaxDepth)
		}
		return m[0], m[1], nil
	case *ast.AnchorNode:
		kids = []ast.Node{v.Value}
	case *ast.TagNode:
		kids = []ast.Node{v.Value}
	case *ast.MappingNode:
		for _, mv := range v.Values {
			kids = append(kids, mv)
		}
	case *ast.MappingValueNode:
		kids = []ast.Node{v.Key, v.Value}
	case *ast.SequenceNode:
		kids = v.Values
	}
	level := 0
	switch n.(type) {
	case *ast.MappingNode, *ast.SequenceNode:
		level = 1
	case *ast.MappingValueNode:
		if _, ok := parent.(*ast.MappingNode); !ok {
			level = 1
		}
	}
	nodes = 1
	for _, k := range kids {
		kn, kh, err := e.walk(k, depth+level, n)
		if err != nil {
			return 0, 0, err
		}
		nodes += kn
		height = max(height, kh+level)
		if nodes > MaxAliasNodes+1 {
			nodes = MaxAliasNodes + 1 // saturate: sums stay small
		}
	}
	return nodes, height, nil
}

// checkSize refuses data larger than MaxFileSize.
func checkSize(file string, n int) error {
	if n > MaxFileSize {
		return &Error{File: file, Msg: fmt.Sprintf("%s of text is too large: the limit is %s", humanSize(int64(n)), FormatSize(MaxFileSize))}
	}
	return nil
}

// humanSize writes a byte count for a message: 10.4 MiB, 262145 bytes.
func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
