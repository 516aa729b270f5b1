package jobs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/transfer"
)

// The agent side of a file push: skip an identical destination, fetch the
// object into the content store (node streams for small files and
// --no-swarm, the private swarm otherwise), install it atomically, and
// report where the bytes came from. A push is idempotent, so unlike a
// script it is run again after an agent restart: the swarm resumes from
// the verified pieces on disk.

// peerRefresh is how often a fetching host asks the leader for peers: hosts
// that finished or started since become sources.
const peerRefresh = 2 * time.Second

func fileObject(f model.File) transfer.Object {
	return transfer.Object{SHA256: f.SHA256, MD5: f.MD5, Size: f.Size, PieceLength: f.PieceLength, InfoHash: f.InfoHash, Name: f.Name}
}

// push executes a push task.
func (w *Worker) push(ctx context.Context, t Task) model.HostResult {
	start := time.Now()
	res := model.HostResult{Host: t.Host, Kind: t.Kind, Node: w.cfg.Name, ExitCode: -1, Started: &start}
	fail := func(err error) model.HostResult {
		now := time.Now()
		res.Status, res.Error, res.Finished = model.HostFailed, err.Error(), &now
		if ctx.Err() != nil {
			res.Status = model.HostCancelled
			if w.ctx.Err() != nil {
				res.Error = "the agent stopped during the transfer: " + err.Error()
			}
		}
		return res
	}
	if w.content == nil {
		return fail(errors.New("this agent has no content store"))
	}
	spec := t.Push
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.Timeout.Std())
		defer cancel()
	}
	dest := spec.Dest
	if w.cfg.FSRoot != "" {
		dest = filepath.Join(w.cfg.FSRoot, dest)
	}
	dest, err := transfer.ResolveDest(dest, spec.File.Name)
	if err != nil {
		return fail(err)
	}
	modeText := spec.Mode
	if modeText == "" {
		modeText = "0644"
	}
	mode, err := transfer.ParseMode(modeText)
	if err != nil {
		return fail(err)
	}
	stats := &model.TransferStats{Dest: dest, Swarm: w.swarmAddr()}
	res.Transfer = stats
	if same, err := w.cfg.Digests.CheckIdentical(dest, spec.File.Size, spec.File.MD5); err != nil {
		return fail(err)
	} else if same {
		now := time.Now()
		stats.Identical, stats.MD5 = true, spec.File.MD5
		stats.DurationSec = now.Sub(start).Seconds()
		res.Status, res.ExitCode, res.Finished = model.HostSkipped, 0, &now
		return res
	}
	// A copy already in the store is verified while it is installed: a
	// store damaged since it was filled must not reach DEST. A damaged
	// copy is dropped (it stops seeding) and fetched again.
	_, stored, err := w.content.Get(spec.File.SHA256)
	if err != nil {
		return fail(err)
	}
	opts := transfer.InstallOptions{Mode: mode, Owner: spec.Owner, Mkdir: spec.Mkdir}
	if stored {
		opts.MD5 = spec.File.MD5
		if err := w.fetch(ctx, t, stats, nil); err != nil { // seeds it
			return fail(err)
		}
		err = transfer.Install(ctx, w.content.Path(spec.File.SHA256), dest, opts)
	} else {
		// DEST is staged before the fetch: a bad destination, owner or
		// full disk fails the host at once, and a swarm fetch fills the
		// staging file itself.
		var stage *transfer.Staging
		if stage, err = transfer.Stage(dest, spec.File.Size, opts); err != nil {
			return fail(err)
		}
		if err := w.fetch(ctx, t, stats, stage); err != nil {
			stage.Abort()
			return fail(err)
		}
		err = stage.Commit(ctx, w.content.Path(spec.File.SHA256))
	}
	if stored && errors.Is(err, transfer.ErrDigestMismatch) {
		w.log.Warn("stored copy is damaged; fetching it again", "run", t.RunID, "sha256", spec.File.SHA256, "error", err)
		w.unseed(spec.File.SHA256)
		if rerr := w.content.Remove(spec.File.SHA256); rerr != nil {
			return fail(fmt.Errorf("%w; removing the damaged copy: %v", err, rerr))
		}
		if err := w.fetch(ctx, t, stats, nil); err != nil {
			return fail(err)
		}
		opts.MD5 = ""
		err = transfer.Install(ctx, w.content.Path(spec.File.SHA256), dest, opts)
	}
	if err != nil {
		return fail(err)
	}
	if err := w.cfg.Digests.Record(dest, spec.File.MD5); err != nil {
		w.log.Warn("cannot remember the installed file's digest", "dest", dest, "error", err)
	}
	now := time.Now()
	stats.MD5 = spec.File.MD5
	stats.DurationSec = now.Sub(start).Seconds()
	res.Status, res.ExitCode, res.Finished = model.HostSuccess, 0, &now
	return res
}

