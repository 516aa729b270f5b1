package p2p

import (
	"errors"
	"log/slog"
	"testing"
	"time"
)

// newTestHost starts a Host on 127.0.0.1 with an ephemeral port, closed at
// the end of the test. mut may adjust the config first.
func newTestHost(t testing.TB, mut func(*Config)) *Host {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Timeout = 10 * time.Second
	if mut != nil {
		mut(cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantCode fails the test unless err is an *Error with the given code.
func wantCode(t testing.TB, err error, code Code) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want code %s", code)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *Error with code %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("code = %s (err %v), want %s", e.Code, err, code)
	}
	return e
}
