package p2p

import (
	"context"
	"encoding/json"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// CallJSON is Call with JSON-encoded request and response bodies. Encoding
// the request fails with CodeBadRequest, decoding the response with
// CodeInternal; other errors are Call's.
func CallJSON[Req, Resp any](ctx context.Context, h *Host, to peer.ID, addr string, proto protocol.ID, req Req) (Resp, error) {
	var resp Resp
	body, err := json.Marshal(req)
	if err != nil {
		return resp, Errorf(CodeBadRequest, "encode %s request: %w", proto, err)
	}
	out, err := h.Call(ctx, to, addr, proto, body)
	if err != nil {
		return resp, err
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return resp, Errorf(CodeInternal, "decode %s response from %s: %w", proto, to, err)
	}
	return resp, nil
}

// HandleJSON is Handle with JSON-encoded request and response bodies. A
// request that does not decode is answered with CodeBadRequest without
// calling fn. Unknown fields are ignored, so newer callers can add fields.
func HandleJSON[Req, Resp any](h *Host, proto protocol.ID, fn func(ctx context.Context, from peer.ID, req Req) (Resp, error)) {
	h.Handle(proto, func(ctx context.Context, from peer.ID, body []byte) ([]byte, error) {
		var req Req
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, Errorf(CodeBadRequest, "decode %s request: %v", proto, err)
		}
		resp, err := fn(ctx, from, req)
		if err != nil {
			return nil, err
		}
		out, err := json.Marshal(resp)
		if err != nil {
			return nil, Errorf(CodeInternal, "encode %s response: %v", proto, err)
		}
		return out, nil
	})
}
