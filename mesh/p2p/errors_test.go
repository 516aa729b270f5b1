package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestCodeOfAndWire(t *testing.T) {
	typed := Errorf(CodeNotFound, "run %d: %w", 7, io.EOF)
	tests := []struct {
		name     string
		err      error
		code     Code   // CodeOf
		wireCode Code   // toWire
		wireMsg  string // toWire
	}{
		{"nil", nil, "", "", ""},
		{"typed", typed, CodeNotFound, CodeNotFound, "run 7: EOF"},
		{"wrapped typed", fmt.Errorf("lookup: %w", typed), CodeNotFound, CodeNotFound, "lookup: not_found: run 7: EOF"},
		{"plain", errors.New("boom"), CodeInternal, CodeInternal, "boom"},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), CodeInternal, CodeTimeout, "query: context deadline exceeded"},
		{"canceled", context.Canceled, CodeInternal, CodeUnavailable, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CodeOf(tt.err); got != tt.code {
				t.Errorf("CodeOf = %q, want %q", got, tt.code)
			}
			if tt.err == nil {
				return
			}
			code, msg := toWire(tt.err)
			if code != tt.wireCode || msg != tt.wireMsg {
				t.Errorf("toWire = %q, %q; want %q, %q", code, msg, tt.wireCode, tt.wireMsg)
			}
		})
	}
	if !errors.Is(typed, io.EOF) {
		t.Error("Errorf with %w should keep the cause for errors.Is")
	}
	if (&Error{Code: CodeTimeout}).Error() != "timeout" || !(&Error{Code: CodeTimeout}).Retryable() {
		t.Error("bare timeout error formats or classifies wrongly")
	}
}
