package config

import (
	"regexp"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Environment variables in the values of bench and job files read from
// disk: ${NAME}, or ${NAME:-default} for a value to use when NAME is unset
// or empty; $${ stands for a literal ${. A bare $NAME is left as written,
// so regular expressions ending in $ mean what they say.

var varRE = regexp.MustCompile(`\$\$\{|\$\{([^}]*)\}`)

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ExpandEnv replaces the variables in every scalar value below body (keys
// are never expanded) with lookup's values. A plain scalar that held a
// variable is read again after expansion, so `baud: ${BAUD}` is a number
// when BAUD is one; a quoted one stays a string. An unset variable without
// a default, or a malformed reference, is an *Error at its value.
func (d *Decoder) ExpandEnv(body ast.Node, lookup func(string) (string, bool)) error {
	if body == nil {
		return nil
	}
	_, err := d.expand(body, lookup, 0)
	return err
}

// RefuseEnv makes a variable below body an *Error saying why, for text
// that does not come from a file on this host (a job sent to a lab):
// whose environment would it be?
func (d *Decoder) RefuseEnv(body ast.Node, why string) error {
	if body == nil {
		return nil
	}
	d.noEnv = why
	_, err := d.expand(body, nil, 0)
	return err
}

// expand expands n's values; it returns the node to put in n's place (n
// itself unless a plain scalar was read again).
func (d *Decoder) expand(n ast.Node, lookup func(string) (string, bool), depth int) (ast.Node, error) {
	if depth > MaxDepth {
		return n, d.Errf(n, "nesting deeper than %d levels", MaxDepth)
	}
	switch v := n.(type) {
	case *ast.MappingNode:
		for _, mv := range v.Values {
			if _, err := d.expand(mv, lookup, depth+1); err != nil {
				return n, err
			}
		}
	case *ast.MappingValueNode:
		nv, err := d.expand(v.Value, lookup, depth+1)
		if err != nil {
			return n, err
		}
		v.Value = nv
	case *ast.SequenceNode:
		for i, it := range v.Values {
			nv, err := d.expand(it, lookup, depth+1)
			if err != nil {
				return n, err
			}
			v.Values[i] = nv
		}
	case *ast.TagNode:
		nv, err := d.expand(v.Value, lookup, depth+1)
		if err != nil {
			return n, err
		}
		v.Value = nv
	case *ast.AnchorNode:
		nv, err := d.expand(v.Value, lookup, depth+1)
		if err != nil {
			return n, err
		}
		v.Value = nv
	case *ast.LiteralNode:
		if v.Value != nil {
			s, _, err := d.expandText(v.Value, v.Value.Value, lookup)
			if err != nil {
				return n, err
			}
			v.Value.Value = s
		}
	case *ast.StringNode:
		s, changed, err := d.expandText(v, v.Value, lookup)
		if err != nil || !changed {
			return n, err
		}
		tk := v.GetToken()
		if tk != nil && tk.Type == token.StringType {
			// A plain scalar: read what it now says.
			if nn := plainScalar(s, tk); nn != nil {
				return nn, nil
			}
		}
		v.Value = s
	}
	return n, nil
}

// expandText expands the variables in s, the text of node n.
func (d *Decoder) expandText(n ast.Node, s string, lookup func(string) (string, bool)) (string, bool, error) {
	if !strings.Contains(s, "${") {
		return s, false, nil
	}
	var err error
	out := varRE.ReplaceAllStringFunc(s, func(m string) string {
		if err != nil {
			return m
		}
		if m == "$${" {
			return "${"
		}
		if lookup == nil {
			err = d.Errf(n, "%s: %s", m, d.noEnv)
			return m
		}
		ref := m[2 : len(m)-1]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !nameRE.MatchString(name) {
			err = d.Errf(n, "%q: want ${NAME} or ${NAME:-default}, NAME of letters, digits and _ (write $${ for a literal ${)", m)
			return m
		}
		if v, ok := lookup(name); ok && (v != "" || !hasDef) {
			return v
		}
		if hasDef {
			return def
		}
		err = d.Errf(n, "${%s} is not set in the environment (give a default with ${%s:-value})", name, name)
		return m
	})
	if err != nil {
		return s, false, err
	}
	return out, true, nil
}

// plainScalar reads text as a plain YAML scalar at tk's position; nil when
// it is not a single scalar (it stays a string then).
func plainScalar(text string, tk *token.Token) ast.Node {
	if strings.ContainsAny(text, "\n#:{}[],&*!|>'\"%@`") || strings.TrimSpace(text) != text || text == "" {
		return nil
	}
	f, err := parser.ParseBytes([]byte(text), 0)
	if err != nil || len(f.Docs) != 1 || f.Docs[0].Body == nil {
		return nil
	}
	n := f.Docs[0].Body
	switch n.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.StringNode:
	default:
		return nil
	}
	if t := n.GetToken(); t != nil {
		pos := *tk.Position
		t.Position = &pos
	}
	return n
}
