package p2p

import (
	"context"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// BenchmarkCall measures one small request/response over an established
// connection: stream open, one frame each way, stream close.
func BenchmarkCall(b *testing.B) {
	client := newTestHost(b, nil)
	server := newTestHost(b, nil)
	server.Handle(echoProto, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) {
		return req, nil
	})
	ctx := context.Background()
	req := make([]byte, 64)
	if _, err := client.Call(ctx, server.ID(), server.Addr(), echoProto, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Call(ctx, server.ID(), "", echoProto, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallParallel is BenchmarkCall with concurrent callers sharing one
// connection.
func BenchmarkCallParallel(b *testing.B) {
	client := newTestHost(b, nil)
	server := newTestHost(b, nil)
	server.Handle(echoProto, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) {
		return req, nil
	})
	ctx := context.Background()
	req := make([]byte, 64)
	if _, err := client.Call(ctx, server.ID(), server.Addr(), echoProto, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.Call(ctx, server.ID(), "", echoProto, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
