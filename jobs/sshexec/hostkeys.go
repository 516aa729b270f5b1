package sshexec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"sync"

	"golang.org/x/crypto/ssh"
)

// HostKeys records trust-on-first-use host keys. The caller backs it with the control group.
type HostKeys interface {
	// Lookup returns the recorded key (ssh wire format, ssh.PublicKey.Marshal()) for addr; found=false if none.
	Lookup(ctx context.Context, addr string) (key []byte, found bool, err error)
	// Record stores key for addr if none is stored yet (create-only); it returns the key that is
	// stored after the call (the caller's on success, a concurrent winner's otherwise).
	Record(ctx context.Context, addr string, key []byte) (stored []byte, err error)
}

// MemoryHostKeys is an in-memory HostKeys (tests, and a fallback). The zero
// value is not usable; call NewMemoryHostKeys.
type MemoryHostKeys struct {
	mu   sync.Mutex
	keys map[string][]byte
}

var _ HostKeys = (*MemoryHostKeys)(nil)

// NewMemoryHostKeys returns an empty MemoryHostKeys.
func NewMemoryHostKeys() *MemoryHostKeys {
	return &MemoryHostKeys{keys: make(map[string][]byte)}
}

// Lookup implements HostKeys.
func (m *MemoryHostKeys) Lookup(_ context.Context, addr string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[addr]
	return bytes.Clone(k), ok, nil
}

// Record implements HostKeys: the first key recorded for addr wins.
func (m *MemoryHostKeys) Record(_ context.Context, addr string, key []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := m.keys[addr]; ok {
		return bytes.Clone(k), nil
	}
	m.keys[addr] = bytes.Clone(key)
	return bytes.Clone(key), nil
}

// hostKeyMismatchError is returned by the host key callback when the server
// offers a key other than the recorded one.
type hostKeyMismatchError struct {
	addr              string
	recorded, offered []byte
}

func (e *hostKeyMismatchError) Error() string {
	return fmt.Sprintf("host key mismatch for %s: recorded %s, offered %s", e.addr, fingerprint(e.recorded), fingerprint(e.offered))
}

// hostKeyStoreError marks a failure of the HostKeys backend, so it is not
// mistaken for a problem with the host.
type hostKeyStoreError struct{ err error }

func (e *hostKeyStoreError) Error() string { return "host key store: " + e.err.Error() }
func (e *hostKeyStoreError) Unwrap() error { return e.err }

// fingerprint is OpenSSH's SHA256 fingerprint of a wire-format key, the form
// `ssh-keygen -lf` prints.
func fingerprint(wire []byte) string {
	sum := sha256.Sum256(wire)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// tofu builds the host key checking for one connection to addr: the
// algorithms to offer and the callback. recorded is the key on record, if any.
func tofu(ctx context.Context, store HostKeys, addr string, recorded []byte, found bool) ([]string, ssh.HostKeyCallback) {
	var algos []string
	if found {
		// Ask for the recorded key's type only. Otherwise a server with
		// several host keys (rsa, ecdsa, ed25519) could present a different
		// one after a client or server algorithm preference change, and TOFU
		// would call that a mismatch.
		if pk, err := ssh.ParsePublicKey(recorded); err == nil {
			algos = hostKeyAlgorithms(pk.Type())
		}
	}
	cb := func(_ string, _ net.Addr, key ssh.PublicKey) error {
		offered := key.Marshal()
		if found {
			if !bytes.Equal(recorded, offered) {
				return &hostKeyMismatchError{addr: addr, recorded: recorded, offered: offered}
			}
			return nil
		}
		stored, err := store.Record(ctx, addr, offered)
		if err != nil {
			return &hostKeyStoreError{fmt.Errorf("record key for %s: %w", addr, err)}
		}
		if !bytes.Equal(stored, offered) { // lost a race to a different key
			return &hostKeyMismatchError{addr: addr, recorded: stored, offered: offered}
		}
		return nil
	}
	return algos, cb
}

// hostKeyAlgorithms lists the host key signature algorithms that can prove
// possession of a key of type keyType.
func hostKeyAlgorithms(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	default:
		return []string{keyType}
	}
}