// fetch puts the push's object into the local content store. A swarm
// fetch also fills stage, if not nil (see transfer.InstallTo).
func (w *Worker) fetch(ctx context.Context, t Task, stats *model.TransferStats, stage *transfer.Staging) error {
	spec := t.Push
	obj := fileObject(spec.File)
	if _, ok, err := w.content.Get(obj.SHA256); err != nil {
		return err
	} else if ok {
		return w.seed(obj) // already here: seed it to the others
	}
	origins := map[string]bool{}
	for _, o := range spec.File.Origins {
		origins[o.Node] = true
	}
	if w.swarm == nil {
		// --swarm off: any same-IDC holder over node streams, or nothing.
		if done, err := w.fetchDirect(ctx, t, obj, origins, stats); done {
			return err
		}
		return fmt.Errorf("this agent runs no file swarm (--swarm off) and no holder of %s in IDC %s could be reached over node streams", obj.Name, w.cfg.IDC)
	}
	if spec.Rate > 0 {
		w.swarm.SetRates(w.cfg.UploadRate, spec.Rate)
		defer w.swarm.SetRates(w.cfg.UploadRate, w.cfg.DownloadRate)
	}
	if spec.NoSwarm || obj.Size < transfer.SmallFileLimit {
		if done, err := w.fetchDirect(ctx, t, obj, origins, stats); done || spec.NoSwarm {
			return err
		}
	}
	return w.fetchSwarm(ctx, t, obj, origins, stats, stage)
}

// fetchDirect copies obj over node streams from a same-IDC holder: an
// origin for --no-swarm (central push), otherwise any full holder. done is
// false when no holder can be reached that way (the swarm then serves).
func (w *Worker) fetchDirect(ctx context.Context, t Task, obj transfer.Object, origins map[string]bool, stats *model.TransferStats) (done bool, err error) {
	var peers PeersResponse
	err = untilAvailable(ctx, func() (err error) {
		peers, err = w.askPeers(ctx, t, false, 0)
		return err
	})
	if err != nil {
		return false, err
	}
	var candidates []string
	for _, name := range peers.Full {
		if t.Push.NoSwarm && !origins[name] {
			continue
		}
		candidates = append(candidates, name)
	}
	if len(candidates) == 0 {
		if t.Push.NoSwarm {
			return true, fmt.Errorf("--no-swarm: no origin of %s in IDC %s to fetch from (origins: %v)", obj.Name, w.cfg.IDC, keys(origins))
		}
		return false, nil
	}
	var errs []error
	for _, name := range candidates {
		m, ok := w.cfg.LAN.Member(name)
		if !ok || m.Status != mesh.StatusAlive {
			continue
		}
		id, err := peer.Decode(m.Meta.ID)
		if err != nil {
			continue
		}
		if _, err := transfer.FetchSmall(ctx, w.cfg.Host, w.content, id, m.Meta.P2P, obj, nil); err != nil {
			errs = append(errs, fmt.Errorf("from %s: %w", name, err))
			if ctx.Err() != nil {
				return true, errors.Join(errs...)
			}
			continue
		}
		stats.Bytes = obj.Size
		stats.FromNode = map[string]int64{name: obj.Size}
		stats.ByIDC = map[string]int64{w.cfg.IDC: obj.Size}
		if origins[name] {
			stats.FromOrigin = obj.Size
		} else {
			stats.FromPeers = obj.Size
		}
		return true, w.seed(obj)
	}
	if len(errs) == 0 {
		return false, nil
	}
	return t.Push.NoSwarm, errors.Join(errs...)
}

// fetchSwarm joins the object's private swarm with peers from the leader,
// refreshing them while it runs.
func (w *Worker) fetchSwarm(ctx context.Context, t Task, obj transfer.Object, origins map[string]bool, stats *model.TransferStats, stage *transfer.Staging) error {
	var mi *metainfo.MetaInfo
	var peers PeersResponse
	err := untilAvailable(ctx, func() (err error) {
		if mi == nil {
			if mi, err = w.metaInfo(ctx, obj.SHA256); err != nil {
				return err
			}
		}
		peers, err = w.askPeers(ctx, t, true, 0)
		return err
	})
	if err != nil {
		return err
	}
	var idcMu sync.Mutex
	idcOf, nameOf := peers.IDCOf, peers.NameOf
	if idcOf == nil {
		idcOf = map[string]string{}
	}
	if nameOf == nil {
		nameOf = map[string]string{}
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var done atomic.Int64
	go func() {
		tick := time.NewTicker(peerRefresh)
		defer tick.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-tick.C:
			}
			more, err := w.askPeers(fctx, t, true, done.Load())
			if err == nil {
				idcMu.Lock()
				for k, v := range more.IDCOf {
					idcOf[k] = v
				}
				for k, v := range more.NameOf {
					nameOf[k] = v
				}
				idcMu.Unlock()
				w.swarm.AddPeers(obj.SHA256, more.Peers)
			}
		}
	}()
	// Each host starts at its own place in the file, so the origin is not
	// asked for the same first pieces by everyone at once.
	h := fnv.New64a()
	h.Write([]byte(obj.SHA256 + "\x00" + t.Host))
	start := float64(h.Sum64()%1000) / 1000
	opts := []transfer.FetchOption{transfer.StartAt(start)}
	if stage != nil {
		opts = append(opts, transfer.InstallTo(stage))
	}
	fs, err := w.swarm.Fetch(fctx, obj, mi, peers.Peers, func(p transfer.FetchProgress) { done.Store(p.Done) }, opts...)
	stats.Bytes, stats.Resumed, stats.Wasted = fs.Bytes, fs.Resumed, fs.Wasted
	stats.FromNode, stats.ByIDC = map[string]int64{}, map[string]int64{}
	cancel() // stop the refresher before reading idcOf
	if err == nil {
		// Hosts that started after the last refresh may have sent bytes:
		// one more answer names them.
		if last, aerr := w.askPeers(ctx, t, true, obj.Size); aerr == nil {
			idcMu.Lock()
			maps.Copy(idcOf, last.IDCOf)
			maps.Copy(nameOf, last.NameOf)
			idcMu.Unlock()
		}
	}
	idcMu.Lock()
	defer idcMu.Unlock()
	for name, n := range fs.FromPeer {
		if node, ok := nameOf[name]; ok {
			name = node // known to the swarm by address only
		} else if ip, _, err := net.SplitHostPort(name); err == nil && nameOf[ip] != "" {
			name = nameOf[ip]
		}
		stats.FromNode[name] += n
		if origins[name] {
			stats.FromOrigin += n
		} else {
			stats.FromPeers += n
		}
		idc := idcOf[name]
		if idc == "" {
			idc = "?"
		}
		stats.ByIDC[idc] += n
	}
	return err
}

