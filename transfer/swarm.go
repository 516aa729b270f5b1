package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"go.etcd.io/bbolt"
	"golang.org/x/time/rate"
)

// Peer is a swarm member handed out by the control group.
type Peer struct {
	// Addr is the host:port of the peer's swarm listener.
	Addr string
	// Trusted peers (same IDC) are exempt from anacrolix's ban after a
	// failed piece in which they were the only contributor; smart bans
	// (a block proven bad once the piece verifies) apply to everyone.
	Trusted bool
	// Name is the peer's node name, used as the key of FetchStats.FromPeer.
	Name string
}

// FetchProgress is reported periodically during Fetch.
type FetchProgress struct {
	Done, Total int64 // verified bytes, object size
	Peers       int   // connected peers
}

// FetchStats summarises a Fetch.
type FetchStats struct {
	// Bytes received from peers during this Fetch (useful data only).
	Bytes int64
	// FromPeer splits Bytes by Peer.Name, or by address for peers that
	// connected to us without having been handed to us.
	FromPeer map[string]int64
	// Resumed is the bytes already verified on disk when the Fetch began.
	Resumed int64
	// Wasted is piece data received but not used: chunks that arrived
	// twice (a request moved to a faster peer, or cancelled too late) or
	// failed verification.
	Wasted int64
	// Duration of the Fetch.
	Duration time.Duration

	hashedWhole bool // the pieces were not all checked as they arrived (see finish)
}

// Swarm is a node's private BitTorrent swarm member: one anacrolix client
// serving every object the node seeds and fetching the ones it lacks.
type Swarm struct {
	store  *Store
	cl     *torrent.Client
	ln     net.Listener // the client's only listener; see swarmListener
	db     *bbolt.DB
	up     *rate.Limiter
	down   *rate.Limiter
	slots  *uploadSlots   // nil: unlimited
	yield  *downloadYield // gives back slots when the download link is full; nil with slots off
	cc     string         // congestion control of swarm sockets, "" the system's
	logger *slog.Logger

	bg     sync.WaitGroup // copies back into the store (copyBack)
	bgCtx  context.Context
	bgStop context.CancelFunc

	mu      sync.Mutex
	bySHA   map[string]*swarmEntry
	byIH    map[metainfo.Hash]*swarmEntry
	closed  bool
	peerMu  sync.RWMutex
	peerNam map[string]string // canonical addr -> Peer.Name
}

// swarmEntry is one object in the client.
type swarmEntry struct {
	obj     Object
	ih      metainfo.Hash
	t       *torrent.Torrent
	partial string       // partial directory while fetching
	done    atomic.Bool  // complete in the store
	fetched atomic.Bool  // completed by a Fetch in this process
	fetch   *fetchCounts // non-nil while a Fetch runs

	bookOnce sync.Once
	book     *revealBook // super-seeding state, once complete

	sums    []byte                      // the pieces' SHA-256s (pieceSums), nil if the metainfo has none
	work    atomic.Pointer[pieceWorker] // set while a Fetch follows its pieces
	storage atomic.Pointer[fileTorrent] // the open file, once anacrolix opened it
	storing chan struct{}               // closed when a copy back into the store ends; guarded by Swarm.mu
}

// revealBook returns the object's super-seeding book, made on first use.
func (e *swarmEntry) revealBook() *revealBook {
	e.bookOnce.Do(func() {
		e.book = newRevealBook(e.pieces())
	})
	return e.book
}

func (e *swarmEntry) complete() bool { return e.done.Load() }
func (e *swarmEntry) pieces() int {
	return int((e.obj.Size + e.obj.PieceLength - 1) / e.obj.PieceLength)
}
func (e *swarmEntry) partialPath() string { return filepath.Join(e.partial, "data") }

// fetchCounts accumulates useful bytes per peer during a Fetch. It has its
// own lock: anacrolix calls onUsefulData with its client lock held, so
// nothing that holds this lock may call into the client.
type fetchCounts struct {
	mu     sync.Mutex
	total  int64
	byPeer map[string]int64
}

