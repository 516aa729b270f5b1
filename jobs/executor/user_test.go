package executor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strings"
	"testing"
	"time"
)

// throwawayUser creates an OS account (with a home and one supplementary
// group) for the test and removes both afterwards. It skips unless the test
// runs as root with useradd available, as in CI.
func throwawayUser(t *testing.T) (u *user.User, suppGid string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create an account")
	}
	for _, tool := range []string{"useradd", "userdel", "groupadd", "groupdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not available", tool)
		}
	}
	suffix := time.Now().UnixNano() % 1_000_000_000
	name, group := fmt.Sprintf("herdu%d", suffix), fmt.Sprintf("herdg%d", suffix)
	if out, err := exec.Command("groupadd", group).CombinedOutput(); err != nil {
		t.Fatalf("groupadd: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", "-G", group, name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "-r", name).CombinedOutput(); err != nil {
			t.Logf("userdel: %v: %s", err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	return u, g.Gid
}

// A script run as another account really runs as that uid, with its groups
// (and none of root's), its environment, its home as workdir, and a script
// file it owns and nobody else can read.
func TestRunAsUser(t *testing.T) {
	u, suppGid := throwawayUser(t)
	e := newTestExecutor(t, nil)
	script := `id -u; id -g; id -G; echo "$HOME $USER $LOGNAME $SHELL"; pwd
f=$(readlink /proc/$$/fd/3); stat -c '%a %u' "$f" "$(dirname "$f")"
touch "$HOME/made-by-script" && stat -c '%u' "$HOME/made-by-script"`
	res, out := runScript(t, context.Background(), e, Spec{Script: []byte(script), User: u.Username})
	if res.Status != StatusSuccess {
		t.Fatalf("result %+v output %q", res, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 8 {
		t.Fatalf("output %q", out)
	}
	if lines[0] != u.Uid || lines[1] != u.Gid {
		t.Errorf("uid/gid = %s/%s, want %s/%s", lines[0], lines[1], u.Uid, u.Gid)
	}
	groups := strings.Fields(lines[2])
	if !slices.Contains(groups, suppGid) || slices.Contains(groups, "0") {
		t.Errorf("groups = %v, want to include %s and not root's 0", groups, suppGid)
	}
	if want := fmt.Sprintf("%s %s %s /bin/bash", u.HomeDir, u.Username, u.Username); lines[3] != want {
		t.Errorf("env = %q, want %q", lines[3], want)
	}
	if lines[4] != u.HomeDir {
		t.Errorf("workdir = %q, want home %q", lines[4], u.HomeDir)
	}
	if lines[5] != "500 "+u.Uid || lines[6] != "700 "+u.Uid {
		t.Errorf("script file/dir = %q, %q; want 500 and 700 owned by %s", lines[5], lines[6], u.Uid)
	}
	if lines[7] != u.Uid {
		t.Errorf("file made by script owned by %s, want %s", lines[7], u.Uid)
	}
	if left, _ := os.ReadDir(e.cfg.WorkRoot); len(left) != 0 {
		t.Errorf("run directories left behind: %v", left)
	}
}

// Naming the agent's own account needs no privilege: no setuid happens.
func TestRunAsSelfByName(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Skip("current user has no passwd entry")
	}
	e := newTestExecutor(t, nil)
	res, out := runScript(t, context.Background(), e, Spec{Script: []byte("id -u"), User: me.Username})
	if res.Status != StatusSuccess || string(out) != me.Uid+"\n" {
		t.Errorf("result %+v output %q", res, out)
	}
}
