package sshexec

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Target is a registered SSH host.
type Target struct {
	Name     string // herd's name for the host (results are keyed by it)
	Addr     string // host:port (port default 22 when missing)
	User     string // remote login user
	Key      []byte // PEM private key (optional)
	Password string // optional; at least one of Key/Password
}

// Validate reports every problem with t: missing name, address or user, an
// unparsable address, no credentials, or a key that cannot be used.
func (t Target) Validate() error {
	var errs []error
	if strings.TrimSpace(t.Name) == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if _, err := t.hostPort(); err != nil {
		errs = append(errs, err)
	}
	if t.User == "" {
		errs = append(errs, errors.New("login user is empty"))
	}
	if len(t.Key) == 0 && t.Password == "" {
		errs = append(errs, errors.New("neither a private key nor a password is set"))
	}
	if len(t.Key) > 0 {
		if _, err := parseKey(t.Key); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid ssh target %q: %w", t.Name, errors.Join(errs...))
}

// hostPort returns t.Addr as host:port, adding port 22 when it is missing.
// It is also the key under which host keys are recorded.
func (t Target) hostPort() (string, error) {
	a := strings.TrimSpace(t.Addr)
	if a == "" {
		return "", errors.New("address is empty")
	}
	if host, port, err := net.SplitHostPort(a); err == nil {
		n, perr := strconv.Atoi(port)
		if host == "" || perr != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("address %q: want host:port with a port in 1-65535", t.Addr)
		}
		return net.JoinHostPort(host, port), nil
	}
	// No port: a hostname, an IPv4 address, or an IPv6 literal, possibly
	// in brackets.
	host := strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	if host == "" || strings.ContainsAny(host, "[] /") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
		return "", fmt.Errorf("address %q is not host[:port]", t.Addr)
	}
	return net.JoinHostPort(host, "22"), nil
}

// parseKey parses a PEM private key, explaining the one case operators hit
// most: a passphrase-protected key.
func parseKey(pemBytes []byte) (ssh.Signer, error) {
	s, err := ssh.ParsePrivateKey(pemBytes)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, errors.New("private key is passphrase-protected; herd needs an unencrypted key")
	}
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return s, nil
}

// authMethods returns the client auth methods for t: the key first, then the
// password, offered both as "password" and as keyboard-interactive (what
// sshd offers when PAM handles passwords).
func (t Target) authMethods() ([]ssh.AuthMethod, error) {
	var methods []ssh.AuthMethod
	if len(t.Key) > 0 {
		s, err := parseKey(t.Key)
		if err != nil {
			return nil, err
		}
		methods = append(methods, ssh.PublicKeys(s))
	}
	if pw := t.Password; pw != "" {
		methods = append(methods,
			ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, echos []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range questions {
					if !echos[i] { // a hidden prompt is the password prompt
						answers[i] = pw
					}
				}
				return answers, nil
			}))
	}
	return methods, nil
}