// NewSwarm starts a swarm member listening on cfg.ListenAddr.
func NewSwarm(cfg SwarmConfig) (*Swarm, error) {
	c, ap, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	db, err := openCompletionDB(filepath.Join(c.Store.partialDir(), "completion.db"))
	if err != nil {
		return nil, err
	}
	s := &Swarm{
		store:   c.Store,
		db:      db,
		up:      rate.NewLimiter(rateLimit(c.UploadRate), limiterBurst),
		down:    rate.NewLimiter(rateLimit(c.DownloadRate), limiterBurst),
		logger:  c.Logger,
		bySHA:   map[string]*swarmEntry{},
		byIH:    map[metainfo.Hash]*swarmEntry{},
		peerNam: map[string]string{},
	}
	if c.UploadSlots > 0 {
		s.slots = newUploadSlots(c.UploadSlots)
		s.yield = newDownloadYield()
	}
	s.bgCtx, s.bgStop = context.WithCancel(context.Background())
	s.cc = congestionFor(c.Congestion, c.Logger)
	network := "tcp4"
	if ap.Addr().Is6() {
		network = "tcp6"
	}
	ln, err := net.Listen(network, ap.String())
	if err != nil {
		s.closeSlots()
		db.Close()
		return nil, fmt.Errorf("transfer: start swarm on %s: %w", c.ListenAddr, err)
	}
	cl, err := torrent.NewClient(s.clientConfig(c, ap))
	if err != nil {
		s.closeSlots()
		ln.Close()
		db.Close()
		return nil, fmt.Errorf("transfer: start swarm on %s: %w", c.ListenAddr, err)
	}
	s.cl, s.ln = cl, ln
	cl.AddListener(swarmListener{Listener: ln, s: s})
	cl.AddDialer(newBoundDialer(ap, s))
	return s, nil
}

// Addr returns the actual listen host:port.
func (s *Swarm) Addr() string {
	for _, a := range s.cl.ListenAddrs() {
		return a.String()
	}
	return ""
}

// Close stops the swarm. Verified pieces of unfinished fetches stay on disk.
func (s *Swarm) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.bgStop()
	s.bg.Wait()
	// The client first: its accept loop ends on the listener's error only
	// once the client is closed (it retries otherwise).
	errs := s.cl.Close()
	errs = append(errs, s.ln.Close(), s.db.Close())
	s.closeSlots()
	return errors.Join(errs...)
}

func (s *Swarm) closeSlots() {
	if s.slots != nil {
		s.slots.close()
	}
	s.yield.close()
}

func (s *Swarm) entryByInfoHash(ih metainfo.Hash) *swarmEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byIH[ih]
}

// Seed serves a complete object from the store until Close (or Remove of
// the object through the swarm). Seeding an object already in the swarm
// is a no-op.
func (s *Swarm) Seed(obj Object) error {
	if err := checkObject(obj); err != nil {
		return err
	}
	if _, ok, err := s.store.Get(obj.SHA256); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("transfer: seed %s: %w", obj.SHA256, ErrNotFound)
	}
	mi, err := s.store.MetaInfo(obj.SHA256)
	if err != nil {
		return err
	}
	_, err = s.add(obj, mi, true)
	return err
}

