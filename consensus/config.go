package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
)

// Defaults of the control group (DefaultGroupConfig, and zero fields).
const (
	DefaultControlSize       = 3
	DefaultBootstrapStable   = 2 * time.Second
	DefaultDeadServerTimeout = 20 * time.Second
	DefaultStabilizationTime = 5 * time.Second
	DefaultAutopilotInterval = time.Second

	// MaxControlSize is the largest voter count accepted: every write waits
	// for a majority, and beyond 7 voters that only adds latency.
	MaxControlSize = 7
)

// RaftTimings tune raft. Every zero field takes the value of
// DefaultRaftTimings.
type RaftTimings struct {
	// HeartbeatTimeout is how long a follower waits without hearing from
	// the leader before it calls an election. Default 800ms. raft arms its
	// follower timer at a random 1x-2x and only checks the last contact
	// when it fires, so a follower notices a dead leader 1x-3x after the
	// last heartbeat; and with pre-vote the election succeeds only once a
	// majority has noticed. Measured on loopback (BenchmarkFailover, 3
	// voters, 20 kills): 800ms gives writes back after 1.7s on average,
	// 2.3s at worst; Consul's 1s gives 2.1s and 2.9s, too close to the 3s
	// target. The leader heartbeats every HeartbeatTimeout/10, so a GC
	// pause or a busy host still needs most of a second to cause an
	// election.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits for votes before it
	// tries again (randomised 1x-2x). Default 800ms; zero with a
	// HeartbeatTimeout set means the same as HeartbeatTimeout.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without
	// reaching a quorum. Default 400ms, or HeartbeatTimeout/2 if smaller;
	// at most HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is the longest a follower waits to learn the commit
	// index when nothing else is sent. Default 50ms.
	CommitTimeout time.Duration
	// SnapshotThreshold is how many new log entries trigger a snapshot.
	// Default 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks the threshold. Default 2m.
	SnapshotInterval time.Duration
}

// DefaultRaftTimings returns the LAN timings described on RaftTimings.
func DefaultRaftTimings() RaftTimings {
	return RaftTimings{
		HeartbeatTimeout:   800 * time.Millisecond,
		ElectionTimeout:    800 * time.Millisecond,
		LeaderLeaseTimeout: 400 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   2 * time.Minute,
	}
}

// withDefaults fills zero fields from DefaultRaftTimings.
func (t RaftTimings) withDefaults() RaftTimings {
	d := DefaultRaftTimings()
	if t.HeartbeatTimeout == 0 {
		t.HeartbeatTimeout = d.HeartbeatTimeout
	}
	if t.ElectionTimeout == 0 {
		// Equal to the heartbeat timeout, as in the defaults.
		t.ElectionTimeout = t.HeartbeatTimeout
	}
	if t.LeaderLeaseTimeout == 0 {
		t.LeaderLeaseTimeout = min(d.LeaderLeaseTimeout, t.HeartbeatTimeout/2)
	}
	if t.CommitTimeout == 0 {
		t.CommitTimeout = d.CommitTimeout
	}
	if t.SnapshotThreshold == 0 {
		t.SnapshotThreshold = d.SnapshotThreshold
	}
	if t.SnapshotInterval == 0 {
		t.SnapshotInterval = d.SnapshotInterval
	}
	return t
}

