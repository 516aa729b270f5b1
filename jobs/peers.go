package jobs

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"net"
	"slices"
	"sort"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/transfer"
)

// Peer hand-out for pushes, on the leader: the holders of a push's file
// are its origins (global), the IDC's earlier holders (IDC scope), the
// run's finished hosts (from the store) and its hosts in progress (this
// term's memory, announced with each peers request).

const (
	maxSwarmPeers  = 16 // peers handed out per request
	crossIDCPeers  = 2  // remote holders handed to a gateway
	gatewaysPerIDC = 2  // hosts of a run that fetch across the WAN
)

// inProgress remembers, per run, the swarm address of each host that asked
// for peers: the hosts still fetching, which already serve their pieces.
func (t *term) announce(runID, node, addr string) {
	if addr == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.swarms == nil {
		t.swarms = map[string]map[string]string{}
	}
	m := t.swarms[runID]
	if m == nil {
		m = map[string]string{}
		t.swarms[runID] = m
	}
	m[node] = addr
}

// noteProgress records a fetching host's verified bytes.
func (t *term) noteProgress(runID, host string, done int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.progress == nil {
		t.progress = map[string]map[string]int64{}
	}
	m := t.progress[runID]
	if m == nil {
		m = map[string]int64{}
		t.progress[runID] = m
	}
	m[host] = done
}

// handleProgress answers a push's live progress (on the leader; another
// member passes it on).
func (s *Scheduler) handleProgress(ctx context.Context, _ peer.ID, req ProgressRequest) (model.PushProgress, error) {
	t := s.current()
	if t == nil {
		var out model.PushProgress
		err := s.cfg.Server.CallLeader(ctx, func(ctx context.Context, m mesh.Member) error {
			r, err := callMember[ProgressRequest, model.PushProgress](ctx, s.cfg.Host, m, protoProgress, req)
			out = r
			return err
		})
		return out, err
	}
	_, v, err := readRun(nil, s.cfg.Server.Store(), runQuery{IDC: s.cfg.IDC, ID: req.RunID, Hosts: true})
	if err != nil || v == nil || v.Run.Push == nil {
		return model.PushProgress{}, p2p.Errorf(p2p.CodeNotFound, "no push run %s in IDC %s", req.RunID, s.cfg.IDC)
	}
	out := model.PushProgress{Hosts: map[string]int64{}, Size: v.Run.Push.File.Size}
	t.mu.Lock()
	live := t.progress[req.RunID]
	for _, h := range v.Hosts {
		if h.Status == model.HostRunning {
			out.Hosts[h.Host] = live[h.Host]
		}
	}
	t.mu.Unlock()
	return out, nil
}

func (t *term) announced(runID string) map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]string{}
	for k, v := range t.swarms[runID] {
		out[k] = v
	}
	return out
}

func (s *Scheduler) handlePeers(_ context.Context, _ peer.ID, req PeersRequest) (PeersResponse, error) {
	t := s.current()
	if t == nil {
		return PeersResponse{}, p2p.Errorf(p2p.CodeUnavailable, "%s is not the leader", s.cfg.Name)
	}
	if req.IDC != s.cfg.IDC {
		return PeersResponse{}, p2p.Errorf(p2p.CodeBadRequest, "peers for IDC %s asked in IDC %s", req.IDC, s.cfg.IDC)
	}
	_, v, err := readRun(nil, s.cfg.Server.Store(), runQuery{IDC: s.cfg.IDC, ID: req.RunID, Hosts: true})
	if err != nil {
		return PeersResponse{}, p2p.Errorf(p2p.CodeInternal, "%v", err)
	}
	if v == nil || v.Run.Push == nil {
		return PeersResponse{}, p2p.Errorf(p2p.CodeNotFound, "no push run %s", req.RunID)
	}
	t.announce(req.RunID, req.Node, req.Swarm)
	t.noteProgress(req.RunID, req.Host, req.Done)
	holders := s.holders(v, t.announced(req.RunID))
	return answerPeers(req, v, holders, s.cfg.IDC), nil
}