// add registers obj and adds its torrent to the client. complete says the
// object is in the store. If the object is already in the swarm the
// existing entry is returned.
func (s *Swarm) add(obj Object, mi *metainfo.MetaInfo, complete bool) (*swarmEntry, error) {
	ih := mi.HashInfoBytes()
	if ih.HexString() != obj.InfoHash {
		return nil, fmt.Errorf("transfer: %s: metainfo hashes to %s, object says %s", obj.SHA256, ih.HexString(), obj.InfoHash)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return nil, fmt.Errorf("transfer: %s: metainfo: %w", obj.SHA256, err)
	}
	if info.Length != obj.Size || info.PieceLength != obj.PieceLength || len(info.Files) != 0 || info.Name != obj.SHA256 {
		return nil, fmt.Errorf("transfer: %s: metainfo does not describe the object (length %d, piece %d, name %q)",
			obj.SHA256, info.Length, info.PieceLength, info.Name)
	}
	sums, err := pieceSums(mi, info.NumPieces())
	if err != nil {
		return nil, fmt.Errorf("transfer: %s: %w", obj.SHA256, err)
	}
	e := &swarmEntry{obj: obj, ih: ih, sums: sums, partial: filepath.Join(s.store.partialDir(), obj.SHA256)}
	e.done.Store(complete)
	// anacrolix opens the storage inside AddTorrentOpt and drops an error
	// there (the torrent then never gets its info): a download's partial
	// file is made, and its space reserved, first.
	if !complete {
		if err := reservePartial(e.partialPath(), obj.Size); err != nil {
			return nil, fmt.Errorf("transfer: fetch %s: %w", obj.SHA256, err)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("transfer: swarm closed")
	}
	if e := s.bySHA[obj.SHA256]; e != nil {
		s.mu.Unlock()
		return e, nil
	}
	s.bySHA[obj.SHA256] = e
	s.byIH[ih] = e
	s.mu.Unlock()

	// The storage is opened inside AddTorrentOpt (the info is given), which
	// calls back into entryByInfoHash: s.mu must not be held here.
	t, _ := s.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: ih, InfoBytes: mi.InfoBytes, ChunkSize: swarmChunkSize})
	s.mu.Lock()
	e.t = t
	s.mu.Unlock()
	select {
	case <-t.GotInfo():
	case <-t.Closed():
		s.forget(e)
		return nil, fmt.Errorf("transfer: %s: torrent closed while adding", obj.SHA256)
	}
	return e, nil
}

// swarmChunkSize is the size of one request on the wire. BitTorrent's
// customary 16 KiB costs anacrolix a request, a message, map lookups and
// a callback per 16 KiB, which at 100 Mbit on 20 hosts sharing 2 cores was
// all of the CPU; every peer is a herd node with the same setting, and
// anacrolix accepts requests up to 4 chunks (and the rate limiter's burst,
// limiterBurst, when a cap is set). Bigger chunks cost bytes instead:
// anacrolix moves a slow request to a faster peer by cancelling it, and a
// chunk already on its way arrives twice (a 200 MB push to 20 hosts
// received 4.7 copies twice at 128 KiB, 3.8 at 64 KiB, in the same time).
const swarmChunkSize = 64 << 10

// forget drops an entry and its torrent.
func (s *Swarm) forget(e *swarmEntry) {
	s.mu.Lock()
	if s.bySHA[e.obj.SHA256] == e {
		delete(s.bySHA, e.obj.SHA256)
		delete(s.byIH, e.ih)
	}
	t := e.t
	s.mu.Unlock()
	if t != nil {
		t.Drop()
		<-t.Closed()
	}
}

// Drop stops seeding or fetching sha256 (e.g. before the object is removed
// from the store). Verified pieces of a partial download stay on disk.
func (s *Swarm) Drop(sha256 string) {
	s.mu.Lock()
	e := s.bySHA[sha256]
	s.mu.Unlock()
	if e != nil {
		s.forget(e)
	}
}

// AddPeers hands more peers to the object's torrent (during a fetch, or to
// a seeder so it connects out). Unknown objects are ignored.
func (s *Swarm) AddPeers(sha256 string, peers []Peer) {
	s.mu.Lock()
	e := s.bySHA[sha256]
	s.mu.Unlock()
	if e == nil || e.t == nil {
		return
	}
	e.t.AddPeers(s.peerInfos(peers))
}

func (s *Swarm) peerInfos(peers []Peer) []torrent.PeerInfo {
	out := make([]torrent.PeerInfo, 0, len(peers))
	self := s.Addr()
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	for _, p := range peers {
		addr := canonicalAddr(p.Addr)
		if addr == "" || addr == self {
			continue
		}
		if p.Name != "" {
			s.peerNam[addr] = p.Name
		}
		ap, _ := netip.ParseAddrPort(addr)
		out = append(out, torrent.PeerInfo{
			Addr:    torrent.IpPort{IP: ap.Addr().AsSlice(), Port: ap.Port()},
			Source:  torrent.PeerSourceDirect,
			Trusted: p.Trusted,
		})
	}
	return out
}

