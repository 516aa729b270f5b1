package mesh

import (
	"fmt"
	"slices"
	"strings"
)

// A Selector picks members by their attributes (labels plus the built-ins
// name, idc, zone, status and version; see Member.Attributes). It is a list
// of requirements that must all hold. The zero Selector is empty and matches
// everything.
//
// Grammar (EBNF; whitespace is allowed between any two tokens):
//
//	selector    = [ requirement { "," requirement } ] ;
//	requirement = key                                 (* key exists          *)
//	            | "!" key                             (* key absent          *)
//	            | key ( "=" | "==" | "!=" ) value     (* equality            *)
//	            | key ( "in" | "notin" ) "(" set ")"  (* set membership      *)
//	            ;
//	set         = value { "," value } ;
//	key         = alnum { alnum | "." | "_" | "/" | "-" } ;      (* 1..63 bytes  *)
//	value       = { alnum | "." | "_" | ":" | "/" | "@" | "+" | "-" } ; (* 0..128 *)
//
// A value after "=", "==" or "!=" may be empty ("k=" matches an empty
// value); values inside a set may not. As in Kubernetes, "k!=v" and
// "k notin (...)" also match members that lack k altogether.
//
// Example: "role=web, env in (prod,staging), !canary, zone!=b".
type Selector struct {
	reqs []requirement
}

type selectorOp uint8

const (
	opExists selectorOp = iota + 1
	opAbsent
	opEquals
	opNotEquals
	opIn
	opNotIn
)

type requirement struct {
	key    string
	op     selectorOp
	values []string // one value for equality, one or more for sets
}

func (r requirement) matches(attrs map[string]string) bool {
	v, ok := attrs[r.key]
	switch r.op {
	case opExists:
		return ok
	case opAbsent:
		return !ok
	case opEquals:
		return ok && v == r.values[0]
	case opNotEquals:
		return !ok || v != r.values[0]
	case opIn:
		return ok && slices.Contains(r.values, v)
	case opNotIn:
		return !ok || !slices.Contains(r.values, v)
	}
	return false
}

func (r requirement) String() string {
	switch r.op {
	case opExists:
		return r.key
	case opAbsent:
		return "!" + r.key
	case opEquals:
		return r.key + "=" + r.values[0]
	case opNotEquals:
		return r.key + "!=" + r.values[0]
	case opIn:
		return r.key + " in (" + strings.Join(r.values, ",") + ")"
	case opNotIn:
		return r.key + " notin (" + strings.Join(r.values, ",") + ")"
	}
	return ""
}

// Matches reports whether attrs satisfies every requirement of s.
func (s Selector) Matches(attrs map[string]string) bool {
	for _, r := range s.reqs {
		if !r.matches(attrs) {
			return false
		}
	}
	return true
}

// String returns the canonical form of s ("==" is written "="; one space
// around "in"/"notin"; no other whitespace). ParseSelector(s.String())
// yields a selector equal to s.
func (s Selector) String() string {
	parts := make([]string, len(s.reqs))
	for i, r := range s.reqs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Empty reports whether s has no requirements and so matches everything.
func (s Selector) Empty() bool { return len(s.reqs) == 0 }

// ParseSelector parses s per the grammar in the Selector documentation. A
// blank s yields the empty selector. Errors quote the selector and give the
// 1-based byte position of the problem.
func ParseSelector(s string) (Selector, error) {
	p := &selParser{s: s}
	var sel Selector
	p.skipSpace()
	if p.eof() {
		return sel, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return Selector{}, err
		}
		sel.reqs = append(sel.reqs, r)
		p.skipSpace()
		if p.eof() {
			return sel, nil
		}
		if p.peek() != ',' {
			return Selector{}, p.errorf(p.pos, "expected ',' or end of selector after %q, found %q", r.String(), p.peek())
		}
		p.pos++
		p.skipSpace()
		if p.eof() {
			return Selector{}, p.errorf(p.pos, "expected a requirement after ','")
		}
	}
}

type selParser struct {
	s   string
	pos int
}

func (p *selParser) eof() bool  { return p.pos >= len(p.s) }
func (p *selParser) peek() byte { return p.s[p.pos] }

func (p *selParser) skipSpace() {
	for !p.eof() && strings.IndexByte(" \t\r\n", p.peek()) >= 0 {
		p.pos++
	}
}

func (p *selParser) errorf(pos int, format string, args ...any) error {
	return fmt.Errorf("mesh: selector %q: position %d: %s", p.s, pos+1, fmt.Sprintf(format, args...))
}

