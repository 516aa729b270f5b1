package transfer

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// Sentinel errors. Errors returned by this package wrap one of these where
// it applies, so a caller can classify a failure with errors.Is and still
// print the full message for the user.
var (
	// ErrBadHash: a SHA-256 that is not 64 lowercase hex digits.
	ErrBadHash = errors.New("invalid sha256")
	// ErrNotFound: no such object in the store.
	ErrNotFound = errors.New("object not found")
	// ErrSizeMismatch: a stream or file was shorter or longer than declared.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrDigestMismatch: fetched bytes do not hash to the expected SHA-256/MD5.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrBadDest: the destination path is not absolute and clean.
	ErrBadDest = errors.New("invalid destination")
	// ErrMissingParent: the destination's directory does not exist and
	// Mkdir was not asked for.
	ErrMissingParent = errors.New("destination directory does not exist")
	// ErrIsDir: the destination is a directory and cannot be replaced by a file.
	ErrIsDir = errors.New("destination is a directory")
	// ErrNoSpace: the destination filesystem is full (ENOSPC, EDQUOT).
	ErrNoSpace = errors.New("no space left on device")
	// ErrPermission: EACCES/EPERM/EROFS at the destination.
	ErrPermission = errors.New("permission denied")
	// ErrUnknownOwner: the user or group of an owner spec does not exist.
	ErrUnknownOwner = errors.New("unknown owner")
	// ErrBadMode: a mode string that is not octal in 0..07777.
	ErrBadMode = errors.New("invalid mode")
)

// classify maps an OS error to the sentinel that best describes it, or nil.
func classify(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrNoSpace
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EPERM):
		return ErrPermission
	}
	return nil
}

// kinded returns err so that errors.Is also matches the sentinel classify
// gives it, if any.
func kinded(err error) error {
	if kind := classify(err); kind != nil {
		return withKind(kind, err, "%v", err)
	}
	return err
}

// kindError carries a sentinel kind next to the underlying cause, so that
// errors.Is matches both (ErrNoSpace and syscall.ENOSPC).
type kindError struct {
	kind  error
	msg   string
	cause error
}

func (e *kindError) Error() string   { return e.msg }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.cause} }

// withKind returns an error printing msg and matching kind and cause.
func withKind(kind, cause error, format string, args ...any) error {
	return &kindError{kind: kind, cause: cause, msg: fmt.Sprintf(format, args...)}
}
