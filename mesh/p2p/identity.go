package p2p

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// KeyFile is the name of the identity file inside the data dir.
const KeyFile = "node.key"

// pemType is the block type of a PKCS #8 private key, the format openssl and
// Go's x509 package read, so an operator can inspect the key with
// `openssl pkey -in node.key -noout -text`.
const pemType = "PRIVATE KEY"

// LoadOrCreateIdentity returns the node's ed25519 identity from
// dataDir/node.key, creating the key (and dataDir, mode 0700) on first use.
//
// The file is PEM-encoded PKCS #8, mode 0600, written atomically (temp file
// in the same directory, fsync, rename, fsync of the directory) so a crash
// never leaves a half-written key behind.
//
// An existing file is never replaced: the peer ID is the node's name in the
// mesh, and silently minting a new one would orphan it. So a file that is not
// a PEM PKCS #8 ed25519 key is an error that says how to recover. A file that
// group or others can access is refused too, like ssh does with private
// keys: the key may have leaked, and an operator should decide (chmod 600 if
// it is safe, or delete the file to get a new identity).
func LoadOrCreateIdentity(dataDir string) (crypto.PrivKey, error) {
	if dataDir == "" {
		return nil, errors.New("p2p: identity: empty data dir")
	}
	path := filepath.Join(dataDir, KeyFile)
	key, err := loadIdentity(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("p2p: identity: create data dir: %w", err)
	}
	return createIdentity(path)
}

// loadIdentity reads and validates an existing key file. It returns an error
// wrapping fs.ErrNotExist when there is no file.
func loadIdentity(path string) (crypto.PrivKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("p2p: identity: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("p2p: identity: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("p2p: identity: %s has mode %04o, readable beyond its owner; "+
			"if the key has not leaked run `chmod 600 %s`, otherwise delete it to get a new peer ID",
			path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("p2p: identity: %w", err)
	}
	key, err := decodeIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("p2p: identity: %s: %w (delete the file to create a new identity; the peer ID will change)", path, err)
	}
	return key, nil
}

// decodeIdentity parses a PEM PKCS #8 ed25519 private key.
func decodeIdentity(data []byte) (crypto.PrivKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM-encoded key")
	}
	if block.Type != pemType {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, pemType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the PEM block")
	}
	raw, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("bad PKCS #8 key: %w", err)
	}
	std, ok := raw.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key type is %T, want ed25519", raw)
	}
	key, _, err := crypto.KeyPairFromStdKey(&std)
	if err != nil {
		return nil, fmt.Errorf("convert key: %w", err)
	}
	return key, nil
}

// encodeIdentity is the inverse of decodeIdentity.
func encodeIdentity(key crypto.PrivKey) ([]byte, error) {
	std, err := crypto.PrivKeyToStdKey(key)
	if err != nil {
		return nil, err
	}
	edp, ok := std.(*ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key type is %T, want ed25519", std)
	}
	der, err := x509.MarshalPKCS8PrivateKey(*edp)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// createIdentity generates a key and installs it at path atomically.
func createIdentity(path string) (crypto.PrivKey, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("p2p: identity: generate: %w", err)
	}
	data, err := encodeIdentity(key)
	if err != nil {
		return nil, fmt.Errorf("p2p: identity: encode: %w", err)
	}
	if err := writeFileAtomic(path, data, 0o600); err != nil {
		return nil, fmt.Errorf("p2p: identity: %w", err)
	}
	return key, nil
}

// writeFileAtomic writes data to a temp file beside path and renames it into
// place, syncing the file and then the directory so that after a crash path
// holds either nothing or all of data.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	// CreateTemp already uses 0600; Chmod states the mode we rely on rather
	// than trusting that detail (and ignores the umask either way).
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ParsePeerID parses the base58 (or CIDv1) text form of a peer ID, as found
// in mesh metadata, and checks that it is well formed.
func ParsePeerID(s string) (peer.ID, error) {
	if s == "" {
		return "", errors.New("p2p: empty peer ID")
	}
	id, err := peer.Decode(s)
	if err != nil {
		return "", fmt.Errorf("p2p: peer ID %q: %w", s, err)
	}
	if err := id.Validate(); err != nil {
		return "", fmt.Errorf("p2p: peer ID %q: %w", s, err)
	}
	return id, nil
}
