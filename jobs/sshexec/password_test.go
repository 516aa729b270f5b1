package sshexec

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/herd-io/herd/jobs/executor"
	"github.com/herd-io/herd/jobs/sshexec/sshdtest"
)

// TestPasswordAuth logs in with a password as a throwaway non-root user
// (sshd checks /etc/shadow: UsePAM is off), and checks the script runs as
// that user; a wrong password is unreachable with an auth error.
func TestPasswordAuth(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a user")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd not installed")
	}
	user := "herdsshpw" + marker()[:6]
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", user).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", "-r", "-f", user).Run() })
	const pw = "s3cret pass'word"
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(user + ":" + pw + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v: %s", err, out)
	}

	srv := sshdtest.Start(t, sshdtest.Options{PasswordAuthentication: true})
	r, err := New(Config{HostKeys: NewMemoryHostKeys()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tg := Target{Name: "pw", Addr: srv.Addr, User: user, Password: pw}
	res := r.Run(context.Background(), tg, executor.Spec{Script: []byte("id -un")}, dir+"/ok.out")
	if res.Status != executor.StatusSuccess || string(res.Output.Head) != user+"\n" {
		t.Fatalf("%+v (output %q)", res, res.Output.Head)
	}

	tg.Password = "wrong"
	res = r.Run(context.Background(), tg, executor.Spec{Script: []byte("true")}, dir+"/bad.out")
	if res.Status != StatusUnreachable || !strings.HasPrefix(res.Error, "ssh auth failed for "+user+"@"+srv.Addr) {
		t.Fatalf("%+v", res)
	}
}
