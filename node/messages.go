package node

import "github.com/libp2p/go-libp2p/core/protocol"

// Node-stream protocols served by every node. Bump the version suffix when
// a message changes incompatibly; old and new can then be served side by
// side during a rolling upgrade.
const (
	// protoAPI carries an HTTP API request to another node, which serves it
	// as if it had arrived on its own API.
	protoAPI protocol.ID = "/herd/api/1"
)

// forwardRequest is an HTTP request relayed over a node stream. The entry
// node has already checked the caller's token.
type forwardRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	Body   []byte `json:"body,omitempty"`
}

// forwardResponse is the relayed answer.
type forwardResponse struct {
	Status      int    `json:"status"`
	ContentType string `json:"content_type"`
	Body        []byte `json:"body"`
}
