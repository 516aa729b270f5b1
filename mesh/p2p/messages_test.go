package p2p

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		body    []byte
	}{
		{"empty", 0, nil},
		{"small", time.Second, []byte("hello")},
		{"sub-millisecond timeout rounds up", time.Microsecond, []byte("x")},
		{"two writes", time.Minute, bytes.Repeat([]byte("y"), readChunk+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeFrame(&buf, requestHeader(tt.timeout), tt.body); err != nil {
				t.Fatal(err)
			}
			p, err := readFrame(bufio.NewReader(&buf), len(tt.body)+maxRequestHeader)
			if err != nil {
				t.Fatal(err)
			}
			timeout, body, err := decodeRequest(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, tt.body) {
				t.Fatalf("body differs")
			}
			if want := (tt.timeout + time.Millisecond - 1).Truncate(time.Millisecond); timeout != want {
				t.Fatalf("timeout = %s, want %s", timeout, want)
			}
		})
	}
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		limit int
		check func(error) bool
	}{
		{"eof", nil, 10, func(err error) bool { return errors.Is(err, io.EOF) }},
		{"short body", []byte{5, 'a'}, 10, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"too large", []byte{11}, 10, func(err error) bool {
			var tl *errFrameTooLarge
			return errors.As(err, &tl) && tl.size == 11
		}},
		{"varint overflow", bytes.Repeat([]byte{0xff}, 11), 10, func(err error) bool { return errors.Is(err, errBadFrame) }},
		{"huge announced size", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 1 << 30, func(err error) bool {
			var tl *errFrameTooLarge
			return errors.As(err, &tl)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readFrame(bufio.NewReader(bytes.NewReader(tt.in)), tt.limit)
			if !tt.check(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestResponseRoundTrip(t *testing.T) {
	body, rerr, err := decodeResponse(append([]byte{statusOK}, "data"...))
	if err != nil || rerr != nil || string(body) != "data" {
		t.Fatalf("ok response = %q, %v, %v", body, rerr, err)
	}
	_, rerr, err = decodeResponse(errorPayload(CodeNotFound, "gone"))
	if err != nil || rerr == nil || rerr.Code != CodeNotFound || rerr.Message != "gone" {
		t.Fatalf("error response = %v, %v", rerr, err)
	}
	for _, bad := range [][]byte{nil, {7}, {statusError}, {statusError, 5, 'a'}, {statusError, 100}} {
		if _, _, err := decodeResponse(bad); !errors.Is(err, errBadFrame) {
			t.Errorf("decodeResponse(%v) err = %v, want errBadFrame", bad, err)
		}
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader and both payload
// decoders, as a hostile peer could. Nothing may panic, nothing may exceed
// the limit, and an encoded error must decode back to itself.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = writeFrame(&buf, requestHeader(time.Second), []byte("hello"))
	f.Add(buf.Bytes(), uint16(100))
	buf.Reset()
	_ = writeFrame(&buf, errorPayload(CodeTooLarge, "big"), nil)
	f.Add(buf.Bytes(), uint16(100))
	buf.Reset()
	_ = writeFrame(&buf, okHeader, []byte("body"))
	f.Add(buf.Bytes(), uint16(3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, uint16(0))
	f.Add([]byte{}, uint16(1))

	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		p, err := readFrame(bufio.NewReader(bytes.NewReader(data)), int(limit))
		if err != nil {
			return
		}
		if len(p) > int(limit) {
			t.Fatalf("payload of %d bytes past limit %d", len(p), limit)
		}
		if timeout, _, err := decodeRequest(p); err == nil && (timeout < 0 || timeout > maxTimeout) {
			t.Fatalf("timeout %s out of range", timeout)
		}
		body, rerr, err := decodeResponse(p)
		if err != nil {
			return
		}
		if rerr != nil {
			if body != nil || rerr.Code == "" {
				t.Fatalf("error response with body or empty code: %v", rerr)
			}
			_, again, err := decodeResponse(errorPayload(rerr.Code, rerr.Message))
			if err != nil || again.Code != rerr.Code || again.Message != rerr.Message {
				t.Fatalf("error %v does not round trip: %v, %v", rerr, again, err)
			}
		}
	})
}
