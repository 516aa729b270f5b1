package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/herd-io/herd/jobs/model"
)

// recorded is one request the fake server saw.
type recorded struct {
	Method, Path, Query, Auth string
	Body                      []byte
}

// jobsServer answers every request with answer (status, JSON body,
// headers) and records what it received.
func jobsServer(t *testing.T, status int, answer any, header map[string]string) (*Client, *[]recorded) {
	t.Helper()
	var seen []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen = append(seen, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), body})
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, "tok")
	if err != nil {
		t.Fatal(err)
	}
	return c, &seen
}

func TestJobsClientRequests(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		call       func(c *Client) error
		method     string
		path       string
		query      string
		body       string // JSON; "" = no body
		answerJSON any
	}{
		{"create run", func(c *Client) error {
			_, err := c.CreateRun(ctx, model.RunRequest{Targets: model.Targets{All: true}, Script: model.ScriptSpec{Lang: "sh", Body: []byte("id\n")}})
			return err
		}, "POST", "/v1/runs", "", `{"targets":{"all":true},"script":{"lang":"sh","body":"aWQK","timeout":"0s"}}`, model.Run{ID: "r1"}},
		{"dry run", func(c *Client) error {
			_, err := c.DryRun(ctx, model.RunRequest{Targets: model.Targets{Hosts: []string{"a"}}})
			return err
		}, "POST", "/v1/runs", "", `{"targets":{"hosts":["a"]},"script":{"lang":"","body":null,"timeout":"0s"},"dry_run":true}`, model.DryRun{}},
		{"list runs", func(c *Client) error {
			_, err := c.Runs(ctx, RunsQuery{IDC: "dc1", Status: "failed", Limit: 5})
			return err
		}, "GET", "/v1/runs", "idc=dc1&limit=5&status=failed", "", model.RunList{}},
		{"watch run", func(c *Client) error {
			_, _, err := c.Run(ctx, "r1", RunQuery{IDC: "dc1", Index: 7, Wait: 30 * time.Second, NoHosts: true})
			return err
		}, "GET", "/v1/runs/r1", "hosts=0&idc=dc1&index=7&wait=30s", "", model.RunView{}},
		{"cancel", func(c *Client) error { _, err := c.CancelRun(ctx, "r1", "dc1"); return err },
			"POST", "/v1/runs/r1/cancel", "idc=dc1", "", model.Run{}},
		{"rerun failed", func(c *Client) error { _, err := c.Rerun(ctx, "r1", "", true); return err },
			"POST", "/v1/runs/r1/rerun", "", `{"failed":true}`, model.Run{}},
		{"logs", func(c *Client) error {
			_, err := c.RunLogs(ctx, "r1", LogsQuery{Host: "web-1", Offset: 10, Max: 100})
			return err
		}, "GET", "/v1/runs/r1/logs", "host=web-1&max=100&offset=10", "", model.LogChunk{}},
		{"add script", func(c *Client) error {
			_, err := c.AddScript(ctx, "backup", ScriptAdd{Lang: "sh", Body: []byte("x"), Online: true})
			return err
		}, "POST", "/v1/scripts/backup", "", `{"lang":"sh","body":"eA==","online":true}`, model.Script{}},
		{"script version", func(c *Client) error { _, err := c.ScriptVersion(ctx, "backup", "abcdefabcdef"); return err },
			"GET", "/v1/scripts/backup/versions/abcdefabcdef", "", "", ScriptBody{}},
		{"script online", func(c *Client) error { _, err := c.SetScriptOnline(ctx, "backup", "abcdefabcdef"); return err },
			"POST", "/v1/scripts/backup/online", "", `{"version":"abcdefabcdef"}`, model.Script{}},
		{"script rm version", func(c *Client) error { return c.DeleteScript(ctx, "backup", "abcdefabcdef") },
			"DELETE", "/v1/scripts/backup", "version=abcdefabcdef", "", struct{}{}},
		{"put account", func(c *Client) error {
			_, err := c.PutAccount(ctx, model.Account{Name: "deploy", OSUser: "app", Groups: []string{"web"}})
			return err
		}, "PUT", "/v1/accounts/deploy", "", `{"name":"deploy","os_user":"app","groups":["web"],"modify_index":0}`, model.Account{}},
		{"default account", func(c *Client) error { _, err := c.SetDefaultAccount(ctx, ""); return err },
			"PUT", "/v1/accounts-default", "", `{"name":""}`, model.AccountList{}},
		{"group hosts", func(c *Client) error { _, err := c.UpdateGroupHosts(ctx, "db", []string{"a"}, nil); return err },
			"POST", "/v1/groups/db/hosts", "", `{"add":["a"]}`, model.Group{}},
		{"create group", func(c *Client) error {
			_, err := c.CreateGroup(ctx, model.Group{Name: "db", Hosts: []string{}})
			return err
		},
			"POST", "/v1/groups/db", "", `{"name":"db","hosts":[],"modify_index":0}`, model.Group{}},
		{"ssh host", func(c *Client) error {
			_, err := c.PutSSHHost(ctx, model.SSHHost{Name: "h", Addr: "10.0.0.1:22", IDC: "dc1", User: "root", Password: "pw"})
			return err
		}, "PUT", "/v1/ssh-hosts/h", "", `{"name":"h","addr":"10.0.0.1:22","idc":"dc1","user":"root","password":"pw","has_key":false,"has_password":false,"modify_index":0}`, model.SSHHost{}},
		{"delete ssh host", func(c *Client) error { return c.DeleteSSHHost(ctx, "h") },
			"DELETE", "/v1/ssh-hosts/h", "", "", struct{}{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, seen := jobsServer(t, http.StatusOK, tt.answerJSON, nil)
			if err := tt.call(c); err != nil {
				t.Fatal(err)
			}
			if len(*seen) != 1 {
				t.Fatalf("%d requests, want 1", len(*seen))
			}
			r := (*seen)[0]
			if r.Method != tt.method || r.Path != tt.path || r.Query != tt.query {
				t.Errorf("request %s %s?%s, want %s %s?%s", r.Method, r.Path, r.Query, tt.method, tt.path, tt.query)
			}
			if r.Auth != "Bearer tok" {
				t.Errorf("Authorization %q", r.Auth)
			}
			if tt.body == "" {
				if len(r.Body) != 0 {
					t.Errorf("unexpected body %s", r.Body)
				}
				return
			}
			var got, want any
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatalf("body %q: %v", r.Body, err)
			}
			if err := json.Unmarshal([]byte(tt.body), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("body %s\nwant %s", r.Body, tt.body)
			}
		})
	}
}

