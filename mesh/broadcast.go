package mesh

import "github.com/hashicorp/memberlist"

// stateBroadcast gossips one node's state. A newer state of the same node
// replaces an older one still in the queue (memberlist matches Name).
type stateBroadcast struct {
	node   string
	msg    []byte
	notify chan struct{} // closed when the broadcast is done or replaced; may be nil
}

var _ memberlist.NamedBroadcast = (*stateBroadcast)(nil)

func (b *stateBroadcast) Name() string { return "state/" + b.node }

func (b *stateBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(memberlist.NamedBroadcast)
	return ok && o.Name() == b.Name()
}

func (b *stateBroadcast) Message() []byte { return b.msg }

func (b *stateBroadcast) Finished() {
	if b.notify != nil {
		close(b.notify)
	}
}

// userEventBroadcast gossips one user event; events never replace each
// other.
type userEventBroadcast struct{ msg []byte }

var _ memberlist.UniqueBroadcast = (*userEventBroadcast)(nil)

func (b *userEventBroadcast) UniqueBroadcast()                      {}
func (b *userEventBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *userEventBroadcast) Message() []byte                       { return b.msg }
func (b *userEventBroadcast) Finished()                             {}
