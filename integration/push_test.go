package integration_test

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/node"
)

// pushCluster is a jobs cluster whose nodes each have their own
// filesystem root, so pushes to one path land in separate places.
func pushCluster(t *testing.T, n int) (*cluster.Cluster, []string) {
	t.Helper()
	base := t.TempDir()
	roots := make([]string, n)
	c := cluster.New(t, n, cluster.Options{ControlSize: 1, Configure: func(i int, cfg *node.Config) {
		cfg.TuneJobs = fastJobs
		cfg.Dev = true
		cfg.FSRoot = filepath.Join(base, cfg.Name)
		roots[i] = cfg.FSRoot
		if i == 3 {
			// The fourth node runs no swarm (--swarm off): it must take
			// even large files, over node streams from a holder.
			cfg.Swarm = node.SwarmOff
		}
		if err := os.MkdirAll(filepath.Join(cfg.FSRoot, "opt"), 0o755); err != nil {
			t.Fatal(err)
		}
	}})
	ctx := ctxTimeout(t, 60*time.Second)
	if err := c.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	waitControl(ctx, t, c, 0, "", 1)
	return c, roots
}

func randomFile(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// Pushes install identical bytes everywhere (over node streams for a small
// file, the swarm for a large one, and straight from the origin with
// --no-swarm); a second push is all skipped; bad input is refused clearly.
func TestPush(t *testing.T) {
	c, roots := pushCluster(t, 4)
	ctx := ctxTimeout(t, 120*time.Second)
	svc := c.Agents[1].Jobs()

	for _, tc := range []struct {
		name    string
		size    int
		noSwarm bool
	}{
		{"small", 100 << 10, false},
		{"swarm", 12 << 20, false},
		{"no-swarm", 6 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, data := randomFile(t, tc.size)
			// The file starts on node1 (in its root: AddLocalFile reads
			// paths under the node's fs-root in dev mode).
			rel := "/src-" + tc.name + ".bin"
			if err := os.WriteFile(filepath.Join(roots[0], rel), data, 0o600); err != nil {
				t.Fatal(err)
			}
			_ = src
			f, err := c.Agents[0].Jobs().AddLocalFile(ctx, rel)
			if err != nil {
				t.Fatal(err)
			}
			sum := md5.Sum(data)
			if f.MD5 != hex.EncodeToString(sum[:]) || f.Size != int64(tc.size) {
				t.Fatalf("file record %+v", f)
			}
			push := &model.PushSpec{File: model.File{SHA256: f.SHA256}, Dest: "/opt", Mode: "0640", NoSwarm: tc.noSwarm}
			id := createRun(ctx, t, c, 1, model.RunRequest{Targets: model.Targets{All: true}, Push: push})
			v := waitRun(ctx, t, c, 2, id)
			for i, h := range v.Hosts {
				if h.Status != model.HostSuccess && !(h.Host == "node1" && h.Status == model.HostSuccess) {
					t.Fatalf("%s: %s (%s)", h.Host, h.Status, h.Error)
				}
				got, err := os.ReadFile(filepath.Join(roots[i], "opt", filepath.Base(rel)))
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%s: installed file differs (%v)", h.Host, err)
				}
				st, _ := os.Stat(filepath.Join(roots[i], "opt", filepath.Base(rel)))
				if st.Mode().Perm() != 0o640 {
					t.Fatalf("%s: mode %v", h.Host, st.Mode())
				}
				tr := h.Transfer
				if tr == nil || tr.MD5 != f.MD5 {
					t.Fatalf("%s: transfer %+v", h.Host, tr)
				}
				if h.Host != "node1" && tr.FromOrigin+tr.FromPeers != int64(tc.size) {
					t.Errorf("%s: %d bytes from origin + %d from peers, want %d", h.Host, tr.FromOrigin, tr.FromPeers, tc.size)
				}
				if tc.noSwarm && h.Host != "node1" && tr.FromOrigin != int64(tc.size) {
					t.Errorf("%s: --no-swarm took %d bytes from the origin", h.Host, tr.FromOrigin)
				}
			}
			// Pushing it again moves nothing: every host is identical.
			again := waitRun(ctx, t, c, 0, createRun(ctx, t, c, 3, model.RunRequest{Targets: model.Targets{All: true}, Push: push}))
			for _, h := range again.Hosts {
				if h.Status != model.HostSkipped || h.Transfer == nil || !h.Transfer.Identical || h.Transfer.Bytes != 0 {
					t.Fatalf("second push, %s: %s %+v", h.Host, h.Status, h.Transfer)
				}
			}
		})
	}

	list, err := svc.ListFiles(ctx)
	if err != nil || len(list.Files) != 3 {
		t.Fatalf("files: %+v %v", list, err)
	}
	sha := list.Files[0].SHA256
	for name, p := range map[string]model.PushSpec{
		"relative dest":  {File: model.File{SHA256: sha}, Dest: "opt/x"},
		"dotdot dest":    {File: model.File{SHA256: sha}, Dest: "/opt/../etc/x"},
		"mode too large": {File: model.File{SHA256: sha}, Dest: "/opt/x", Mode: "017777"},
		"missing source": {File: model.File{SHA256: strings.Repeat("ab", 32)}, Dest: "/opt/x"},
		"bad owner":      {File: model.File{SHA256: sha}, Dest: "/opt/x", Owner: "a b"},
	} {
		_, err := svc.CreateRun(ctx, model.RunRequest{Targets: model.Targets{All: true}, Push: &p})
		if p2p.CodeOf(err) != p2p.CodeBadRequest {
			t.Errorf("%s: err = %v, want bad_request", name, err)
		}
	}
	// Without --mode the file is installed 0644.
	nm := model.PushSpec{File: model.File{SHA256: sha}, Dest: "/opt/nomode"}
	nv := waitRun(ctx, t, c, 0, createRun(ctx, t, c, 0, model.RunRequest{Targets: model.Targets{All: true}, Push: &nm}))
	for i, h := range nv.Hosts {
		st, err := os.Stat(filepath.Join(roots[i], "opt", "nomode"))
		if h.Status != model.HostSuccess || err != nil || st.Mode().Perm() != 0o644 {
			t.Fatalf("push without a mode, %s: %s %q (%v)", h.Host, h.Status, h.Error, err)
		}
	}
	// Per-host errors: an unknown owner and a missing parent directory.
	for _, p := range []model.PushSpec{
		{File: model.File{SHA256: sha}, Dest: "/opt/owned", Owner: "nobody-such-user"},
		{File: model.File{SHA256: sha}, Dest: "/missing/dir/x"},
	} {
		p := p
		v := waitRun(ctx, t, c, 0, createRun(ctx, t, c, 0, model.RunRequest{Targets: model.Targets{All: true}, Push: &p}))
		for i, h := range v.Hosts {
			if h.Status != model.HostFailed || h.Error == "" {
				t.Fatalf("%s to %s: %s %q", p.Dest, h.Host, h.Status, h.Error)
			}
			if _, err := os.Stat(filepath.Join(roots[i], p.Dest)); err == nil {
				t.Fatalf("%s: a file was left at %s", h.Host, p.Dest)
			}
		}
	}
}