// untilAvailable runs op again while it fails because the control group
// cannot be reached (p2p.CodeUnavailable: an agent restarted mid-push
// resumes before it has rejoined the mesh, or a leader election is under
// way), until ctx ends: the push waits up to its timeout instead of failing.
func untilAvailable(ctx context.Context, op func() error) error {
	backoff := 250 * time.Millisecond
	for {
		err := op()
		if err == nil || p2p.CodeOf(err) != p2p.CodeUnavailable {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// askPeers asks the leader which holders to fetch from, announcing this
// node as a holder in progress (inSwarm) so that others can fetch from it.
func (w *Worker) askPeers(ctx context.Context, t Task, inSwarm bool, done int64) (PeersResponse, error) {
	req := PeersRequest{IDC: t.IDC, RunID: t.RunID, Node: w.cfg.Name, Host: t.Host, Done: done}
	if inSwarm {
		req.Swarm = w.swarmAddr()
	}
	var out PeersResponse
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := w.cfg.Server.CallLeader(actx, func(ctx context.Context, m mesh.Member) error {
		r, err := callMember[PeersRequest, PeersResponse](ctx, w.cfg.Host, m, protoPeers, req)
		out = r
		return err
	})
	if err != nil {
		return out, fmt.Errorf("asking the leader for peers: %w", err)
	}
	return out, nil
}

// metaInfo reads the object's swarm metainfo from the control group, where
// it is kept in chunks (a 500 GB file's piece hashes exceed one value).
func (w *Worker) metaInfo(ctx context.Context, sha string) (*metainfo.MetaInfo, error) {
	if mi, err := w.content.MetaInfo(sha); err == nil {
		return mi, nil
	}
	raw, err := readMetaChunks(ctx, w.cfg.Server, sha)
	if err != nil {
		return nil, err
	}
	var mi metainfo.MetaInfo
	if err := bencode.Unmarshal(raw, &mi); err != nil {
		return nil, fmt.Errorf("metainfo of %s: %w", sha, err)
	}
	return &mi, nil
}

// metaChunk bounds one KV value of a file's metainfo.
const metaChunk = 256 << 10

func readMetaChunks(ctx context.Context, srv *consensus.Server, sha string) ([]byte, error) {
	entries, _, err := srv.KVList(ctx, state.ScopeGlobal, fileMetaPrefix(sha), consensus.QueryOptions{Consistency: consensus.ConsistencyStale})
	if err != nil {
		return nil, fmt.Errorf("metainfo of %s: %w", sha, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("metainfo of %s is not in the control group (herd file list shows the files)", sha)
	}
	var raw []byte
	for _, e := range entries {
		raw = append(raw, e.Value...)
	}
	return raw, nil
}

func writeMetaChunks(ctx context.Context, srv *consensus.Server, sha string, raw []byte) error {
	for i := 0; i*metaChunk < len(raw); i++ {
		end := min((i+1)*metaChunk, len(raw))
		if _, err := srv.KVPut(ctx, state.ScopeGlobal, fileMetaKey(sha, i), raw[i*metaChunk:end], nil); err != nil {
			return fmt.Errorf("store metainfo of %s: %w", sha, err)
		}
	}
	return nil
}

// seed serves obj to the swarm, if this agent runs one.
func (w *Worker) seed(obj transfer.Object) error {
	if w.swarm == nil {
		return nil
	}
	return w.swarm.Seed(obj)
}

// unseed stops serving sha256 to the swarm, if this agent runs one.
func (w *Worker) unseed(sha256 string) {
	if w.swarm != nil {
		w.swarm.Drop(sha256)
	}
}

func (w *Worker) swarmAddr() string {
	if w.swarm == nil {
		return ""
	}
	return w.cfg.SwarmAdvertise
}