// canonicalAddr returns addr as netip spells it, or "" if it is not an
// ip:port (host names are not resolved: the control group hands out IPs).
func canonicalAddr(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ""
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// onUsefulData is anacrolix's ReceivedUsefulData callback, called with the
// client lock held.
func (s *Swarm) onUsefulData(ev torrent.ReceivedUsefulDataEvent) {
	t := ev.Peer.Torrent()
	if t == nil {
		return
	}
	s.mu.Lock()
	e := s.byIH[t.InfoHash()]
	var fc *fetchCounts
	if e != nil {
		fc = e.fetch
	}
	s.mu.Unlock()
	if fc == nil {
		return
	}
	name := s.peerName(ev.Peer)
	n := int64(len(ev.Message.Piece))
	fc.mu.Lock()
	fc.total += n
	fc.byPeer[name] += n
	fc.mu.Unlock()
}

// peerName names a connected peer: by the Name it was handed out under,
// else by its listen address. An inbound connection's source port is
// ephemeral, so its listen port comes from the extended handshake.
func (s *Swarm) peerName(p *torrent.Peer) string {
	addr := p.RemoteAddr.String()
	if pc, ok := p.TryAsPeerConn(); ok && p.Discovery == torrent.PeerSourceIncoming && pc.PeerListenPort != 0 {
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			addr = netip.AddrPortFrom(ap.Addr(), uint16(pc.PeerListenPort)).String()
		}
	}
	addr = canonicalAddr(addr)
	s.peerMu.RLock()
	name, ok := s.peerNam[addr]
	s.peerMu.RUnlock()
	if ok {
		return name
	}
	return addr
}

// progressInterval is how often Fetch reports progress.
const progressInterval = 250 * time.Millisecond

// Fetch downloads obj (described by mi, as recorded by the store that
// added it) from peers, verifies the whole file's SHA-256, moves it into
// the store (or into a push's DEST, see InstallTo) and keeps seeding it.
// It blocks until then or until ctx is done; verified pieces stay on disk,
// and a later Fetch (after a restart too) resumes from them. If the object is already in the store,
// Fetch seeds it and returns at once.
func (s *Swarm) Fetch(ctx context.Context, obj Object, mi *metainfo.MetaInfo, peers []Peer, progress func(FetchProgress), opts ...FetchOption) (FetchStats, error) {
	var fo fetchOptions
	for _, o := range opts {
		o(&fo)
	}
	start := time.Now()
	if err := checkObject(obj); err != nil {
		return FetchStats{}, err
	}
	if mi == nil {
		return FetchStats{}, fmt.Errorf("transfer: fetch %s: no metainfo", obj.SHA256)
	}
	if _, ok, err := s.store.Get(obj.SHA256); err != nil {
		return FetchStats{}, err
	} else if ok {
		return FetchStats{Duration: time.Since(start), FromPeer: map[string]int64{}}, s.Seed(obj)
	}
	e, err := s.add(obj, mi, false)
	if err != nil {
		return FetchStats{}, err
	}
	fc := &fetchCounts{byPeer: map[string]int64{}}
	s.mu.Lock()
	if e.fetch != nil {
		s.mu.Unlock()
		return FetchStats{}, fmt.Errorf("transfer: fetch %s: already being fetched", obj.SHA256)
	}
	e.fetch = fc
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		e.fetch = nil
		s.mu.Unlock()
	}()
	var resumed, wasted int64
	stats := func() FetchStats {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		m := make(map[string]int64, len(fc.byPeer))
		for k, v := range fc.byPeer {
			m[k] = v
		}
		return FetchStats{Bytes: fc.total, FromPeer: m, Resumed: resumed, Wasted: wasted, Duration: time.Since(start)}
	}
	if e.complete() { // a concurrent Fetch finished it
		return stats(), s.awaitStored(ctx, e)
	}
	t := e.t
	// A chunk that cannot be written (a disk filled by something else, an
	// I/O error) ends the fetch with that error; anacrolix would otherwise
	// stop downloading and leave it waiting forever.
	writeFailed := make(chan error, 1)
	t.SetOnWriteChunkError(func(err error) {
		select {
		case writeFailed <- err:
		default:
		}
	})
	resumed = verifiedBytes(t, obj)
	// On DEST's filesystem the finished file is moved into place (finish);
	// elsewhere each piece is copied there as it verifies. Each piece is
	// checked against its SHA-256 as it verifies, too. The worker starts
	// before any piece can verify.
	var moveTo, copyTo *Staging
	if st := fo.stage; st != nil {
		if st.sameFilesystem(e.partialPath()) {
			moveTo = st
		} else {
			copyTo = st
		}
	}
	work := startPieceWorker(e, e.sums, copyTo)
	defer work.stop(e)
	t.AddPeers(s.peerInfos(peers))
	t.DownloadAll()
	if fo.stagger {
		staggerPieces(t, fo.start)
	}

	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	report := func() {
		if progress != nil {
			progress(FetchProgress{Done: verifiedBytes(t, obj), Total: obj.Size, Peers: len(t.PeerConns())})
		}
	}
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			st := stats()
			s.forget(e) // stop downloading; pieces stay for resume
			return st, fmt.Errorf("transfer: fetch %s: %w", obj.SHA256, ctx.Err())
		case <-t.Closed():
			return stats(), fmt.Errorf("transfer: fetch %s: dropped", obj.SHA256)
		case err := <-writeFailed:
			st := stats()
			s.forget(e) // verified pieces stay for a later fetch
			return st, fmt.Errorf("transfer: fetch %s: write the partial download: %w", obj.SHA256, kinded(err))
		case <-work.failed():
			_, err := work.stop(e)
			s.discard(e) // the pieces' two hashes disagree: start over
			return stats(), err
		case <-t.Complete().On():
			waiting = false
		case <-tick.C:
			report()
		}
	}
	report()
	cs := t.Stats().ConnStats
	wasted = max(cs.BytesReadData.Int64()-cs.BytesReadUsefulData.Int64(), 0)
	checked, err := work.stop(e)
	if err != nil {
		s.discard(e)
		return stats(), err
	}
	err = s.finish(ctx, e, mi, moveTo, checked)
	st := stats()
	st.hashedWhole = !checked
	return st, err
}

