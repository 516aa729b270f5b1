package model

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"
)

// MaxNameLen bounds the names of scripts, accounts, groups and hosts.
const MaxNameLen = 63

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidateName checks the name of a script, account, group or host: 1..63
// letters, digits, '.', '_' or '-', starting with a letter or digit. what
// names the object in the error ("group name").
func ValidateName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s is empty", what)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%s %q is %d bytes long; the limit is %d", what, name, len(name), MaxNameLen)
	case !nameRE.MatchString(name):
		return fmt.Errorf("%s %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", what, name)
	}
	return nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Langs are the script languages a run may use.
var Langs = []string{"sh", "bash", "python"}

// ValidateLang checks a script language ("" means sh).
func ValidateLang(lang string) error {
	if lang == "" {
		return nil
	}
	for _, l := range Langs {
		if lang == l {
			return nil
		}
	}
	return fmt.Errorf("unknown script language %q (want one of %s)", lang, strings.Join(Langs, ", "))
}

// Validate checks a script spec. A spec whose body comes from the library
// (ScriptRef) is validated after the body is filled in.
func (s ScriptSpec) Validate() error {
	if err := ValidateLang(s.Lang); err != nil {
		return err
	}
	switch {
	case len(s.Body) == 0:
		return fmt.Errorf("the script is empty")
	case len(s.Body) > MaxScriptSize:
		return fmt.Errorf("the script is %d bytes; the limit is %d (256 KiB): distribute large payloads with herd push", len(s.Body), MaxScriptSize)
	case s.Timeout < 0:
		return fmt.Errorf("timeout %s is negative", s.Timeout.Std())
	}
	for i, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argument %d contains a NUL byte", i+1)
		}
	}
	for k, v := range s.Env {
		if !envNameRE.MatchString(k) {
			return fmt.Errorf("environment variable name %q: use letters, digits and '_', not starting with a digit", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("environment variable %s contains a NUL byte", k)
		}
	}
	if s.WorkDir != "" && (!path.IsAbs(s.WorkDir) || !utf8.ValidString(s.WorkDir) || strings.IndexByte(s.WorkDir, 0) >= 0) {
		return fmt.Errorf("workdir %q must be an absolute path", s.WorkDir)
	}
	return nil
}

// Validate checks the shape of a target selection (the selector's grammar
// is checked where it is parsed).
func (t Targets) Validate() error {
	if t.Empty() {
		return fmt.Errorf("no targets: give --all, --hosts, --group or --select")
	}
	if t.IDC != "" {
		if err := ValidateName("idc", t.IDC); err != nil {
			return err
		}
	}
	for _, h := range t.Hosts {
		if err := ValidateName("host name", h); err != nil {
			return err
		}
	}
	for _, g := range t.Groups {
		if err := ValidateName("group name", g); err != nil {
			return err
		}
	}
	return nil
}

// ValidateRunID checks a run id as the API receives it.
func ValidateRunID(id string) error {
	if err := ValidateName("run id", id); err != nil {
		return err
	}
	return nil
}
