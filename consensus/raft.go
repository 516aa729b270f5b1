package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/herd-io/herd/mesh/p2p"
)

// Files inside RaftConfig.Dir.
const (
	raftDBFile      = "raft.db" // log and stable store (raft-boltdb)
	snapshotsRetain = 2         // FileSnapshotStore keeps DIR/snapshots/<2 newest>
	logCacheSize    = 512       // recent entries kept in memory for replication
	boltOpenTimeout = 5 * time.Second
)

// RaftConfig configures OpenRaft. Dir, ID, Host and FSM are required.
type RaftConfig struct {
	// Dir holds raft.db (log and stable store) and snapshots/. Created
	// with mode 0700 if missing.
	Dir string

	// ID is the raft server ID: the node's name, unique in its IDC.
	ID string

	// Host carries raft traffic (RaftProtocol); the server address is its
	// peer ID.
	Host *p2p.Host

	// Resolve maps a peer ID to the multiaddr to dial; normally the gossip
	// Meta.P2P of the member with that ID. Nil means "only peers libp2p
	// already knows".
	Resolve func(peerID string) (string, bool)

	// FSM receives committed entries.
	FSM raft.FSM

	// Logger receives raft's logs (see hclog.go for the level mapping).
	// Default slog.Default().
	Logger *slog.Logger

	// RaftTimings tune raft; zero fields take DefaultRaftTimings' values.
	RaftTimings
}

// Raft is an open raft server with its stores and transport.
type Raft struct {
	id       string
	raft     *raft.Raft
	store    *raftboltdb.BoltStore
	existing bool

	once sync.Once
	err  error
}

// OpenRaft opens (or creates) the stores in cfg.Dir and starts raft. It
// never bootstraps: a fresh server waits, as a follower without a
// configuration, until a leader adds it or the caller bootstraps it with
// Raw().BootstrapCluster.
func OpenRaft(cfg RaftConfig) (*Raft, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("consensus: raft: Dir is required")
	case cfg.ID == "":
		return nil, errors.New("consensus: raft: ID is required")
	case cfg.Host == nil:
		return nil, errors.New("consensus: raft: Host is required")
	case cfg.FSM == nil:
		return nil, errors.New("consensus: raft: FSM is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	rc, err := raftConfig(cfg.ID, cfg.RaftTimings.withDefaults(), logger)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("consensus: raft dir: %w", err)
	}
	store, err := openBolt(cfg.Dir)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, snapshotsRetain, newHCLogger(logger, "raft-snapshot"))
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("consensus: raft snapshots in %s: %w", cfg.Dir, err)
	}
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("consensus: raft state in %s: %w", cfg.Dir, err)
	}
	trans, err := NewTransport(cfg.Host, cfg.Resolve, logger)
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	logs, err := raft.NewLogCache(logCacheSize, store)
	if err != nil {
		_ = trans.Close()
		_ = store.Close()
		return nil, fmt.Errorf("consensus: raft log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, cfg.FSM, logs, store, snaps, trans)
	if err != nil {
		_ = trans.Close()
		_ = store.Close()
		return nil, fmt.Errorf("consensus: start raft: %w", err)
	}
	return &Raft{id: cfg.ID, raft: r, store: store, existing: existing}, nil
}

// openBolt opens DIR/raft.db. NoFreelistSync: bbolt otherwise rewrites its
// whole freelist on every commit, and after log compaction frees many pages
// each raft append pays for it (Consul hit this in production). The open
// timeout turns a second opener of the same file (flock) into an error
// instead of a hang.
func openBolt(dir string) (*raftboltdb.BoltStore, error) {
	path := filepath.Join(dir, raftDBFile)
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{NoFreelistSync: true, Timeout: boltOpenTimeout},
	})
	if err != nil {
		return nil, fmt.Errorf("consensus: open raft log %s: %w", path, err)
	}
	return store, nil
}

// raftStateExists reports whether dir holds raft state (a term, log
// entries or a snapshot), without starting raft.
func raftStateExists(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, raftDBFile)); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	store, err := openBolt(dir)
	if err != nil {
		return false, err
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetain, newHCLogger(slog.New(slog.DiscardHandler), "raft-snapshot"))
	if err != nil {
		return false, fmt.Errorf("consensus: raft snapshots in %s: %w", dir, err)
	}
	ok, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return false, fmt.Errorf("consensus: raft state in %s: %w", dir, err)
	}
	return ok, nil
}

// raftConfig builds raft's configuration from herd's timings.
func raftConfig(id string, t RaftTimings, logger *slog.Logger) (*raft.Config, error) {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.Logger = newHCLogger(logger, "raft")
	rc.HeartbeatTimeout = t.HeartbeatTimeout
	rc.ElectionTimeout = t.ElectionTimeout
	rc.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	rc.CommitTimeout = t.CommitTimeout
	rc.SnapshotThreshold = t.SnapshotThreshold
	rc.SnapshotInterval = t.SnapshotInterval
	// A leader that removes itself keeps running as a follower; the group
	// notices it is no longer in the configuration and closes raft itself,
	// the same way for leaders and followers.
	rc.ShutdownOnRemove = false
	rc.NoLegacyTelemetry = true
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("consensus: raft timings: %w", err)
	}
	return rc, nil
}

// Raw returns the raft server.
func (r *Raft) Raw() *raft.Raft { return r.raft }

// HasExistingState reports whether the stores held raft state when they
// were opened: a restart rather than a first start.
func (r *Raft) HasExistingState() bool { return r.existing }

// Shutdown stops raft (which closes the transport) and closes the log
// store. It is idempotent.
func (r *Raft) Shutdown() error {
	r.once.Do(func() {
		err := r.raft.Shutdown().Error()
		if cerr := r.store.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("consensus: close raft log: %w", cerr))
		}
		r.err = err
	})
	return r.err
}