// finish verifies a fully downloaded object and moves it into the store;
// the torrent keeps seeding from the same (renamed) file.
//
// Every piece passed its SHA-1 from the metainfo, whose info hash the
// object record names, so the bytes are the origin's. The SHA-256 guards
// against a metainfo that does not describe the object record it sits
// with, and against SHA-1 collisions: checked piece by piece while the
// fetch ran (checked: every piece matched its SHA-256 from the metainfo,
// see pieceWorker), or else over the whole file here. The MD5 is not
// recomputed (it was a fifth of a receiving host's CPU in a 20-host
// push): it is the record's, and the SHA-256 ties the bytes to that record.
//
// With moveTo, the file is moved into DEST's staging file instead (Commit
// then only renames it into place) and copied back into the store in the
// background: the push's critical path has no copy at all. Until the copy
// is in the store, the torrent seeds from DEST's file.
func (s *Swarm) finish(ctx context.Context, e *swarmEntry, mi *metainfo.MetaInfo, moveTo *Staging, checked bool) error {
	obj := e.obj
	if !checked {
		f, err := os.Open(e.partialPath())
		if err != nil {
			return fmt.Errorf("transfer: fetch %s: verify: %w", obj.SHA256, err)
		}
		h := sha256.New()
		n, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, 1<<20))
		f.Close()
		if err != nil {
			return fmt.Errorf("transfer: fetch %s: verify: %w", obj.SHA256, err)
		}
		if sha := hex.EncodeToString(h.Sum(nil)); sha != obj.SHA256 || n != obj.Size {
			// Every piece passed SHA-1, so the metainfo itself disagrees
			// with the object record: start over rather than seed wrong bytes.
			s.discard(e)
			return fmt.Errorf("transfer: fetch %s: %w: got sha256 %s (%d bytes)", obj.SHA256, ErrDigestMismatch, sha, n)
		}
	}
	forget := func() {
		if err := forgetPieces(s.db, obj.SHA256); err != nil {
			s.logger.Warn("transfer: forget piece records", "sha256", obj.SHA256, "err", err)
		}
	}
	if moveTo != nil {
		forget() // before the file leaves: the records must not outlive its place
		if src, err := os.Open(e.partialPath()); err == nil {
			if err := moveTo.adopt(e.partialPath()); err == nil {
				e.fetched.Store(true)
				e.done.Store(true)
				os.RemoveAll(e.partial)
				s.copyBack(e, mi, src)
				return nil
			}
			src.Close()
		}
	}
	if _, err := s.store.commit(e.partialPath(), obj, mi); err != nil {
		return err
	}
	e.fetched.Store(true)
	e.done.Store(true)
	os.RemoveAll(e.partial)
	forget()
	return nil
}