// holders collects every known holder of a push's file.
func (s *Scheduler) holders(v *model.RunView, inProgress map[string]string) []transfer.Holder {
	sha := v.Run.Push.File.SHA256
	seen := map[string]bool{}
	var out []transfer.Holder
	add := func(h transfer.Holder) {
		if !seen[h.Name] {
			seen[h.Name] = true
			out = append(out, h)
		}
	}
	for _, h := range v.Hosts {
		if h.Status == model.HostSuccess && h.Transfer != nil && h.Transfer.Swarm != "" {
			add(transfer.Holder{Name: h.Node, IDC: s.cfg.IDC, Addr: h.Transfer.Swarm, State: transfer.HolderFinished})
		}
	}
	for _, o := range v.Run.Push.File.Origins {
		add(transfer.Holder{Name: o.Node, IDC: o.IDC, Addr: o.Swarm, State: transfer.HolderOrigin})
	}
	_, entries, err := s.cfg.Server.Store().KVList(nil, s.cfg.IDC, fileHoldersPrefix(sha))
	if err == nil {
		for _, e := range entries {
			var fh model.FileHolder
			if json.Unmarshal(e.Value, &fh) == nil {
				add(transfer.Holder{Name: fh.Node, IDC: fh.IDC, Addr: fh.Swarm, State: transfer.HolderOrigin})
			}
		}
	}
	names := make([]string, 0, len(inProgress))
	for n := range inProgress {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add(transfer.Holder{Name: n, IDC: s.cfg.IDC, Addr: inProgress[n], State: transfer.HolderInProgress})
	}
	return out
}

// answerPeers picks the peers for one requester. Only the run's gateways
// (a few hosts chosen by hashing) get holders from other IDCs, so the
// bytes cross each WAN link about once; the rest of the IDC fetches from
// them and from each other.
func answerPeers(req PeersRequest, v *model.RunView, holders []transfer.Holder, idc string) PeersResponse {
	sha := v.Run.Push.File.SHA256
	gateway := slices.Contains(gateways(sha, v.Hosts, gatewaysPerIDC), req.Host)
	usable := holders
	if !gateway {
		usable = slices.DeleteFunc(slices.Clone(holders), func(h transfer.Holder) bool { return h.IDC != idc })
	}
	h := fnv.New64a()
	h.Write([]byte(sha))
	out := PeersResponse{
		Peers:  transfer.PickPeers(req.Node, idc, usable, maxSwarmPeers, crossIDCPeers, h.Sum64(), gateway),
		IDCOf:  map[string]string{},
		NameOf: map[string]string{},
		Full:   []string{},
	}
	if out.Peers == nil {
		out.Peers = []transfer.Peer{}
	}
	for _, hd := range holders {
		out.IDCOf[hd.Name] = hd.IDC
		if hd.Addr != "" {
			out.NameOf[hd.Addr] = hd.Name
			// An incoming peer may be known by its IP and an ephemeral
			// port only; a node has one swarm IP.
			if ip, _, err := net.SplitHostPort(hd.Addr); err == nil {
				out.NameOf[ip] = hd.Name
			}
		}
		if hd.IDC == idc && hd.State != transfer.HolderInProgress && hd.Name != req.Node {
			out.Full = append(out.Full, hd.Name)
		}
	}
	return out
}

// gateways returns the n hosts of a push that fetch across IDCs: stable
// for the run (a hash of file and host), so every leader picks the same.
func gateways(sha string, hosts []model.HostResult, n int) []string {
	type scored struct {
		name  string
		score uint64
	}
	var all []scored
	for _, h := range hosts {
		f := fnv.New64a()
		f.Write([]byte(sha + "\x00" + h.Host))
		all = append(all, scored{h.Host, f.Sum64()})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].score < all[j].score })
	out := make([]string, 0, n)
	for i := 0; i < n && i < len(all); i++ {
		out = append(out, all[i].name)
	}
	return out
}
