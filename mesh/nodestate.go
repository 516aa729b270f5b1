package mesh

import (
	"fmt"
	"math"
	"time"
)

// Node states (labels + health) spread three ways:
//
//   - the owner queues its state for gossip when it changes (SetLabels,
//     Leave) and every HealthInterval;
//   - a receiver re-gossips a state the first time it learns something that
//     selects or retires nodes (first state of a node, new labels, leaving);
//     health-only refreshes are not re-gossiped, which would cost every node
//     O(N) packets per interval in a large pool;
//   - memberlist's periodic push/pull carries every live state, so whatever
//     gossip missed converges, and joiners learn everything at once.

// publishLocalLocked changes our node state with fn and queues it for
// gossip. notify, if not nil, is closed once the broadcast is done. The
// caller holds m.localMu, which keeps versions and queue order in step.
func (m *Mesh) publishLocalLocked(fn func(*nodeStateMsg), notify chan struct{}) {
	st := m.table.updateLocal(fn)
	raw, err := encodeMessage(msgNodeState, &st)
	if err == nil && len(raw) > maxBroadcastSize {
		err = fmt.Errorf("node state is %d bytes, more than the gossip limit of %d", len(raw), maxBroadcastSize)
	}
	if err != nil {
		// Push/pull still carries it; only the fast path is lost.
		m.log.Warn("not gossiping our node state; peers will get it by push/pull", "err", err)
		if notify != nil {
			close(notify)
		}
		return
	}
	m.broadcasts.QueueBroadcast(&stateBroadcast{node: st.Name, msg: raw, notify: notify})
}

func (m *Mesh) publishLocal(fn func(*nodeStateMsg), notify chan struct{}) {
	m.localMu.Lock()
	defer m.localMu.Unlock()
	m.publishLocalLocked(fn, notify)
}

// checkStateSize fails if a node state with these labels could outgrow a
// gossip packet, assuming the largest health values the encoding allows.
func (m *Mesh) checkStateSize(labels map[string]string) error {
	worst := nodeStateMsg{
		Name:    m.cfg.Name,
		Version: math.MaxUint64,
		Labels:  labels,
		Leaving: true,
		Health: Health{
			Load1: 99999.99, Load5: 99999.99, Load15: 99999.99, CPUPercent: 100,
			MemTotal: math.MaxUint64, MemAvailable: math.MaxUint64,
			DiskTotal: math.MaxUint64, DiskFree: math.MaxUint64,
			HostUptime: math.MaxInt64, AgentUptime: math.MaxInt64,
			Version:   m.cfg.Meta.Version,
			Collected: time.Date(2999, 12, 31, 23, 59, 59, 999e6, time.UTC),
		},
	}
	raw, err := encodeMessage(msgNodeState, &worst)
	if err != nil {
		return err
	}
	if len(raw) > maxBroadcastSize {
		return fmt.Errorf("mesh: labels too large: the node state would take up to %d bytes, more than the gossip limit of %d: use fewer or shorter labels", len(raw), maxBroadcastSize)
	}
	return nil
}

// handleNodeState takes a node state from gossip.
func (m *Mesh) handleNodeState(st *nodeStateMsg, raw []byte) {
	res := m.table.applyState(st)
	switch {
	case res.refute:
		m.publishLocal(func(*nodeStateMsg) {}, nil)
	case res.spread:
		m.broadcasts.QueueBroadcast(&stateBroadcast{node: st.Name, msg: raw})
	}
}

// pushPullState is our delegate state for memberlist's push/pull.
func (m *Mesh) pushPullState() []byte {
	pp := pushPullMsg{EventLTime: m.clock.Time(), States: m.table.liveStates()}
	b, err := encodeMessage(msgPushPull, &pp)
	if err != nil {
		m.log.Error("cannot encode push/pull state", "err", err)
		return nil
	}
	return b
}

// mergePushPull takes a peer's push/pull state. States learnt this way are
// not re-gossiped: a joiner would otherwise re-gossip the whole pool.
func (m *Mesh) mergePushPull(pp *pushPullMsg, join bool) {
	if pp.EventLTime > 0 {
		m.clock.Witness(pp.EventLTime - 1)
	}
	if join {
		m.userLog.joinedAt(pp.EventLTime)
	}
	refute := false
	for i := range pp.States {
		st := &pp.States[i]
		if err := st.validate(); err != nil {
			m.log.Warn("ignoring invalid node state from push/pull", "err", err)
			continue
		}
		refute = m.table.applyState(st).refute || refute
	}
	if refute {
		m.publishLocal(func(*nodeStateMsg) {}, nil)
	}
}
