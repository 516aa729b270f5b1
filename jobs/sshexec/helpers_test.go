package sshexec

import (
	"net"
	"os/exec"
	"testing"

	"golang.org/x/crypto/ssh"
)

// authorizedLine returns the authorized_keys line for a PEM private key.
func authorizedLine(t *testing.T, priv []byte) []byte {
	t.Helper()
	s, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.MarshalAuthorizedKey(s.PublicKey())
}

// freeClosedPort returns a 127.0.0.1 address nothing listens on.
func freeClosedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// execQuiet runs a command, ignoring its output.
func execQuiet(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}