// found describes what sits at the current position, for error messages.
func (p *selParser) found() string {
	if p.eof() {
		return "end of selector"
	}
	return fmt.Sprintf("%q", p.peek())
}

func (p *selParser) requirement() (requirement, error) {
	if p.peek() == '!' {
		p.pos++
		p.skipSpace()
		key, err := p.key()
		if err != nil {
			return requirement{}, err
		}
		p.skipSpace()
		if !p.eof() && strings.IndexByte("=!(", p.peek()) >= 0 {
			return requirement{}, p.errorf(p.pos, "\"!%s\" tests that a key is absent and takes no operator; found %q", key, p.peek())
		}
		return requirement{key: key, op: opAbsent}, nil
	}
	key, err := p.key()
	if err != nil {
		return requirement{}, err
	}
	afterKey := p.pos
	p.skipSpace()
	if p.eof() {
		return requirement{key: key, op: opExists}, nil
	}
	switch c := p.peek(); {
	case c == '=':
		p.pos++
		if !p.eof() && p.peek() == '=' {
			p.pos++
		}
		return p.equality(key, opEquals)
	case c == '!':
		p.pos++
		if p.eof() || p.peek() != '=' {
			return requirement{}, p.errorf(p.pos, "expected '=' after '!' in %q, found %s", key+"!", p.found())
		}
		p.pos++
		return p.equality(key, opNotEquals)
	case isAlnum(c):
		wordPos := p.pos
		word := p.word()
		switch word {
		case "in":
			return p.set(key, opIn)
		case "notin":
			return p.set(key, opNotIn)
		}
		return requirement{}, p.errorf(wordPos, "unexpected %q after key %q: expected =, ==, !=, in, notin, ',' or end of selector", word, key)
	default:
		// A bare key: the caller checks what follows.
		p.pos = afterKey
		return requirement{key: key, op: opExists}, nil
	}
}

func (p *selParser) word() string {
	start := p.pos
	for !p.eof() && isKeyChar(p.peek()) {
		p.pos++
	}
	return p.s[start:p.pos]
}

func (p *selParser) key() (string, error) {
	start := p.pos
	if p.eof() || !isAlnum(p.peek()) {
		return "", p.errorf(p.pos, "expected a key (letter or digit first), found %s", p.found())
	}
	key := p.word()
	if off, err := checkKey(key); err != nil {
		return "", p.errorf(start+off, "%v", err)
	}
	return key, nil
}

// value reads a possibly empty value and checks that it ends at a delimiter.
func (p *selParser) value() (string, error) {
	start := p.pos
	for !p.eof() && isValueChar(p.peek()) {
		p.pos++
	}
	v := p.s[start:p.pos]
	if len(v) > maxValueLen {
		return "", p.errorf(start+maxValueLen, "value %q is %d characters, longer than %d", v, len(v), maxValueLen)
	}
	if !p.eof() && strings.IndexByte(" \t\r\n,)", p.peek()) < 0 {
		return "", p.errorf(p.pos, "invalid character %q in value %q (allowed: letters, digits, '.', '_', ':', '/', '@', '+', '-')", p.peek(), v+string(p.peek()))
	}
	return v, nil
}

func (p *selParser) equality(key string, op selectorOp) (requirement, error) {
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return requirement{}, err
	}
	return requirement{key: key, op: op, values: []string{v}}, nil
}

func (p *selParser) set(key string, op selectorOp) (requirement, error) {
	p.skipSpace()
	if p.eof() || p.peek() != '(' {
		return requirement{}, p.errorf(p.pos, "expected '(' to open the value set of %q, found %s", key, p.found())
	}
	p.pos++
	var values []string
	for {
		p.skipSpace()
		start := p.pos
		v, err := p.value()
		if err != nil {
			return requirement{}, err
		}
		if v == "" {
			return requirement{}, p.errorf(start, "empty value in the set of %q (found %s)", key, p.found())
		}
		values = append(values, v)
		p.skipSpace()
		if p.eof() {
			return requirement{}, p.errorf(p.pos, "missing ')' to close the value set of %q", key)
		}
		switch p.peek() {
		case ',':
			p.pos++
		case ')':
			p.pos++
			return requirement{key: key, op: op, values: values}, nil
		default:
			return requirement{}, p.errorf(p.pos, "expected ',' or ')' in the value set of %q, found %q", key, p.peek())
		}
	}
}