// GroupConfig configures a node's part in its IDC's control group. Start
// from DefaultGroupConfig; NewGroup validates it.
type GroupConfig struct {
	// Name is the node's name (its mesh name and raft server ID). Required.
	Name string
	// IDC is the node's IDC; only members of this IDC take part. Required.
	IDC string
	// Zone is the node's failure domain; the autopilot spreads voters over
	// zones. What counts is the zone the mesh gossips (mesh.Config.Zone):
	// empty means "the mesh's", anything else must equal it.
	Zone string

	// ControlSize is the target number of voters, 1..7. Default 3; use 1
	// for a single-node IDC. Every node of an IDC must use the same value:
	// bootstrap refuses to proceed with a peer that disagrees.
	ControlSize int

	// DataDir is the node's data directory; raft lives in DataDir/raft.
	// Required.
	DataDir string

	// Mesh is the IDC's gossip pool: membership, liveness, zones and the
	// roles this group advertises. Required.
	Mesh *mesh.Mesh
	// Host carries raft and the control RPCs. Required.
	Host *p2p.Host

	// FSM applies committed entries. Required. The same FSM serves every
	// raft instance the group opens: before closing raft for a possible
	// reopen (removal, Leave) the group takes a snapshot, so that the
	// reopened raft restores it instead of replaying the log onto state
	// already applied. Shutdown takes none: a new Group after Shutdown
	// needs a fresh FSM, as after a crash.
	FSM *FSM

	// Logger receives the group's and raft's logs; the caller adds the
	// attributes that name the part. Default slog.Default().
	Logger *slog.Logger

	// BootstrapStable is how long the bootstrap candidate set must stay
	// unchanged before its members confirm it and bootstrap. Default 2s.
	BootstrapStable time.Duration
	// DeadServerTimeout is how long a server must be failed or left in
	// gossip before the autopilot removes it. Default 20s.
	DeadServerTimeout time.Duration
	// StabilizationTime is how long a non-voter must be healthy before it
	// is promoted. Default 5s.
	StabilizationTime time.Duration
	// AutopilotInterval is how often the leader's autopilot runs and the
	// group reconciles its advertised roles. Default 1s.
	AutopilotInterval time.Duration

	// Raft overrides raft timings; zero fields take DefaultRaftTimings.
	Raft RaftTimings

	// Leadership, if set, runs on the leader once it has gained leadership
	// and applied every earlier entry (a barrier); its ctx is cancelled
	// when leadership is lost or the group stops. It is started again on
	// every new term of leadership. It should return when ctx ends.
	Leadership func(ctx context.Context)

	// MayBootstrap, if set, must report true before this node bootstraps a
	// new group. A node started with addresses to join passes "have I
	// joined yet": until its first join completes its gossip view holds
	// only itself, and with a control size of 1 it would otherwise found a
	// group of its own beside the existing one. Nil: always.
	MayBootstrap func() bool
}

// DefaultGroupConfig returns a GroupConfig with every default filled in;
// Name, IDC, DataDir, Mesh, Host and FSM must still be set.
func DefaultGroupConfig() *GroupConfig {
	return &GroupConfig{
		ControlSize:       DefaultControlSize,
		BootstrapStable:   DefaultBootstrapStable,
		DeadServerTimeout: DefaultDeadServerTimeout,
		StabilizationTime: DefaultStabilizationTime,
		AutopilotInterval: DefaultAutopilotInterval,
		Raft:              DefaultRaftTimings(),
	}
}

// withDefaults returns a copy of c with zero fields defaulted, or the first
// problem found.
func (c GroupConfig) withDefaults() (GroupConfig, error) {
	if c.ControlSize == 0 {
		c.ControlSize = DefaultControlSize
	}
	if c.BootstrapStable == 0 {
		c.BootstrapStable = DefaultBootstrapStable
	}
	if c.DeadServerTimeout == 0 {
		c.DeadServerTimeout = DefaultDeadServerTimeout
	}
	if c.StabilizationTime == 0 {
		c.StabilizationTime = DefaultStabilizationTime
	}
	if c.AutopilotInterval == 0 {
		c.AutopilotInterval = DefaultAutopilotInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Raft = c.Raft.withDefaults()
	switch {
	case c.Name == "":
		return c, errors.New("consensus: group: Name is required")
	case c.IDC == "":
		return c, errors.New("consensus: group: IDC is required")
	case c.DataDir == "":
		return c, errors.New("consensus: group: DataDir is required")
	case c.Mesh == nil:
		return c, errors.New("consensus: group: Mesh is required")
	case c.Host == nil:
		return c, errors.New("consensus: group: Host is required")
	case c.FSM == nil:
		return c, errors.New("consensus: group: FSM is required")
	case c.ControlSize < 1 || c.ControlSize > MaxControlSize:
		return c, fmt.Errorf("consensus: group: control size %d out of range 1..%d", c.ControlSize, MaxControlSize)
	case c.BootstrapStable < 0, c.DeadServerTimeout < 0, c.StabilizationTime < 0, c.AutopilotInterval < 0:
		return c, errors.New("consensus: group: durations must not be negative")
	}
	if _, err := raftConfig(c.Name, c.Raft, c.Logger); err != nil {
		return c, err
	}
	local := c.Mesh.LocalMember()
	if local.Name != "" && local.Meta.IDC != c.IDC {
		return c, fmt.Errorf("consensus: group: IDC %q differs from the mesh's IDC %q", c.IDC, local.Meta.IDC)
	}
	if local.Name != "" && local.Name != c.Name {
		return c, fmt.Errorf("consensus: group: Name %q differs from the mesh's node name %q", c.Name, local.Name)
	}
	if zone := local.Meta.Zone; c.Zone == "" {
		c.Zone = zone
	} else if local.Name != "" && c.Zone != zone {
		return c, fmt.Errorf("consensus: group: Zone %q differs from the zone the mesh gossips (%q)", c.Zone, zone)
	}
	return c, nil
}
