package mesh

import (
	"bytes"
	"errors"

	"github.com/hashicorp/memberlist"
)

// delegate adapts memberlist's Delegate hooks to the Mesh: it only decodes
// and hands on. memberlist calls NotifyMsg from its packet handler, so
// nothing here may block.
type delegate struct{ m *Mesh }

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta returns the pre-encoded Meta. EncodeMeta already enforced the
// limit; checking again keeps memberlist from panicking if it ever shrinks.
func (d *delegate) NodeMeta(limit int) []byte {
	b := *d.m.metaBytes.Load()
	if len(b) > limit {
		d.m.log.Error("node meta exceeds memberlist's limit; advertising none", "size", len(b), "limit", limit)
		return nil
	}
	return b
}

// NotifyMsg receives our gossip. memberlist may reuse b after we return.
func (d *delegate) NotifyMsg(b []byte) {
	t, v, err := decodeMessage(b)
	if err != nil {
		if errors.Is(err, errUnknownMessage) {
			d.m.log.Debug("ignoring gossip of a type this build does not know", "type", uint8(t))
		} else {
			d.m.log.Warn("dropping malformed gossip message", "err", err)
		}
		return
	}
	switch msg := v.(type) {
	case *nodeStateMsg:
		d.m.handleNodeState(msg, bytes.Clone(b))
	case *userEventMsg:
		d.m.handleUserEvent(msg, bytes.Clone(b))
	default:
		d.m.log.Debug("ignoring gossip message out of place", "type", t)
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.broadcasts.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte {
	return d.m.pushPullState()
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return // a peer without a delegate state
	}
	_, v, err := decodeMessage(buf)
	if err != nil {
		d.m.log.Warn("dropping malformed push/pull state", "err", err)
		return
	}
	pp, ok := v.(*pushPullMsg)
	if !ok {
		d.m.log.Warn("dropping push/pull state of the wrong message type")
		return
	}
	d.m.mergePushPull(pp, join)
}