// discard drops e's torrent and its partial file and piece records: its
// bytes are not the object's, and a fetch starts over.
func (s *Swarm) discard(e *swarmEntry) {
	s.forget(e)
	os.RemoveAll(e.partial)
	forgetPieces(s.db, e.obj.SHA256)
}

// copyBack copies an object moved out to DEST (src is open on it) into
// the store, verifying its SHA-256 on the way (DEST may have changed since),
// and then seeds from the store's copy.
func (s *Swarm) copyBack(e *swarmEntry, mi *metainfo.MetaInfo, src *os.File) {
	done := make(chan struct{})
	s.mu.Lock()
	e.storing = done
	s.mu.Unlock()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer close(done)
		defer src.Close()
		if err := s.store.putCopy(s.bgCtx, src, e.obj, mi); err != nil {
			s.logger.Warn("transfer: copy into the content store failed; this node will not hold the object",
				"sha256", e.obj.SHA256, "err", err)
			s.forget(e) // stop seeding from DEST's file, which may have changed
			return
		}
		if ft := e.storage.Load(); ft != nil {
			if f, err := os.Open(s.store.objectBase(e.obj.SHA256)); err == nil {
				ft.swap(f)
			}
		}
	}()
}

// awaitStored waits for e's copy back into the store, if one runs, and
// reports whether the store has the object.
func (s *Swarm) awaitStored(ctx context.Context, e *swarmEntry) error {
	s.mu.Lock()
	ch := e.storing
	s.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("transfer: fetch %s: %w", e.obj.SHA256, ctx.Err())
		}
	}
	if _, ok, err := s.store.Get(e.obj.SHA256); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("transfer: fetch %s: the copy into the content store failed", e.obj.SHA256)
	}
	return nil
}

// verifiedBytes counts the bytes of hash-verified pieces. Torrent's
// BytesCompleted also counts received but unverified chunks, which a
// restart loses.
func verifiedBytes(t *torrent.Torrent, obj Object) int64 {
	var n int64
	completeRuns(t, func(first, count int) {
		n += min(int64(first+count)*obj.PieceLength, obj.Size) - int64(first)*obj.PieceLength
	})
	return n
}

// completeRuns calls f for each run of count verified pieces from first.
func completeRuns(t *torrent.Torrent, f func(first, count int)) {
	i := 0
	for _, run := range t.PieceStateRuns() {
		if run.Complete {
			f(i, run.Length)
		}
		i += run.Length
	}
}

// FetchOption adjusts one Fetch.
type FetchOption func(*fetchOptions)

type fetchOptions struct {
	stagger bool
	start   float64
	stage   *Staging
}

// InstallTo makes the fetch fill st, so that st.Commit has (almost)
// nothing left to copy. On st's filesystem the finished file is moved into
// it, and copied back into the store afterwards, off the push's critical
// path; elsewhere every piece is copied into st as it verifies (and the
// pieces verified before the fetch started), a piece missed being left to
// Commit.
func InstallTo(st *Staging) FetchOption {
	return func(o *fetchOptions) { o.stage = st }
}

// StartAt makes the fetch want the half of the pieces that follows
// position start (0 ≤ start < 1, as a fraction of the file, wrapping
// around) before the other half. anacrolix breaks ties between pieces of
// equal priority by index, so hosts that all start together ask the origin
// for the same pieces first and it uploads them several times; hosts given
// spread-out starts ask it for different pieces and then trade them.
func StartAt(start float64) FetchOption {
	return func(o *fetchOptions) {
		o.stagger, o.start = true, start-math.Floor(start)
	}
}

// staggerPieces raises the priority of the half of t's pieces from start.
func staggerPieces(t *torrent.Torrent, start float64) {
	n := t.NumPieces()
	if n < 2 {
		return
	}
	first := int(start * float64(n))
	for k := 0; k < n/2; k++ {
		t.Piece((first + k) % n).SetPriority(torrent.PiecePriorityHigh)
	}
}
