package executor

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Spec is what to run.
type Spec struct {
	// Lang selects the interpreter; "" means sh.
	Lang Lang
	// Script is the script body. It may be any bytes, including non-UTF-8.
	Script []byte
	// Args are the positional arguments ($1.. in sh/bash, sys.argv[1:] in python).
	Args []string
	// Env is added to the clean base environment and wins over it. Names must
	// match [A-Za-z_][A-Za-z0-9_]*.
	Env map[string]string
	// Timeout bounds the main process's lifetime; 0 means no timeout.
	Timeout time.Duration
	// WorkDir is the absolute working directory; "" means the account's home
	// if it exists, else "/".
	WorkDir string
	// User is the OS user to run as; "" means the agent's own user.
	User string
	// RunID and Host are labels exported as HERD_RUN_ID and HERD_HOST. They are
	// informational only: nothing here depends on their values.
	RunID, Host string
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every problem with s at once (joined), so an operator can
// fix a bad request in one round trip. It never touches the host: whether the
// user, the interpreter or the workdir exist is only known on the target and
// is reported by Run.
func (s Spec) Validate() error {
	var errs []error
	if _, err := ParseLang(string(s.Lang)); err != nil {
		errs = append(errs, err)
	}
	if len(s.Script) == 0 {
		errs = append(errs, errors.New("script is empty"))
	}
	for i, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			errs = append(errs, fmt.Errorf("argument %d contains a NUL byte", i+1))
		}
	}
	// Sorted so the joined error reads the same every time.
	names := make([]string, 0, len(s.Env))
	for k := range s.Env {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !envNameRE.MatchString(k) {
			errs = append(errs, fmt.Errorf("env name %q is invalid (must match [A-Za-z_][A-Za-z0-9_]*)", k))
		}
		if strings.IndexByte(s.Env[k], 0) >= 0 {
			errs = append(errs, fmt.Errorf("env %s: value contains a NUL byte", k))
		}
	}
	if s.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", s.Timeout))
	}
	if s.WorkDir != "" {
		switch {
		case strings.IndexByte(s.WorkDir, 0) >= 0:
			errs = append(errs, errors.New("workdir contains a NUL byte"))
		case !filepath.IsAbs(s.WorkDir):
			errs = append(errs, fmt.Errorf("workdir %q is not an absolute path", s.WorkDir))
		}
	}
	if strings.IndexByte(s.User, 0) >= 0 {
		errs = append(errs, errors.New("user contains a NUL byte"))
	}
	if strings.IndexByte(s.RunID, 0) >= 0 {
		errs = append(errs, errors.New("run id contains a NUL byte"))
	}
	if strings.IndexByte(s.Host, 0) >= 0 {
		errs = append(errs, errors.New("host contains a NUL byte"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid spec: %w", errors.Join(errs...))
}
