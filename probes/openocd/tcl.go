package openocd

import (
	"errors"
	"fmt"
	"strings"
)

// errList: a reply is no well-formed Tcl list.
var errList = errors.New("malformed tcl list")

// isSpace reports the bytes that separate Tcl list elements.
func isSpace(b byte) bool {
	switch b {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

// parseList splits s into the elements of a Tcl list as Tcl and Jim Tcl
// (OpenOCD's interpreter) read them: elements are separated by white
// space; an element in braces is taken literally up to the matching
// brace; an element in double quotes or a bare one has its backslash
// sequences substituted. A brace or quote closing an element must be
// followed by white space or the end.
func parseList(s string) ([]string, error) {
	return parseListN(s, -1)
}

// parseListN is parseList that refuses a list of more than max elements
// (no bound when max < 0) as soon as it meets one more: a reply of
// millions of one-byte elements would otherwise cost 16 bytes an element
// and more as the slice grows.
func parseListN(s string, max int) ([]string, error) {
	var elems []string
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return elems, nil
		}
		if len(elems) == max {
			return nil, fmt.Errorf("%w: more than %d elements", errList, max)
		}
		start := i
		var elem string
		switch s[i] {
		case '{':
			depth := 1
			i++
			for depth > 0 {
				if i >= len(s) {
					return nil, fmt.Errorf("%w: unmatched open brace at byte %d", errList, start)
				}
				switch s[i] {
				case '\\':
					// An escaped brace does not count; the
					// backslash stays in the element.
					i++
				case '{':
					depth++
				case '}':
					depth--
				}
				i++
			}
			elem = s[start+1 : i-1]
		case '"':
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf("%w: unmatched quote at byte %d", errList, start)
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' {
					_, n := backslash(s, i)
					i += n
					continue
				}
				i++
			}
			elem = unescape(s[start+1 : i])
			i++
		default:
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					_, n := backslash(s, i)
					i += n
					continue
				}
				i++
			}
			elem = unescape(s[start:i])
		}
		if s[start] == '{' || s[start] == '"' {
			if i < len(s) && !isSpace(s[i]) {
				return nil, fmt.Errorf("%w: element at byte %d is followed by %q instead of a space", errList, start, s[i])
			}
		}
		elems = append(elems, elem)
	}
}

// unescape substitutes the backslash sequences of s.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			i++
			continue
		}
		r, n := backslash(s, i)
		b.WriteString(r)
		i += n
	}
	return b.String()
}

// backslash decodes the backslash sequence at s[i] (a '\\'), returning
// its value and its length in bytes, as Tcl 8.6 does: \a \b \f \n \r \t
// \v, \xH[H], \uH[HHH], \UH[HHHHHHH], up to three octal digits (a third
// only while the value stays below 0400), backslash-newline with the
// spaces and tabs after it as one space, any other byte as itself. A
// backslash at the end stands for itself.
func backslash(s string, i int) (string, int) {
	if i+1 >= len(s) {
		return `\`, 1
	}
	c := s[i+1]
	switch c {
	case 'a':
		return "\a", 2
	case 'b':
		return "\b", 2
	case 'f':
		return "\f", 2
	case 'n':
		return "\n", 2
	case 'r':
		return "\r", 2
	case 't':
		return "\t", 2
	case 'v':
		return "\v", 2
	case 'x', 'u', 'U':
		maxDigits := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
		v, n := 0, 0
		for n < maxDigits && i+2+n < len(s) && isHex(s[i+2+n]) {
			nv := v<<4 | hexVal(s[i+2+n])
			if c == 'U' && nv > 0x10ffff {
				break
			}
			v = nv
			n++
		}
		if n == 0 {
			return string(c), 2
		}
		if c == 'x' {
			return string([]byte{byte(v)}), 2 + n
		}
		return string(rune(v)), 2 + n
	case '\n':
		n := 2
		for i+n < len(s) && (s[i+n] == ' ' || s[i+n] == '\t') {
			n++
		}
		return " ", n
	}
	if c >= '0' && c <= '7' {
		v, n := int(c-'0'), 1
		for n < 3 && i+1+n < len(s) && s[i+1+n] >= '0' && s[i+1+n] <= '7' {
			if n == 2 && v > 037 {
				break
			}
			v = v<<3 | int(s[i+1+n]-'0')
			n++
		}
		return string([]byte{byte(v)}), 1 + n
	}
	return string(c), 2
}

func isHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}

func hexVal(b byte) int {
	switch {
	case b >= '0' && b <= '9':
		return int(b - '0')
	case b >= 'a' && b <= 'f':
		return int(b-'a') + 10
	}
	return int(b-'A') + 10
}

// quote returns s as one Tcl word (and list element): bare when nothing
// in it is special, in braces when they keep it literal, else with
// backslashes.
func quote(s string) string {
	if s == "" {
		return "{}"
	}
	special := false
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) || strings.IndexByte(`{}[]$";\#`, s[i]) >= 0 {
			special = true
			break
		}
	}
	if !special {
		return s
	}
	if bracesBalanced(s) && !strings.Contains(s, `\`) {
		return "{" + s + "}"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		case '\v':
			b.WriteString(`\v`)
		case '\f':
			b.WriteString(`\f`)
		case ' ', '{', '}', '[', ']', '$', '"', ';', '\\', '#':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// joinList makes a Tcl list of elems.
func joinList(elems ...string) string {
	q := make([]string, len(elems))
	for i, e := range elems {
		q[i] = quote(e)
	}
	return strings.Join(q, " ")
}

// bracesBalanced reports whether every '}' in s closes an earlier '{'
// and every '{' is closed, ignoring nothing: callers exclude
// backslashes when that matters.
func bracesBalanced(s string) bool {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}

// bodySafe reports whether script can be put between braces as the body
// of catch, the way Tcl counts braces there: a backslash escapes the byte
// after it, so it must not be the last one; braces must balance. It also
// refuses the frame terminator, which would cut the command short.
func bodySafe(script string) error {
	depth := 0
	for i := 0; i < len(script); i++ {
		switch script[i] {
		case terminator:
			return errors.New("contains the byte 0x1a, which ends a tcl rpc command")
		case '\\':
			if i+1 >= len(script) {
				return errors.New("ends in a backslash")
			}
			if script[i+1] == terminator {
				return errors.New("contains the byte 0x1a, which ends a tcl rpc command")
			}
			i++
		case '{':
			depth++
		case '}':
			depth--
			if depth < 0 {
				return fmt.Errorf("has an unmatched close brace at byte %d", i)
			}
		}
	}
	if depth != 0 {
		return errors.New("has an unmatched open brace")
	}
	return nil
}
