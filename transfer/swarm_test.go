package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/sys/unix"
)

// newTestSwarm starts a swarm on ip (a distinct 127.x address per node, so
// that anacrolix's per-IP bans and accounting tell nodes apart).
func newTestSwarm(t testing.TB, st *Store, ip string, mut func(*SwarmConfig)) *Swarm {
	t.Helper()
	cfg := DefaultSwarmConfig()
	cfg.Store = st
	cfg.ListenAddr = ip + ":0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	if mut != nil {
		mut(cfg)
	}
	s, err := NewSwarm(*cfg)
	if err != nil {
		t.Fatalf("NewSwarm: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// seeded adds data to a fresh store and seeds it from a swarm on ip.
func seeded(t testing.TB, ip string, data []byte, mut func(*SwarmConfig)) (*Swarm, Object) {
	t.Helper()
	st := newStore(t)
	obj := addBytes(t, st, "blob.bin", data)
	sw := newTestSwarm(t, st, ip, mut)
	if err := sw.Seed(obj); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	return sw, obj
}

func TestSwarmPlain(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm test")
	}
	data := randomBytes(64<<20, 10)
	// The seeder's upload is capped so leechers must trade with each other.
	seeder, obj := seeded(t, "127.0.1.1", data, func(c *SwarmConfig) { c.UploadRate = 24 << 20 })
	mi, err := seeder.store.MetaInfo(obj.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	leechers := make([]*Swarm, n)
	for i := range leechers {
		leechers[i] = newTestSwarm(t, newStore(t), fmt.Sprintf("127.0.1.%d", i+2), nil)
	}
	peers := []Peer{{Addr: seeder.Addr(), Name: "seeder", Trusted: true}}
	for i, l := range leechers {
		peers = append(peers, Peer{Addr: l.Addr(), Name: fmt.Sprintf("leecher%d", i), Trusted: true})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	stats := make([]FetchStats, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, l := range leechers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[i], errs[i] = l.Fetch(ctx, obj, mi, peers, nil)
		}()
	}
	wg.Wait()
	var fromSeeder, fromLeechers int64
	for i, l := range leechers {
		if errs[i] != nil {
			t.Fatalf("leecher%d: %v", i, errs[i])
		}
		got, ok, err := l.store.Get(obj.SHA256)
		if err != nil || !ok || got != obj {
			t.Fatalf("leecher%d store: %+v %v %v", i, got, ok, err)
		}
		fileEquals(t, l.store.Path(obj.SHA256), data)
		for name, b := range stats[i].FromPeer {
			if name == "seeder" {
				fromSeeder += b
			} else {
				fromLeechers += b
			}
		}
		t.Logf("leecher%d: %d bytes (%d wasted) in %s from %v", i, stats[i].Bytes, stats[i].Wasted, stats[i].Duration.Round(time.Millisecond), stats[i].FromPeer)
		if _, err := os.Stat(filepath.Join(l.store.partialDir(), obj.SHA256)); !os.IsNotExist(err) {
			t.Errorf("leecher%d: partial dir left: %v", i, err)
		}
	}
	t.Logf("from seeder %d MiB, from leechers %d MiB", fromSeeder>>20, fromLeechers>>20)
	if fromLeechers == 0 {
		t.Fatal("no bytes moved between leechers")
	}
	// Super-seeding: the seeder shows each leecher the pieces fewest others
	// have, so it sends about one copy (1.9 copies without it).
	if fromSeeder > obj.Size*3/2 {
		t.Fatalf("the seeder sent %.2f copies; super-seeding should keep it near 1", float64(fromSeeder)/float64(obj.Size))
	}
	// A finished leecher seeds: a late node fetches with only leechers as peers.
	late := newTestSwarm(t, newStore(t), "127.0.1.20", nil)
	st, err := late.Fetch(ctx, obj, mi, peers[1:], nil)
	if err != nil {
		t.Fatalf("late fetch: %v", err)
	}
	if st.FromPeer["seeder"] != 0 || st.Bytes < obj.Size {
		t.Fatalf("late fetch stats %+v", st)
	}
}

func TestSwarmResume(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm test")
	}
	data := randomBytes(32<<20, 11)
	seeder, obj := seeded(t, "127.0.2.1", data, nil)
	mi, _ := seeder.store.MetaInfo(obj.SHA256)
	peers := []Peer{{Addr: seeder.Addr(), Name: "seeder"}}

	dir := filepath.Join(t.TempDir(), "content")
	st1, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	l1 := newTestSwarm(t, st1, "127.0.2.2", func(c *SwarmConfig) { c.DownloadRate = 8 << 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fctx, stop := context.WithCancel(ctx)
	// DEST is staged and, on another filesystem (a tmpfs), copied into as
	// pieces verify (InstallTo).
	destDir := t.TempDir()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs for DEST")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", destDir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", destDir).Run() })
	dest := filepath.Join(destDir, "app.bin")
	stage1, err := Stage(dest, obj.Size, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stats1, err := l1.Fetch(fctx, obj, mi, peers, func(p FetchProgress) {
		if p.Done >= 8<<20 {
			stop()
		}
	}, InstallTo(stage1))
	if err == nil {
		t.Fatal("first fetch completed despite the cancel")
	}
	if err := l1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("first fetch: %d bytes, err %v", stats1.Bytes, err)
	stage1.tmp.Close() // the agent died: its staging file stays, unlocked

	st2, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	l2 := newTestSwarm(t, st2, "127.0.2.2", nil)
	stage2, err := Stage(dest, obj.Size, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stage2.tmp.Name() != stage1.tmp.Name() {
		t.Errorf("the restarted install staged %s, not the dead one's %s", stage2.tmp.Name(), stage1.tmp.Name())
	}
	stats2, err := l2.Fetch(ctx, obj, mi, peers, nil, InstallTo(stage2))
	if err != nil {
		t.Fatalf("resumed fetch: %v", err)
	}
	// Every piece, the resumed ones too, was copied into DEST's staging
	// file before Fetch returned: Commit has nothing left to copy.
	if gaps := stage2.gaps(); len(gaps) != 0 {
		t.Errorf("not mirrored: %v", gaps)
	}
	if err := stage2.Commit(ctx, st2.Path(obj.SHA256)); err != nil {
		t.Fatal(err)
	}
	fileEquals(t, dest, data)
	assertNoTemps(t, destDir)
	t.Logf("resumed: %d bytes already verified, %d fetched", stats2.Resumed, stats2.Bytes)
	fileEquals(t, st2.Path(obj.SHA256), data)
	if stats2.Resumed < 8<<20 {
		t.Fatalf("Resumed = %d, want >= 8 MiB", stats2.Resumed)
	}
	if stats2.Bytes >= obj.Size || stats2.Bytes > obj.Size-stats2.Resumed+int64(obj.PieceLength) {
		t.Fatalf("refetched verified pieces: %d bytes fetched, %d resumed, size %d", stats2.Bytes, stats2.Resumed, obj.Size)
	}
}

func TestSwarmCorruptPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm test")
	}
	data := randomBytes(16<<20, 12)
	good, obj := seeded(t, "127.0.3.1", data, nil)
	bad, _ := seeded(t, "127.0.3.2", data, nil)
	// Corrupt all of piece 1 in the bad seeder's object: it trusts its
	// store and serves the bytes as they are.
	p := bad.store.Path(obj.SHA256)
	os.Chmod(p, 0o644)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(randomBytes(int(obj.PieceLength), 99), obj.PieceLength); err != nil {
		t.Fatal(err)
	}
	f.Close()

	mi, _ := good.store.MetaInfo(obj.SHA256)
	leech := newTestSwarm(t, newStore(t), "127.0.3.3", func(c *SwarmConfig) {
		if os.Getenv("HERD_DEBUG") != "" {
			c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		st  FetchStats
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Only the bad peer at first: it is then the sole contributor to
		// the failing piece, which anacrolix answers with a ban of its IP.
		st, err := leech.Fetch(ctx, obj, mi, []Peer{{Addr: bad.Addr(), Name: "bad"}}, nil)
		done <- result{st, err}
	}()
	waitFor(t, "the bad peer to be banned", 15*time.Second, func() bool {
		return banned(leech, "127.0.3.2")
	})
	leech.AddPeers(obj.SHA256, []Peer{{Addr: good.Addr(), Name: "good"}})
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("fetch did not finish after the good peer was added")
	}
	if r.err != nil {
		t.Fatalf("fetch: %v", r.err)
	}
	fileEquals(t, leech.store.Path(obj.SHA256), data)
	leech.mu.Lock()
	ts := leech.bySHA[obj.SHA256].t.Stats()
	leech.mu.Unlock()
	t.Logf("from %v; pieces dirtied bad %d, good %d", r.st.FromPeer, ts.PiecesDirtiedBad.Int64(), ts.PiecesDirtiedGood.Int64())
	if r.st.FromPeer["good"] < obj.PieceLength {
		t.Fatalf("the corrupt piece did not come from the good peer: %v", r.st.FromPeer)
	}
}

// banned reports whether sw's client has banned ip. anacrolix records a
// ban under the 16-byte form of the address ("::ffff:127.0.3.2") as often
// as under the 4-byte one, so both are unmapped before comparing.
func banned(sw *Swarm, ip string) bool {
	return slices.ContainsFunc(sw.cl.BadPeerIPs(), func(s string) bool {
		a, err := netip.ParseAddr(s)
		return err == nil && a.Unmap().String() == ip
	})
}

// On DEST's filesystem a finished fetch is moved into the staging file:
// Commit only renames it into place, and the store gets its copy in the
// background, after which a second fetch finds the object there.
func TestSwarmInstallMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm test")
	}
	data := randomBytes(12<<20+5, 21)
	seeder, obj := seeded(t, "127.0.5.1", data, nil)
	mi, _ := seeder.store.MetaInfo(obj.SHA256)
	store := newStore(t)
	l := newTestSwarm(t, store, "127.0.5.2", nil)
	dir := filepath.Join(filepath.Dir(store.Dir()), "dest") // the store's filesystem
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "app.bin")
	st, err := Stage(dest, obj.Size, InstallOptions{Mode: 0o640})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := l.Fetch(ctx, obj, mi, []Peer{{Addr: seeder.Addr(), Name: "seeder"}}, nil, InstallTo(st)); err != nil {
		t.Fatal(err)
	}
	if !st.adopted {
		t.Fatal("the fetched file was not moved into DEST's staging file")
	}
	if err := st.Commit(ctx, "/nonexistent: not read when adopted"); err != nil {
		t.Fatal(err)
	}
	fileEquals(t, dest, data)
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	assertNoTemps(t, dir)
	// A second fetch waits for the copy back and finds it in the store.
	if _, err := l.Fetch(ctx, obj, mi, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := store.Get(obj.SHA256); err != nil || !ok {
		t.Fatalf("not in the store after the copy back: %v", err)
	}
	fileEquals(t, store.Path(obj.SHA256), data)
	// DEST is a file of its own: changing it leaves the store's copy.
	if err := os.WriteFile(dest, []byte("changed"), 0o640); err != nil {
		t.Fatal(err)
	}
	fileEquals(t, store.Path(obj.SHA256), data)
}

// A fetch checks every piece against its SHA-256 from the metainfo as it
// verifies; a piece whose SHA-1 matches but whose SHA-256 does not (a
// collision, or a metainfo whose lists disagree) fails the fetch with
// ErrDigestMismatch and leaves nothing behind. An object whose metainfo
// has no SHA-256s (added by an older herd) is hashed whole at the end.
func TestSwarmPieceSums(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm test")
	}
	data := randomBytes(10<<20+3, 31)
	for i, tc := range []struct {
		name        string
		tamper      func(sums []byte) []byte
		hashedWhole bool
		wantErr     error
	}{
		{"checked piece by piece", func(s []byte) []byte { return s }, false, nil},
		{"no sums in the metainfo", func([]byte) []byte { return nil }, true, nil},
		{"a wrong sum", func(s []byte) []byte {
			s = slices.Clone(s)
			s[sha256.Size+7] ^= 1 // the second piece's
			return s
		}, false, ErrDigestMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t)
			obj := addBytes(t, st, "blob.bin", data)
			mi, err := st.MetaInfo(obj.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			info, _ := mi.UnmarshalInfo()
			sums, err := pieceSums(mi, info.NumPieces())
			if err != nil || len(sums) != info.NumPieces()*sha256.Size {
				t.Fatalf("pieceSums: %d bytes, %v", len(sums), err)
			}
			// The seeder's store gets the (possibly tampered) metainfo and
			// a record naming its info hash.
			mi, ih, err := buildMetaInfo(obj.SHA256, obj.Size, obj.PieceLength, info.Pieces, tc.tamper(sums))
			if err != nil {
				t.Fatal(err)
			}
			obj.InfoHash = ih.HexString()
			rewriteRecord(t, st, obj, mi)
			seeder := newTestSwarm(t, st, fmt.Sprintf("127.0.6.%d", 2*i+1), nil)
			if err := seeder.Seed(obj); err != nil {
				t.Fatal(err)
			}
			fetcher := newTestSwarm(t, newStore(t), fmt.Sprintf("127.0.6.%d", 2*i+2), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			fs, err := fetcher.Fetch(ctx, obj, mi, []Peer{{Addr: seeder.Addr(), Name: "seeder"}}, nil)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil) != (err != nil) {
				t.Fatalf("Fetch: %v, want %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "piece 1:") {
				t.Fatalf("the mismatch was not found piece by piece: %v", err)
			}
			if err == nil && fs.hashedWhole != tc.hashedWhole {
				t.Fatalf("whole file hashed at the end: %v, want %v", fs.hashedWhole, tc.hashedWhole)
			}
			_, ok, _ := fetcher.store.Get(obj.SHA256)
			if ok != (tc.wantErr == nil) {
				t.Fatalf("in the fetcher's store: %v", ok)
			}
			if tc.wantErr != nil {
				if _, err := os.Stat(filepath.Join(fetcher.store.partialDir(), obj.SHA256)); !os.IsNotExist(err) {
					t.Fatalf("partial left after a mismatch: %v", err)
				}
				return
			}
			fileEquals(t, fetcher.store.Path(obj.SHA256), data)
		})
	}
	// A list of the wrong length is refused when the object is added.
	st := newStore(t)
	obj := addBytes(t, st, "blob.bin", data)
	mi, _ := st.MetaInfo(obj.SHA256)
	info, _ := mi.UnmarshalInfo()
	bad, ih, err := buildMetaInfo(obj.SHA256, obj.Size, obj.PieceLength, info.Pieces, make([]byte, 5))
	if err != nil {
		t.Fatal(err)
	}
	obj.InfoHash = ih.HexString()
	sw := newTestSwarm(t, newStore(t), "127.0.6.20", nil)
	if _, err := sw.Fetch(context.Background(), obj, bad, nil, nil); err == nil || !strings.Contains(err.Error(), pieceSumsKey) {
		t.Fatalf("Fetch with a short SHA-256 list: %v", err)
	}
}

// rewriteRecord replaces the metainfo and record of obj in st.
func rewriteRecord(t testing.TB, st *Store, obj Object, mi *metainfo.MetaInfo) {
	t.Helper()
	var b bytes.Buffer
	if err := mi.Write(&b); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(obj)
	base := st.objectBase(obj.SHA256)
	if err := writeFileAtomic(base+".torrent", b.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(base+".json", rec); err != nil {
		t.Fatal(err)
	}
}

// Swarm sockets get the configured congestion control; "system" and an
// algorithm the kernel lacks leave the kernel's; a malformed name is an
// error. Every swarm socket bounds its unsent bytes (swarmNotSentLowat).
func TestSwarmCongestion(t *testing.T) {
	for _, name := range []string{"cubic", "bbr", "reno", "system"} {
		if !ValidCongestion(name) {
			t.Errorf("ValidCongestion(%q) = false", name)
		}
	}
	for _, name := range []string{"", "Cubic", "cubic;rm", "a-name-much-too-long", "c b"} {
		if ValidCongestion(name) {
			t.Errorf("ValidCongestion(%q) = true", name)
		}
	}
	cfg := DefaultSwarmConfig()
	cfg.Store, cfg.ListenAddr, cfg.Congestion = newStore(t), "127.0.6.1:0", "no such!"
	if _, err := NewSwarm(*cfg); err == nil || !strings.Contains(err.Error(), "congestion control") {
		t.Fatalf("NewSwarm with a malformed algorithm: %v", err)
	}
	if s := newTestSwarm(t, newStore(t), "127.0.6.2", func(c *SwarmConfig) { c.Congestion = SystemCongestion }); s.cc != "" {
		t.Fatalf("system: sockets set to %q", s.cc)
	}
	if s := newTestSwarm(t, newStore(t), "127.0.6.3", func(c *SwarmConfig) { c.Congestion = "nosuchalgo" }); s.cc != "" {
		t.Fatalf("an algorithm the kernel lacks: sockets set to %q", s.cc)
	}
	avail, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if !slices.Contains(strings.Fields(string(avail)), "cubic") {
		t.Skip("no cubic in this kernel")
	}
	s := newTestSwarm(t, newStore(t), "127.0.6.4", nil)
	ln, err := net.Listen("tcp4", "127.0.6.5:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	conn, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := newSwarmConn(conn, s)
	defer sc.Close()
	rc, _ := conn.(*net.TCPConn).SyscallConn()
	var got string
	var lowat int
	rc.Control(func(fd uintptr) {
		got, _ = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION)
		lowat, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT)
	})
	if strings.TrimRight(got, "\x00") != "cubic" {
		t.Fatalf("swarm socket congestion control %q, want cubic", got)
	}
	if lowat != swarmNotSentLowat {
		t.Fatalf("swarm socket TCP_NOTSENT_LOWAT %d, want %d", lowat, swarmNotSentLowat)
	}
}

// TestSwarmAcceptsAfterBadHandshakes: connections that fail their
// handshake (one for an object the node has not loaded, one that is not
// plain BitTorrent) do not make the node refuse the next peers from the
// same /24. anacrolix would refuse them for up to 15 minutes.
func TestSwarmAcceptsAfterBadHandshakes(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm test")
	}
	data := randomBytes(8<<20, 14)
	seeder, obj := seeded(t, "127.0.9.1", data, nil)
	mi, err := seeder.store.MetaInfo(obj.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	unknown := make([]byte, 0, btHandshakeLen)
	unknown = append(unknown, 19)
	unknown = append(unknown, "BitTorrent protocol"...)
	unknown = append(unknown, make([]byte, 8)...)
	unknown = append(unknown, bytes.Repeat([]byte{0xab}, 20)...) // no such info hash
	unknown = append(unknown, bytes.Repeat([]byte{'x'}, 20)...)
	obfuscated := randomBytes(btHandshakeLen, 15) // what an MSE handshake looks like
	for i, hs := range [][]byte{unknown, obfuscated} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 9, byte(2+i))}}
		c, err := d.Dial("tcp", seeder.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(hs)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		io.Copy(io.Discard, c) // until the seeder hangs up: it has judged the handshake
		c.Close()
	}
	leecher := newTestSwarm(t, newStore(t), "127.0.9.9", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := leecher.Fetch(ctx, obj, mi, []Peer{{Addr: seeder.Addr(), Name: "seeder"}}, nil); err != nil {
		t.Fatalf("fetch from a seeder that saw bad handshakes from the same /24: %v", err)
	}
	fileEquals(t, leecher.store.Path(obj.SHA256), data)
}

// TestSwarmFetchNoSpace: a node whose disk cannot hold the object fails
// the fetch at once with ErrNoSpace, naming what it needed, instead of
// downloading until the disk fills and then waiting forever.
func TestSwarmFetchNoSpace(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm test")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs for the store")
	}
	data := randomBytes(16<<20, 16)
	seeder, obj := seeded(t, "127.0.10.1", data, nil)
	mi, err := seeder.store.MetaInfo(obj.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	st, err := OpenStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	leecher := newTestSwarm(t, st, "127.0.10.2", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = leecher.Fetch(ctx, obj, mi, []Peer{{Addr: seeder.Addr(), Name: "seeder"}}, nil)
	if !errors.Is(err, ErrNoSpace) || ctx.Err() != nil {
		t.Fatalf("fetch onto a full disk: %v (deadline: %v), want ErrNoSpace at once", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), "needs 17 MB") {
		t.Errorf("the error does not say what was needed: %v", err)
	}
	t.Logf("error: %v", err)
}
