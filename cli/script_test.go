package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-io/herd/jobs/model"
)

// TestNounsSendWhatTheyAreTold covers script, account, group and host:
// flags may follow the positional arguments, and each verb sends the
// documented request.
func TestNounsSendWhatTheyAreTold(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "backup.sh")
	writeFile(t, script, "#!/bin/bash\necho dump\n")
	key := filepath.Join(dir, "id")
	writeFile(t, key, "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n")
	t.Setenv("HERD_TEST_PW", "s3cret")

	tests := []struct {
		args []string
		key  string // "METHOD PATH" whose body is checked
		body string // JSON the body must equal ("" = no check)
		out  string // stdout must contain
	}{
		{[]string{"script", "add", "backup", "--file", script, "--online", "--note", "first"},
			"POST /v1/scripts/backup", `{"lang":"bash","body":"IyEvYmluL2Jhc2gKZWNobyBkdW1wCg==","note":"first","online":true}`, "version " + scriptVersion([]byte("#!/bin/bash\necho dump\n"))},
		{[]string{"script", "online", "backup", "0123456789ab"}, "POST /v1/scripts/backup/online", `{"version":"0123456789ab"}`, ""},
		{[]string{"script", "rm", "backup", "--version", "0123456789ab"}, "DELETE /v1/scripts/backup", "", "removed script backup version 0123456789ab"},
		{[]string{"account", "add", "deploy", "--os-user", "app", "--groups", "web,db"}, "PUT /v1/accounts/deploy",
			`{"name":"deploy","os_user":"app","groups":["web","db"],"modify_index":0}`, ""},
		{[]string{"account", "default", "--clear"}, "PUT /v1/accounts-default", `{"name":""}`, "no default account"},
		{[]string{"group", "create", "db", "--hosts", "db-1,db-2", "--description", "primaries"}, "POST /v1/groups/db",
			`{"name":"db","description":"primaries","hosts":["db-1","db-2"],"modify_index":0}`, ""},
		{[]string{"group", "remove", "db", "db-1"}, "POST /v1/groups/db/hosts", `{"remove":["db-1"]}`, ""},
		{[]string{"host", "add-ssh", "old-nas", "10.0.3.9", "--idc", "dc1", "--user", "admin", "--password-env", "HERD_TEST_PW"},
			"PUT /v1/ssh-hosts/old-nas", `{"name":"old-nas","addr":"10.0.3.9:22","idc":"dc1","user":"admin","password":"s3cret","has_key":false,"has_password":false,"modify_index":0}`, ""},
		{[]string{"host", "add-ssh", "db", "[fd00::1]:2200", "--idc", "dc1", "--user", "root", "--key", key},
			"PUT /v1/ssh-hosts/db", "", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:2], " "), func(t *testing.T) {
			f := newFakeJobs()
			code, out, stderr := run(t, append(tt.args, f.start(t)...)...)
			if code != ExitOK {
				t.Fatalf("exit %d; stderr %s", code, stderr)
			}
			if !strings.Contains(out, tt.out) {
				t.Fatalf("stdout %q lacks %q", out, tt.out)
			}
			body, ok := f.bodies[tt.key]
			if !ok {
				t.Fatalf("no %s; calls %v", tt.key, f.calls)
			}
			if tt.body != "" && !jsonEqual(t, body, tt.body) {
				t.Fatalf("body %s\nwant %s", body, tt.body)
			}
		})
	}
}

func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("body %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestNounUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"script", "add", "backup"}, "needs --file"},
		{[]string{"script", "add", "bad name", "--file", "x"}, "script name"},
		{[]string{"script", "show", "backup", "--version", "v1"}, "12 hex digits"},
		{[]string{"script", "add", "backup", "--bogus"}, "flag provided but not defined"},
		{[]string{"account", "default", "a", "--clear"}, "not both"},
		{[]string{"group", "add", "db"}, "one or more HOSTs"},
		{[]string{"host", "add-ssh", "h", "10.0.0.1", "--user", "u", "--password-env", "X"}, "needs --idc"},
		{[]string{"host", "add-ssh", "h", "10.0.0.1", "--idc", "dc1", "--user", "u"}, "--key FILE or --password-env"},
		{[]string{"host", "add-ssh", "h", "10.0.0.1", "--idc", "dc1", "--user", "u", "--password-env", "HERD_SURELY_UNSET"}, "empty or unset"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := newFakeJobs()
			code, _, stderr := run(t, append(tt.args, f.start(t)...)...)
			if code != ExitUsage || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 mentioning %q", code, stderr, tt.want)
			}
			if len(f.calls) != 0 {
				t.Fatalf("sent %v", f.calls)
			}
		})
	}
}

func TestNounListsJSON(t *testing.T) {
	f := newFakeJobs()
	f.answers["GET /v1/scripts"] = map[string]any{"scripts": []model.Script{{Name: "backup", Lang: "sh", Online: "0123456789ab"}}}
	f.answers["GET /v1/ssh-hosts"] = map[string]any{"hosts": []model.SSHHost{{Name: "nas", Addr: "10.0.0.9:22", IDC: "dc1", User: "root", HasKey: true}}}
	flags := f.start(t)
	code, out, _ := run(t, append([]string{"script", "list", "--json"}, flags...)...)
	var scripts struct{ Scripts []model.Script }
	if code != 0 || json.Unmarshal([]byte(out), &scripts) != nil || scripts.Scripts[0].Name != "backup" {
		t.Fatalf("script list --json: %s", out)
	}
	code, out, _ = run(t, append([]string{"group", "list", "--json"}, flags...)...)
	if code != 0 || strings.TrimSpace(out) != "{\n  \"groups\": []\n}" {
		t.Fatalf("group list --json of none: %q", out)
	}
	code, out, _ = run(t, append([]string{"host", "list"}, flags...)...)
	if code != 0 || !strings.Contains(out, "nas") || !strings.Contains(out, "key") || !strings.Contains(out, "(not yet seen)") {
		t.Fatalf("host list: %s", out)
	}
}
