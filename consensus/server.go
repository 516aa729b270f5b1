package consensus

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
)

// ServerConfig configures a node's part in the control plane.
type ServerConfig struct {
	// Name, IDC and Zone are the node's; Name is its raft server ID.
	Name, IDC, Zone string
	// DataDir holds raft's log, stable store and snapshots (DataDir/raft).
	DataDir string
	// ControlSize is the target number of voters in this IDC.
	ControlSize int
	// PrimaryIDC owns global objects; the other IDCs' leaders replicate
	// them. Every node of a cluster must agree. Default: this node's IDC.
	PrimaryIDC string
	// LAN is the node's IDC gossip pool; Host its node-stream host.
	LAN  *mesh.Mesh
	Host *p2p.Host
	// WAN configures the pool that control members of all IDCs join.
	WAN WANConfig
	// ApplyTimeout bounds a write, retries across leader changes included.
	// Default 10s.
	ApplyTimeout time.Duration
	// ReplicationWait is the blocking-query wait of global replication.
	// Default 30s.
	ReplicationWait time.Duration
	// MayBootstrap gates founding a new group (see GroupConfig.MayBootstrap).
	MayBootstrap func() bool
	// TuneGroup adjusts the group configuration last (tests: fast timings).
	TuneGroup func(*GroupConfig)
	Logger    *slog.Logger
}

// Server is a node's whole part in the control plane: its IDC's control
// group when it is a member, forwarding to the leader and to other IDCs,
// the WAN pool while it is a voter, and replication of global objects
// while it leads a non-primary IDC.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	store *state.Store
	fsm   *FSM
	group *Group
	wan   *wanPool

	repl replicationStatus
	// leaderGen numbers leadership terms as seen by leadership; readyGen is
	// the generation ready for leader reads, 0 when none.
	leaderGen, readyGen atomic.Uint64
	// suspects remembers leaders whose forwarded call failed recently.
	suspects suspectLeaders

	routinesMu sync.Mutex
	routines   []leaderRoutine // see OnLeadership

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewServer builds the server; Start brings it up.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.LAN == nil || cfg.Host == nil {
		return nil, errors.New("consensus: a LAN mesh and a stream host are required")
	}
	if cfg.PrimaryIDC == "" {
		cfg.PrimaryIDC = cfg.IDC
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.ReplicationWait == 0 {
		cfg.ReplicationWait = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	store, err := state.NewStore()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, store: store}
	s.fsm = NewFSM(store, cfg.Logger.With("part", "fsm"))
	gcfg := GroupConfig{
		Name:         cfg.Name,
		IDC:          cfg.IDC,
		Zone:         cfg.Zone,
		ControlSize:  cfg.ControlSize,
		DataDir:      cfg.DataDir,
		Mesh:         cfg.LAN,
		Host:         cfg.Host,
		FSM:          s.fsm,
		Logger:       cfg.Logger.With("part", "control"),
		Leadership:   s.leadership,
		MayBootstrap: cfg.MayBootstrap,
	}
	if cfg.TuneGroup != nil {
		cfg.TuneGroup(&gcfg)
	}
	if s.group, err = NewGroup(gcfg); err != nil {
		return nil, err
	}
	s.wan = newWANPool(s, cfg.WAN)
	return s, nil
}

// Start registers the forwarding endpoints and starts the group and the
// WAN manager.
func (s *Server) Start() error {
	s.registerEndpoints()
	if err := s.group.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.wan.run(ctx)
	}()
	return nil
}

// Leave hands over gracefully: leaves the WAN and the control group.
func (s *Server) Leave(ctx context.Context) error {
	s.stopLoops()
	errs := []error{s.wan.leave(), s.group.Leave(ctx)}
	return errors.Join(errs...)
}

// Shutdown stops without handing over, as a crash would.
func (s *Server) Shutdown() error {
	s.stopLoops()
	return errors.Join(s.wan.shutdown(), s.group.Shutdown())
}

func (s *Server) stopLoops() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

// Group returns the node's control group handle.
func (s *Server) Group() *Group { return s.group }

// Store returns the local state store. It is current only on control
// members; plain nodes read through forwarding.
func (s *Server) Store() *state.Store { return s.store }

// IsAlivePeer reports whether a libp2p peer is an alive member of the WAN
// pool; the node's gater admits LAN members and these.
func (s *Server) IsAlivePeer(peerID string) bool { return s.wan.isAlivePeer(peerID) }

// PrimaryIDC returns the IDC that owns global objects.
func (s *Server) PrimaryIDC() string { return s.cfg.PrimaryIDC }

// ControlStatus is a control group's state as `herd control status` shows
// it: the group, the WAN pool and replication.
type ControlStatus struct {
	GroupStatus
	PrimaryIDC string `json:"primary_idc"`
	// WANMembers lists the WAN pool as the answering member sees it.
	WANMembers []WANMember `json:"wan_members,omitempty"`
	// Replication is set in non-primary IDCs.
	Replication *ReplicationStatus `json:"replication,omitempty"`
}

// WANMember is one control member of any IDC in the WAN pool.
type WANMember struct {
	Name   string   `json:"name"`
	IDC    string   `json:"idc"`
	Status string   `json:"status"`
	Roles  []string `json:"roles,omitempty"`
}

// Status returns the status of the control group of idc ("" = this node's),
// asked of one of its members.
func (s *Server) Status(ctx context.Context, idc string) (*ControlStatus, error) {
	if idc == "" || idc == s.cfg.IDC {
		return s.localStatus(ctx)
	}
	resp, err := s.forwardIDC(ctx, idcRequest{IDC: idc, Status: true})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

// localStatus answers for this IDC: from this node if it is a member,
// else from a member.
func (s *Server) localStatus(ctx context.Context) (*ControlStatus, error) {
	if s.group.Raft() != nil {
		// The leader's view is the authoritative one (autopilot health,
		// replication); a member cut off from it answers for itself.
		if !s.group.IsLeader() {
			if m, err := s.leaderMember(); err == nil {
				if st, err := callPeer[struct{}, ControlStatus](ctx, s, m, protoStatus, struct{}{}); err == nil {
					return &st, nil
				}
			}
		}
		return s.memberStatus(), nil
	}
	gs := s.group.Status()
	if gs.Waiting != "" {
		return &ControlStatus{GroupStatus: gs, PrimaryIDC: s.cfg.PrimaryIDC}, nil
	}
	var out ControlStatus
	err := s.callMember(ctx, func(ctx context.Context, m mesh.Member) error {
		resp, err := callPeer[struct{}, ControlStatus](ctx, s, m, protoStatus, struct{}{})
		if err == nil {
			out = resp
		}
		return err
	})
	return &out, err
}

func (s *Server) memberStatus() *ControlStatus {
	st := &ControlStatus{GroupStatus: s.group.Status(), PrimaryIDC: s.cfg.PrimaryIDC}
	st.WANMembers = s.wan.members()
	if s.cfg.IDC != s.cfg.PrimaryIDC {
		r := s.repl.get()
		st.Replication = &r
	}
	return st
}

// errNoControlMember means no alive node of the IDC advertises a role.
var errNoControlMember = errors.New("no control group member is alive in this IDC")

// unavailablef builds a retryable error for callers.
func unavailablef(format string, args ...any) error {
	return p2p.Errorf(p2p.CodeUnavailable, format, args...)
}
