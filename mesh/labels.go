package mesh

import (
	"fmt"
	"slices"
	"strings"
)

// Labels are operator-chosen key/value pairs that every node gossips in its
// node state. Selectors match them together with the built-in attributes
// (see Member.Attributes), so the built-in names are reserved.
//
// Keys:   [A-Za-z0-9][A-Za-z0-9._/-]{0,62}
// Values: [A-Za-z0-9._:/@+-]{0,128}

const (
	maxKeyLen   = 63
	maxValueLen = 128
)

// reservedKeys are the built-in attribute names of Member.Attributes. A label
// may not shadow them, or a selector like "idc=a" would become ambiguous.
var reservedKeys = []string{"idc", "name", "status", "version", "zone"}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isKeyChar(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '/' || c == '-'
}

func isValueChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("._:/@+-", c) >= 0
}

// checkKey validates a label or selector key. On failure it returns the byte
// offset of the offending character within k and the reason.
func checkKey(k string) (int, error) {
	if k == "" {
		return 0, fmt.Errorf("empty key")
	}
	if len(k) > maxKeyLen {
		return maxKeyLen, fmt.Errorf("key %q is %d characters, longer than %d", k, len(k), maxKeyLen)
	}
	if !isAlnum(k[0]) {
		return 0, fmt.Errorf("key %q must start with a letter or digit, not %q", k, k[0])
	}
	for i := 1; i < len(k); i++ {
		if !isKeyChar(k[i]) {
			return i, fmt.Errorf("invalid character %q in key %q (allowed: letters, digits, '.', '_', '/', '-')", k[i], k)
		}
	}
	return 0, nil
}

// checkValue validates a label or selector value, like checkKey.
func checkValue(v string) (int, error) {
	if len(v) > maxValueLen {
		return maxValueLen, fmt.Errorf("value %q is %d characters, longer than %d", v, len(v), maxValueLen)
	}
	for i := 0; i < len(v); i++ {
		if !isValueChar(v[i]) {
			return i, fmt.Errorf("invalid character %q in value %q (allowed: letters, digits, '.', '_', ':', '/', '@', '+', '-')", v[i], v)
		}
	}
	return 0, nil
}

func isReserved(k string) bool {
	_, found := slices.BinarySearch(reservedKeys, k)
	return found
}

// ParseLabels parses a comma-separated list of key=value pairs, such as
// "role=web,env=prod". Whitespace around keys, values and commas is ignored;
// an empty or blank string yields an empty map. Values may be empty ("k=").
// Keys may not repeat and may not be one of the reserved attribute names
// (name, idc, zone, status, version). Errors name the offending pair and its
// 1-based byte position in s.
func ParseLabels(s string) (map[string]string, error) {
	out := make(map[string]string)
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	start := 0
	for {
		end := strings.IndexByte(s[start:], ',')
		if end < 0 {
			end = len(s)
		} else {
			end += start
		}
		if err := parseLabel(s, start, end, out); err != nil {
			return nil, err
		}
		if end == len(s) {
			return out, nil
		}
		start = end + 1
	}
}

// parseLabel parses the pair s[start:end] into out.
func parseLabel(s string, start, end int, out map[string]string) error {
	part := s[start:end]
	fail := func(off int, err error) error {
		return fmt.Errorf("mesh: label %q at position %d: %w", strings.TrimSpace(part), start+off+1, err)
	}
	if strings.TrimSpace(part) == "" {
		return fail(0, fmt.Errorf("empty label (stray ',')"))
	}
	eq := strings.IndexByte(part, '=')
	if eq < 0 {
		return fail(leadingSpace(part), fmt.Errorf("missing '=' (want key=value)"))
	}
	rawKey, rawVal := part[:eq], part[eq+1:]
	keyOff := leadingSpace(rawKey)
	key := strings.TrimSpace(rawKey)
	if off, err := checkKey(key); err != nil {
		return fail(keyOff+off, err)
	}
	if isReserved(key) {
		return fail(keyOff, fmt.Errorf("key %q is a reserved attribute (%s)", key, strings.Join(reservedKeys, ", ")))
	}
	valOff := eq + 1 + leadingSpace(rawVal)
	val := strings.TrimSpace(rawVal)
	if off, err := checkValue(val); err != nil {
		return fail(valOff+off, err)
	}
	if _, dup := out[key]; dup {
		return fail(keyOff, fmt.Errorf("duplicate key %q", key))
	}
	out[key] = val
	return nil
}

func leadingSpace(s string) int {
	return len(s) - len(strings.TrimLeft(s, " \t\r\n"))
}

// ValidateLabels checks every key and value of l against the label grammar
// and rejects reserved keys. Keys are checked in sorted order so the error
// is deterministic.
func ValidateLabels(l map[string]string) error {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if _, err := checkKey(k); err != nil {
			return fmt.Errorf("mesh: label %q: %w", k, err)
		}
		if isReserved(k) {
			return fmt.Errorf("mesh: label %q: key is a reserved attribute (%s)", k, strings.Join(reservedKeys, ", "))
		}
		if _, err := checkValue(l[k]); err != nil {
			return fmt.Errorf("mesh: label %q: %w", k, err)
		}
	}
	return nil
}
