package executor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Lang is a script language.
type Lang string

// The supported script languages.
const (
	LangSh     Lang = "sh"
	LangBash   Lang = "bash"
	LangPython Lang = "python"
)

var allLangs = []Lang{LangSh, LangBash, LangPython}

// ParseLang maps a user-supplied language name to a Lang. The empty string
// means sh, the lowest common denominator on every host.
func ParseLang(s string) (Lang, error) {
	if s == "" {
		return LangSh, nil
	}
	for _, l := range allLangs {
		if s == string(l) {
			return l, nil
		}
	}
	names := make([]string, len(allLangs))
	for i, l := range allLangs {
		names[i] = string(l)
	}
	return "", fmt.Errorf("unknown script language %q (allowed: %s)", s, strings.Join(names, ", "))
}

// interpreter returns the argv prefix for lang: the resolved interpreter path
// followed by its flags. It searches pathList (the PATH the script itself will
// see) rather than the agent's PATH, so what runs does not depend on how the
// agent happened to be started.
func interpreter(lang Lang, pathList string) ([]string, error) {
	var candidates []string
	var flags []string
	switch lang {
	case LangSh, "":
		candidates = []string{"sh"}
	case LangBash:
		candidates = []string{"bash"}
	case LangPython:
		candidates = []string{"python3", "python"}
		// -u: unbuffered stdout/stderr, so output is interleaved as produced and
		// `herd logs --follow` sees it live instead of at exit.
		flags = []string{"-u"}
	default:
		return nil, fmt.Errorf("unknown script language %q", lang)
	}
	for _, name := range candidates {
		if p, ok := findExecutable(name, pathList); ok {
			return append([]string{p}, flags...), nil
		}
	}
	return nil, fmt.Errorf("interpreter %s not found on this host (PATH=%s)",
		strings.Join(candidates, " or "), pathList)
}

// findExecutable is exec.LookPath over an explicit PATH value. Empty and
// relative entries are skipped: they would resolve against the agent's
// working directory, which is never what an operator meant.
func findExecutable(name, pathList string) (string, bool) {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}
