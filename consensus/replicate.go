package consensus

import (
	"context"
	"sync"
	"time"

	"github.com/herd-io/herd/consensus/state"
)

// ReplicationStatus describes how far this IDC's copy of the global
// objects trails the primary IDC.
type ReplicationStatus struct {
	// Running is true while this node leads and replicates.
	Running bool `json:"running"`
	// SourceIndex is the primary's index of the last copy applied here.
	SourceIndex uint64 `json:"source_index"`
	// LastSuccess is when a copy last arrived (or was confirmed current).
	LastSuccess time.Time `json:"last_success"`
	// LastError is the last failure, cleared by the next success.
	LastError string `json:"last_error,omitempty"`
}

type replicationStatus struct {
	mu sync.Mutex
	st ReplicationStatus
}

func (r *replicationStatus) get() ReplicationStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

func (r *replicationStatus) update(fn func(*ReplicationStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(&r.st)
}

// leadership runs while this node leads its IDC's control group; the group
// cancels ctx when leadership is lost and calls it again on the next win.
//
// The group calls it only after a barrier: every entry of earlier terms is
// applied. Until then this leader's state may trail what was committed, so
// default and consistent reads wait for it (Consul's readyForConsistentReads).
func (s *Server) leadership(ctx context.Context) {
	gen := s.leaderGen.Add(1)
	s.readyGen.Store(gen)
	// A later term's call may already have marked itself ready.
	defer s.readyGen.CompareAndSwap(gen, 0)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, r := range s.leaderRoutines() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.log.Debug("leader routine started", "routine", r.name)
			r.fn(ctx)
		}()
	}
	if s.cfg.IDC == s.cfg.PrimaryIDC {
		<-ctx.Done()
		return
	}
	s.replicateGlobal(ctx)
}

// leaderRoutine is work another package runs while this node leads.
type leaderRoutine struct {
	name string
	fn   func(ctx context.Context)
}

// OnLeadership makes fn run on this node during every term in which it
// leads its IDC's control group, after the term's barrier (the state holds
// every earlier commit). ctx ends when the leadership does; fn must return
// then. Register before Start; a routine registered later starts with the
// next term.
func (s *Server) OnLeadership(name string, fn func(ctx context.Context)) {
	s.routinesMu.Lock()
	defer s.routinesMu.Unlock()
	s.routines = append(s.routines, leaderRoutine{name: name, fn: fn})
}

func (s *Server) leaderRoutines() []leaderRoutine {
	s.routinesMu.Lock()
	defer s.routinesMu.Unlock()
	return append([]leaderRoutine(nil), s.routines...)
}

// readyForReads reports whether this leader has applied every earlier
// entry (see leadership).
func (s *Server) readyForReads() bool { return s.readyGen.Load() != 0 }

// replicateGlobal keeps this IDC's copy of the global scope equal to the
// primary's: a blocking query for the whole scope past the last source
// index, then one raft command that replaces the scope (Consul's ACL
// replication pattern). Config objects are few and small, so a full copy
// per change is simpler and safer than a diff stream.
func (s *Server) replicateGlobal(ctx context.Context) {
	s.repl.update(func(st *ReplicationStatus) { st.Running = true })
	defer s.repl.update(func(st *ReplicationStatus) { st.Running = false })
	s.log.Info("replicating global objects", "primary", s.cfg.PrimaryIDC)
	backoff := time.Second
	for ctx.Err() == nil {
		index := s.store.ReplicatedIndex(state.ScopeGlobal)
		var entries []*state.KVEntry
		qctx, cancel := context.WithTimeout(ctx, s.cfg.ReplicationWait+10*time.Second)
		meta, err := s.Query(qctx, s.cfg.PrimaryIDC, "kv.list",
			kvListArgs{Scope: state.ScopeGlobal},
			QueryOptions{Consistency: ConsistencyStale, MinIndex: index, MaxWait: s.cfg.ReplicationWait}, &entries)
		cancel()
		if err == nil && meta.Index > index {
			_, err = s.Apply(ctx, "", KVReplicateType, KVReplicateRequest{
				Scope: state.ScopeGlobal, Entries: entries, SourceIndex: meta.Index,
			})
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.repl.update(func(st *ReplicationStatus) { st.LastError = err.Error() })
			s.log.Warn("global replication failed, will retry", "primary", s.cfg.PrimaryIDC, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = time.Second
		s.repl.update(func(st *ReplicationStatus) {
			st.SourceIndex = max(meta.Index, st.SourceIndex)
			st.LastSuccess = time.Now()
			st.LastError = ""
		})
	}
}
