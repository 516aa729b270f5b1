package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-io/herd/jobs/model"
)

// fakeUploads is a node's upload endpoints in memory. failPut names the
// PUTs (1-based) that keep half their body and then fail with 503, as a
// connection cut mid-chunk does.
type fakeUploads struct {
	mu        sync.Mutex
	name      string
	size      int64
	data      []byte
	puts      int
	failPut   map[int]bool
	failFrom  int // every PUT from this one on fails and keeps nothing
	statuses  int
	committed string // the sha256 the client sent at commit
}

func (f *fakeUploads) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(status int, v any) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	state := func() Upload { return Upload{ID: "u1", Name: f.name, Size: f.size, Received: int64(len(f.data))} }
	switch key := r.Method + " " + r.URL.Path; key {
	case "POST /v1/uploads":
		var b struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		f.name, f.size = b.Name, b.Size
		reply(200, state())
	case "GET /v1/uploads/u1":
		f.statuses++
		reply(200, state())
	case "PUT /v1/uploads/u1":
		f.puts++
		off, _ := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
		if off != int64(len(f.data)) {
			reply(409, ErrorBody{Error: Error{Code: "conflict", Message: "wrong offset"}})
			return
		}
		body, _ := io.ReadAll(r.Body)
		if f.failFrom > 0 && f.puts >= f.failFrom {
			reply(503, ErrorBody{Error: Error{Code: CodeUnavailable, Message: "connection cut"}})
			return
		}
		if f.failPut[f.puts] {
			f.data = append(f.data, body[:len(body)/2]...)
			reply(503, ErrorBody{Error: Error{Code: CodeUnavailable, Message: "connection cut"}})
			return
		}
		f.data = append(f.data, body...)
		reply(200, state())
	case "POST /v1/uploads/u1/commit":
		var b struct {
			SHA256 string `json:"sha256"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		f.committed = b.SHA256
		sum := sha256.Sum256(f.data)
		reply(200, model.File{SHA256: hex.EncodeToString(sum[:]), Name: f.name, Size: int64(len(f.data))})
	default:
		reply(404, ErrorBody{Error: Error{Code: CodeNotFound, Message: key}})
	}
}

func TestUploadFileResumesAfterAFailedChunk(t *testing.T) {
	data := make([]byte, 10*1000+7) // 11 chunks of 1,000, the last short
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])

	tests := []struct {
		name     string
		failPut  map[int]bool
		failFrom int
		sha      string
		wantErr  string
		statuses int
	}{
		{"clean", nil, 0, "", "", 0},
		{"one chunk cut in half", map[int]bool{3: true}, 0, want, "", 1},
		{"two cuts in a row", map[int]bool{3: true, 4: true}, 0, "", "", 2},
		{"file changed since hashing", nil, 0, strings.Repeat("0", 64), "the file changed", 0},
		{"gives up after Retries failures without progress", nil, 2, "", "connection cut", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeUploads{failPut: tt.failPut, failFrom: tt.failFrom}
			srv := httptest.NewServer(f)
			defer srv.Close()
			c, _ := NewClient(srv.URL, "tok")
			var progress, retries []int64
			o := UploadOptions{ChunkSize: 1000, Retries: 3, RetryWait: time.Millisecond, SHA256: tt.sha,
				Progress: func(n int64) { progress = append(progress, n) },
				OnRetry:  func(_ error, at int64) { retries = append(retries, at) }}
			got, err := c.UploadFile(context.Background(), bytes.NewReader(data), "app.tar", int64(len(data)), o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				if f.committed != "" {
					t.Fatal("a failed upload must not commit")
				}
				if f.statuses != tt.statuses {
					t.Fatalf("%d status reads, want %d", f.statuses, tt.statuses)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f.data, data) {
				t.Fatalf("the node holds %d bytes, not the file's %d (or different ones)", len(f.data), len(data))
			}
			if f.committed != want || got.SHA256 != want {
				t.Fatalf("commit sent sha256 %q, node answered %q; want %s", f.committed, got.SHA256, want)
			}
			if f.statuses != tt.statuses || len(retries) != tt.statuses {
				t.Fatalf("%d status reads, %d retries; want %d", f.statuses, len(retries), tt.statuses)
			}
			if last := progress[len(progress)-1]; last != int64(len(data)) {
				t.Fatalf("progress ends at %d, want %d", last, len(data))
			}
			if f.name != "app.tar" || f.size != int64(len(data)) {
				t.Fatalf("begin announced %q size %d", f.name, f.size)
			}
		})
	}
}

func TestUploadFileStopsOnBadRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		_ = json.NewEncoder(w).Encode(ErrorBody{Error: Error{Code: CodeBadRequest, Message: "upload name must be a plain file name"}})
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL, "tok")
	_, err := c.UploadFile(context.Background(), bytes.NewReader([]byte("x")), "..", 1, UploadOptions{RetryWait: time.Millisecond})
	var re *RequestError
	if err == nil || !errors.As(err, &re) || re.Status != 400 {
		t.Fatalf("err %v, want the 400 at once", err)
	}
}

func TestFilesClientRequests(t *testing.T) {
	ctx := context.Background()
	sha := strings.Repeat("ab", 32)
	tests := []struct {
		name   string
		call   func(c *Client) error
		method string
		path   string
		query  string
		body   string
	}{
		{"list", func(c *Client) error { _, err := c.Files(ctx); return err }, "GET", "/v1/files", "", ""},
		{"get", func(c *Client) error { _, err := c.File(ctx, sha); return err }, "GET", "/v1/files/" + sha, "", ""},
		{"delete", func(c *Client) error { return c.DeleteFile(ctx, sha) }, "DELETE", "/v1/files/" + sha, "", ""},
		{"add on host", func(c *Client) error { _, err := c.On("web-1").AddNodeFile(ctx, "/srv/app.tar"); return err },
			"POST", "/v1/files", "on=web-1", `{"path":"/srv/app.tar"}`},
		{"begin upload", func(c *Client) error { _, err := c.BeginUpload(ctx, "app.tar", 42); return err },
			"POST", "/v1/uploads", "", `{"name":"app.tar","size":42}`},
		{"upload status", func(c *Client) error { _, err := c.UploadStatus(ctx, "u1"); return err },
			"GET", "/v1/uploads/u1", "", ""},
		{"write chunk", func(c *Client) error { _, err := c.WriteUpload(ctx, "u1", 8, []byte("raw")); return err },
			"PUT", "/v1/uploads/u1", "offset=8", "raw"},
		{"commit", func(c *Client) error { _, err := c.CommitUpload(ctx, "u1", sha); return err },
			"POST", "/v1/uploads/u1/commit", "", `{"sha256":"` + sha + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, seen := jobsServer(t, 200, map[string]any{}, nil)
			if err := tt.call(c); err != nil {
				t.Fatal(err)
			}
			got := (*seen)[0]
			if got.Method != tt.method || got.Path != tt.path || got.Query != tt.query || string(got.Body) != tt.body {
				t.Fatalf("sent %s %s?%s %s; want %s %s?%s %s", got.Method, got.Path, got.Query, got.Body, tt.method, tt.path, tt.query, tt.body)
			}
		})
	}
}
