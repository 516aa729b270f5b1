// Package consensus is the per-IDC control group: hashicorp/raft over
// authenticated node streams with raft-boltdb storage, a go-memdb state
// store behind the FSM, self-organizing voters (bootstrap-expect and an
// autopilot), leader forwarding and cross-IDC replication of global state.
package consensus
