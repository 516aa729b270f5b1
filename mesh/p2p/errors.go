package p2p

import (
	"context"
	"errors"
	"fmt"
)

// Code classifies an RPC failure so that callers can decide what to do
// without parsing messages. Codes travel on the wire as strings, so a code
// added by a newer node reaches an older one intact.
type Code string

// The codes a Call can fail with. Handlers choose among them by returning an
// *Error; everything else a handler returns becomes CodeInternal.
const (
	// CodeBadRequest means the request was malformed or invalid.
	CodeBadRequest Code = "bad_request"
	// CodeNotFound means the thing asked for does not exist; Call also uses it
	// when the peer does not handle the protocol at all.
	CodeNotFound Code = "not_found"
	// CodeForbidden means the peer understood the request and refuses it.
	CodeForbidden Code = "forbidden"
	// CodeUnavailable means the peer could not be reached: a dial failure, a
	// refusal by either side's connection gater, a connection lost mid-call, or
	// a closed host. The request may be retried, to this or another peer.
	CodeUnavailable Code = "unavailable"
	// CodeTooLarge means a request or response exceeded MaxMessageSize on
	// the side that reports it.
	CodeTooLarge Code = "too_large"
	// CodeTimeout means the caller's deadline passed before the response
	// arrived (or, on the handler side, before the handler finished).
	CodeTimeout Code = "timeout"
	// CodeInternal means the handler failed in a way it did not classify,
	// including a panic.
	CodeInternal Code = "internal"
)

// Error is the error type of this package. A handler that returns an *Error
// (directly or wrapped) has its Code delivered to the caller; Call returns
// its own failures as *Error too, so errors.As(err, &e) and CodeOf work on
// every error Call returns.
type Error struct {
	Code    Code
	Message string

	// cause is the local error behind this one (a dial or stream error, a
	// context error). It never travels on the wire; it is kept so that
	// errors.Is(err, context.DeadlineExceeded) and friends keep working.
	cause error
}

// Errorf returns an *Error with the given code and a formatted message.
// Use %w to keep a local cause reachable by errors.Is; only the text travels
// to a remote caller.
func Errorf(code Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: err.Error(), cause: errors.Unwrap(err)}
}

// Error formats as "code: message".
func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// Unwrap returns the local cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Retryable reports whether the failure is about reaching the peer rather
// than about the request, so that trying again (later, or elsewhere) may work.
func (e *Error) Retryable() bool {
	return e.Code == CodeUnavailable || e.Code == CodeTimeout
}

// CodeOf returns the Code of the first *Error in err's chain, CodeInternal
// for any other non-nil error, and "" for nil.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// wrapErr builds an *Error around a local cause.
func wrapErr(code Code, cause error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return &Error{Code: code, Message: msg, cause: cause}
}

// toWire turns whatever a handler returned into the code and message sent
// back. A wrapped *Error keeps its code; the message is the full text so the
// wrapping context is not lost.
func toWire(err error) (Code, string) {
	var e *Error
	switch {
	case errors.As(err, &e) && error(e) == err:
		return e.Code, e.Message
	case errors.As(err, &e):
		return e.Code, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout, err.Error()
	case errors.Is(err, context.Canceled):
		// Only our own Close cancels a handler's context.
		return CodeUnavailable, err.Error()
	default:
		return CodeInternal, err.Error()
	}
}
