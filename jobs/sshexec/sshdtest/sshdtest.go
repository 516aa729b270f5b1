// Package sshdtest starts a real OpenSSH server (Debian's openssh-server) for
// tests of agentless (SSH) execution. Each server gets its own temp dir, host
// key, authorized_keys file and config, listens on a free port unless told
// otherwise, and is stopped by t.Cleanup.
//
// Tests that call Start are skipped with a clear message when /usr/sbin/sshd
// is missing (the Makefile's deps target installs openssh-server). The server
// runs as the current user; CI runs as root, which sshd needs to switch users
// and to use /run/sshd as its privilege-separation directory.
package sshdtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHDPath is the OpenSSH server binary the helper runs. sshd insists on
// being started by absolute path because it re-executes itself.
const SSHDPath = "/usr/sbin/sshd"

// startTimeout bounds how long Start waits for sshd to accept connections.
const startTimeout = 15 * time.Second

// Options configure a test server. The zero value is a key-only server on a
// free 127.0.0.1 port that accepts no keys (set AuthorizedKey).
type Options struct {
	// ListenAddr is host:port to listen on. "" means 127.0.0.1:0; port 0
	// means a free port (outside a netns) or 22 (inside NetNS, where the
	// helper cannot probe for free ports).
	ListenAddr string
	// AuthorizedKey is one or more authorized_keys lines, e.g.
	// ssh.MarshalAuthorizedKey(signer.PublicKey()).
	AuthorizedKey []byte
	// NetNS, if set, runs sshd inside that network namespace via
	// `ip netns exec NAME`. ListenAddr must then be reachable from the
	// caller's namespace for Start to see the port come up.
	NetNS string
	// PasswordAuthentication turns on password logins (checked by sshd
	// against /etc/shadow, since UsePAM is off). Default off.
	PasswordAuthentication bool
	// HostKey is an optional PEM private host key ("OPENSSH PRIVATE KEY");
	// nil means a fresh ed25519 key. Reuse one to restart a server with the
	// same identity.
	HostKey []byte
}

// Server is a running sshd.
type Server struct {
	// Addr is the host:port sshd listens on.
	Addr string
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
	// HostKeyPEM is the private host key, for restarting with the same key.
	HostKeyPEM []byte
	// Dir is the server's temp dir (config, keys, pid file).
	Dir string

	cmd      *exec.Cmd
	log      *syncBuffer
	exited   chan struct{}
	stopOnce sync.Once
}

// Start runs sshd with opts and waits (bounded) until it accepts TCP
// connections. It fails t on any setup error and skips t when sshd is not
// installed. The server is stopped automatically by t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Skipf("sshdtest: %s not found (install Debian's openssh-server, e.g. `make deps`): %v", SSHDPath, err)
	}
	// sshd refuses to start without its privilege-separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshdtest: create /run/sshd: %v", err)
	}

	dir := t.TempDir()
	hostPEM := opts.HostKey
	if hostPEM == nil {
		var err error
		if hostPEM, err = newHostKeyPEM(); err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
	}
	signer, err := ssh.ParsePrivateKey(hostPEM)
	if err != nil {
		t.Fatalf("sshdtest: parse host key: %v", err)
	}
	hostKeyPath := filepath.Join(dir, "ssh_host_key")
	authPath := filepath.Join(dir, "authorized_keys")
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(hostKeyPath, hostPEM, 0o600); err != nil {
		t.Fatalf("sshdtest: write host key: %v", err)
	}
	if err := os.WriteFile(authPath, opts.AuthorizedKey, 0o600); err != nil {
		t.Fatalf("sshdtest: write authorized_keys: %v", err)
	}

	addr, err := listenAddr(opts)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	cfg := config(addr, hostKeyPath, authPath, filepath.Join(dir, "sshd.pid"), opts.PasswordAuthentication)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatalf("sshdtest: write config: %v", err)
	}

	argv := []string{SSHDPath, "-D", "-e", "-f", cfgPath}
	if opts.NetNS != "" {
		argv = append([]string{"ip", "netns", "exec", opts.NetNS}, argv...)
	}
	s := &Server{
		Addr:       addr,
		HostKey:    signer.PublicKey(),
		HostKeyPEM: hostPEM,
		Dir:        dir,
		log:        &syncBuffer{},
		exited:     make(chan struct{}),
	}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	// Do not let a straggler holding the log pipe block Wait forever.
	s.cmd.WaitDelay = 2 * time.Second
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("sshdtest: start %v: %v", argv, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sshdtest: sshd log for %s:\n%s", s.Addr, s.log.String())
		}
	})

	if err := s.waitListening(startTimeout); err != nil {
		s.Stop()
		t.Fatalf("sshdtest: %v\nsshd log:\n%s", err, s.log.String())
	}
	return s
}

// Stop kills sshd and every process it started (per-connection sshd
// children, which put themselves in sessions of their own, and the sessions'
// shells and scripts) and waits for sshd to exit: to a client it looks like
// the host died. Safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		killTree(s.cmd.Process.Pid)
		<-s.exited
	})
}

// Log returns what sshd has logged so far (it runs with -e).
func (s *Server) Log() string { return s.log.String() }

// waitListening polls the port until it accepts a connection, sshd exits, or
// the deadline passes.
func (s *Server) waitListening(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd not listening on %s after %v: %v", s.Addr, timeout, err)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("sshd exited before listening on %s: %v", s.Addr, s.cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// listenAddr resolves opts.ListenAddr, picking a free port when needed.
func listenAddr(opts Options) (string, error) {
	addr := opts.ListenAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	if opts.NetNS != "" {
		return net.JoinHostPort(host, "22"), nil
	}
	// Probe for a free port. sshd binds it a moment later; a collision in
	// between makes Start fail loudly rather than flake silently.
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("find a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// config renders sshd_config for a throwaway, root-login test server.
func config(addr, hostKey, authKeys, pidFile string, password bool) string {
	yesno := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	lines := []string{
		"ListenAddress " + addr,
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + authKeys,
		"PidFile " + pidFile,
		"PermitRootLogin yes",
		"PubkeyAuthentication yes",
		"PasswordAuthentication " + yesno(password),
		"KbdInteractiveAuthentication no",
		"PermitEmptyPasswords no",
		"UsePAM no",
		"StrictModes no",
		"PrintMotd no",
		"PrintLastLog no",
		"UseDNS no",
		// Fan-out tests open many connections at once; the default
		// (10:30:100) would randomly drop unauthenticated ones.
		"MaxStartups 500",
		"MaxSessions 100",
		"LogLevel VERBOSE",
	}
	return strings.Join(lines, "\n") + "\n"
}

// newHostKeyPEM returns a fresh ed25519 private key in OpenSSH PEM format.
func newHostKeyPEM() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, fmt.Errorf("marshal host key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// NewClientKey returns a fresh ed25519 client key: the PEM private key (for
// a Target) and its authorized_keys line (for Options.AuthorizedKey).
func NewClientKey(t testing.TB) (privPEM, authorizedKey []byte) {
	t.Helper()
	privPEM, err := newHostKeyPEM()
	if err != nil {
		t.Fatalf("sshdtest: client key: %v", err)
	}
	signer, err := ssh.ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatalf("sshdtest: parse client key: %v", err)
	}
	return privPEM, ssh.MarshalAuthorizedKey(signer.PublicKey())
}

// syncBuffer is a bytes.Buffer safe for sshd's concurrent stdout/stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
