package sshdtest

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestStartRunsRealSSHD logs in with a key, checks the host key the server
// offers is the one Start reported, and runs a command.
func TestStartRunsRealSSHD(t *testing.T) {
	priv, authorized := NewClientKey(t)
	srv := Start(t, Options{AuthorizedKey: authorized})

	signer, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey),
	}
	c, err := ssh.Dial("tcp", srv.Addr, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", srv.Addr, err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.CombinedOutput("echo hello")
	if err != nil {
		t.Fatalf("run: %v (%q)", err, out)
	}
	if !bytes.Equal(out, []byte("hello\n")) {
		t.Fatalf("output %q", out)
	}

	srv.Stop()
	srv.Stop() // idempotent
}