func TestRunIndexFromHeader(t *testing.T) {
	view := model.RunView{Run: model.Run{ID: "r1", ModifyIndex: 5, Status: model.RunRunning}}
	c, _ := jobsServer(t, http.StatusOK, view, map[string]string{"X-Herd-Index": "42"})
	v, idx, err := c.Run(context.Background(), "r1", RunQuery{})
	if err != nil || idx != 42 || v.Run.ID != "r1" {
		t.Fatalf("Run = %+v, %d, %v; want index 42 from the header", v, idx, err)
	}
	// Without the header the run's own index stands in.
	c, _ = jobsServer(t, http.StatusOK, view, nil)
	if _, idx, _ := c.Run(context.Background(), "r1", RunQuery{}); idx != 5 {
		t.Fatalf("index %d, want the run's ModifyIndex 5", idx)
	}
}

func TestJobsClientErrors(t *testing.T) {
	c, _ := jobsServer(t, http.StatusConflict, ErrorBody{Error: Error{Code: "conflict", Message: "group db exists"}}, nil)
	_, err := c.CreateGroup(context.Background(), model.Group{Name: "db"})
	var re *RequestError
	if !errors.As(err, &re) || re.Status != http.StatusConflict || re.Err.Message != "group db exists" {
		t.Fatalf("err = %v, want the API error", err)
	}
	if _, err := c.CreateRun(context.Background(), model.RunRequest{DryRun: true}); err == nil {
		t.Fatal("CreateRun with DryRun set must refuse")
	}
}

func TestLogChunkBytesSurvive(t *testing.T) {
	data := []byte{0xff, 0xfe, 'a', 0x00, 0xc3, 0x28, '\n'}
	c, _ := jobsServer(t, http.StatusOK, model.LogChunk{Host: "h", Data: data, Size: 7, Done: true}, nil)
	ch, err := c.RunLogs(context.Background(), "r1", LogsQuery{Host: "h"})
	if err != nil || !reflect.DeepEqual(ch.Data, data) || !ch.Done {
		t.Fatalf("chunk %+v, %v", ch, err)
	}
}
