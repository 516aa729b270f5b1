package p2p

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Wire format of one RPC. Every protocol served through Handle uses it: the
// caller opens a stream, writes one request frame and closes its write side;
// the handler writes one response frame and closes. A frame is
//
//	uvarint(len(payload)) payload
//
// Request payload:
//
//	version byte (1) | uvarint timeout in milliseconds (0 = none) | body
//
// The timeout carries the caller's remaining budget, so the handler's
// context ends when the caller gives up instead of running on for nothing.
//
// Response payload:
//
//	statusOK    (0) | body
//	statusError (1) | uvarint(len(code)) | code | message
//
// The code travels as its string so codes added later pass through older
// nodes unchanged. Changing any of this means a new version byte.
const (
	requestVersion byte = 1

	statusOK    byte = 0
	statusError byte = 1

	// maxRequestHeader is the most bytes a request header takes.
	maxRequestHeader = 1 + binary.MaxVarintLen64
	// maxCodeLen and maxErrorMessage keep error frames small whatever the
	// handler returned; longer messages are truncated when encoded.
	maxCodeLen      = 64
	maxErrorMessage = 4 << 10
	// maxErrorFrame is the largest error response payload.
	maxErrorFrame = 1 + binary.MaxVarintLen64 + maxCodeLen + maxErrorMessage
	// maxTimeout caps a decoded timeout so a hostile value cannot overflow.
	maxTimeout = 24 * time.Hour
	// readChunk is how much of a large frame is allocated ahead of the data
	// arriving, so a peer announcing a huge frame and sending nothing cannot
	// make us allocate the whole announced size.
	readChunk = 64 << 10
)

// errFrameTooLarge reports a frame whose announced length exceeds the limit;
// nothing after the length prefix has been read.
type errFrameTooLarge struct {
	size  uint64
	limit int
}

func (e *errFrameTooLarge) Error() string {
	return fmt.Sprintf("frame of %d bytes exceeds limit of %d", e.size, e.limit)
}

// errBadFrame reports a malformed frame or payload.
var errBadFrame = errors.New("malformed frame")

// readFrame reads one frame of at most limit payload bytes. r must be a
// ByteReader so that the length prefix is read without over-reading.
func readFrame(r io.ByteReader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: length prefix: %w", errBadFrame, err)
	}
	if n > uint64(limit) {
		return nil, &errFrameTooLarge{size: n, limit: limit}
	}
	rd, ok := r.(io.Reader)
	if !ok {
		return nil, errors.New("frame reader is not an io.Reader")
	}
	size := int(n)
	buf := make([]byte, min(size, readChunk))
	for off := 0; ; {
		m, err := io.ReadFull(rd, buf[off:])
		off += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if off == size {
			return buf, nil
		}
		// Grow by doubling, only as fast as data actually arrives.
		buf = append(buf, make([]byte, min(size-off, off))...)
	}
}

// frameHeader appends the length prefix of a frame whose payload is n bytes.
func frameHeader(dst []byte, n int) []byte {
	return binary.AppendUvarint(dst, uint64(n))
}

// writeFrame writes one frame made of head followed by body. Small frames go
// out in one Write (one yamux frame, one noise message); large ones in two,
// so the body is never copied.
func writeFrame(w io.Writer, head, body []byte) error {
	n := len(head) + len(body)
	if n <= readChunk {
		buf := make([]byte, 0, binary.MaxVarintLen64+n)
		buf = frameHeader(buf, n)
		buf = append(buf, head...)
		buf = append(buf, body...)
		_, err := w.Write(buf)
		return err
	}
	buf := make([]byte, 0, binary.MaxVarintLen64+len(head))
	buf = frameHeader(buf, n)
	buf = append(buf, head...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// requestHeader returns the request payload header for a timeout.
func requestHeader(timeout time.Duration) []byte {
	h := make([]byte, 0, maxRequestHeader)
	h = append(h, requestVersion)
	ms := uint64(0)
	if timeout > 0 {
		ms = uint64((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	return binary.AppendUvarint(h, ms)
}

// decodeRequest splits a request payload into its timeout and body. The body
// aliases p.
func decodeRequest(p []byte) (timeout time.Duration, body []byte, err error) {
	if len(p) == 0 {
		return 0, nil, fmt.Errorf("%w: empty request", errBadFrame)
	}
	if p[0] != requestVersion {
		return 0, nil, fmt.Errorf("%w: request version %d, want %d", errBadFrame, p[0], requestVersion)
	}
	ms, n := binary.Uvarint(p[1:])
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: request timeout", errBadFrame)
	}
	if ms > uint64(maxTimeout/time.Millisecond) {
		ms = uint64(maxTimeout / time.Millisecond)
	}
	return time.Duration(ms) * time.Millisecond, p[1+n:], nil
}

// okHeader is the header of a successful response.
var okHeader = []byte{statusOK}

// errorPayload encodes an error response payload, truncating long fields.
func errorPayload(code Code, msg string) []byte {
	c := string(code)
	if len(c) > maxCodeLen {
		c = c[:maxCodeLen]
	}
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage]
	}
	p := make([]byte, 0, 1+binary.MaxVarintLen64+len(c)+len(msg))
	p = append(p, statusError)
	p = binary.AppendUvarint(p, uint64(len(c)))
	p = append(p, c...)
	return append(p, msg...)
}

// decodeResponse returns the body of a successful response (aliasing p), or
// the *Error a handler sent, or a malformed-frame error.
func decodeResponse(p []byte) ([]byte, *Error, error) {
	if len(p) == 0 {
		return nil, nil, fmt.Errorf("%w: empty response", errBadFrame)
	}
	switch p[0] {
	case statusOK:
		return p[1:], nil, nil
	case statusError:
		n, k := binary.Uvarint(p[1:])
		if k <= 0 {
			return nil, nil, fmt.Errorf("%w: error code length", errBadFrame)
		}
		rest := p[1+k:]
		if n > maxCodeLen || n > uint64(len(rest)) {
			return nil, nil, fmt.Errorf("%w: error code of %d bytes", errBadFrame, n)
		}
		code := Code(rest[:n])
		if code == "" {
			code = CodeInternal
		}
		return nil, &Error{Code: code, Message: string(rest[n:])}, nil
	default:
		return nil, nil, fmt.Errorf("%w: response status %d", errBadFrame, p[0])
	}
}
