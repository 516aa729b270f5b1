package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// Defaults used by DefaultConfig and for zero fields.
const (
	DefaultClusterName      = "herd"
	DefaultBindAddr         = "0.0.0.0"
	DefaultPort             = 7946
	DefaultHealthInterval   = 5 * time.Second
	DefaultTombstoneTimeout = 24 * time.Hour
)

// Config configures a Mesh. Start from DefaultConfig and override fields;
// New validates it and never modifies it.
type Config struct {
	// Name is the node's name, unique within its IDC. Default: the host
	// name. Required; letters, digits and . _ : / @ + - (it is the "name"
	// attribute selectors match), at most 128 bytes.
	Name string

	// IDC is the data centre the node belongs to; each IDC is a separate
	// gossip pool. Required; letters, digits and . _ -, at most 64 bytes.
	IDC string

	// Zone is the failure domain inside the IDC (rack, room). Optional;
	// the same characters as a label value.
	Zone string

	// Labels are the node's initial labels (see ParseLabels for the
	// grammar). Nil or empty means none.
	Labels map[string]string

	// Meta is the node's metadata. The caller fills ID, API, P2P, Roles and
	// Version; New overwrites IDC and Zone from the fields above. The
	// encoding must fit in 512 bytes.
	Meta Meta

	// BindAddr and BindPort are where gossip listens, UDP and TCP on the
	// same port. Default 0.0.0.0:7946; "" means 0.0.0.0, and port 0 picks
	// an ephemeral port (tests; see Mesh.LocalAddr).
	BindAddr string
	BindPort int

	// AdvertiseAddr and AdvertisePort are what other nodes are told to
	// reach this node at (NAT). Default "" and 0: memberlist derives the
	// address from the bind address (a private IP when bound to 0.0.0.0),
	// and port 0 means the bound port.
	AdvertiseAddr string
	AdvertisePort int

	// Pool names the gossip pool in the label when it is not the IDC's own
	// LAN pool: the control members of every IDC share the pool "wan".
	// Default "", meaning the IDC. Same characters as IDC.
	Pool string

	// ClusterName separates herd clusters sharing a network. Default
	// "herd"; letters, digits and . _ -, at most 64 bytes. Every packet and
	// stream is labelled ClusterName+"/"+IDC, so pools never mix.
	ClusterName string

	// SecretKey is the cluster's AES key, 16, 24 or 32 bytes. Required
	// unless Dev is set. Gossip is encrypted and authenticated with it, and
	// unencrypted gossip is refused in both directions.
	SecretKey []byte

	// Dev allows running without SecretKey, with plaintext gossip. Default
	// false. With Dev and a key, gossip is still encrypted.
	Dev bool

	// HealthInterval is how often the node samples its health and gossips
	// its node state. Default 5s; zero means the default.
	HealthInterval time.Duration

	// TombstoneTimeout is how long failed and left members stay listed
	// before they are forgotten. Default 24h; zero means the default.
	TombstoneTimeout time.Duration

	// DataDir is the directory whose filesystem Health reports. Default
	// "", meaning "/".
	DataDir string

	// Logger receives the mesh's and memberlist's logs. Default nil,
	// meaning slog.Default().
	Logger *slog.Logger

	// Memberlist, if set, is called with the memberlist configuration just
	// before the memberlist is created, after New has filled it in
	// (memberlist.DefaultLANConfig plus name, addresses, label, keyring,
	// logger and our delegates, which New puts back if the hook replaces
	// them). Use it to tighten timings in tests, or to install an
	// in-process transport: c.Transport = network.NewTransport(name), after
	// which BindAddr and BindPort are ignored. memberlist.MockNetwork needs
	// care at scale: create every transport before starting any node, and
	// drain each node's inbox (mesh's bench_test.go shows how), or pools of
	// ~100 nodes deadlock on its unbuffered sends. Default nil.
	Memberlist func(*memberlist.Config)
}

// DefaultConfig returns a Config with every default filled in. IDC and, in
// production, SecretKey must still be set.
func DefaultConfig() *Config {
	host, _ := os.Hostname()
	return &Config{
		Name:             host,
		BindAddr:         DefaultBindAddr,
		BindPort:         DefaultPort,
		ClusterName:      DefaultClusterName,
		HealthInterval:   DefaultHealthInterval,
		TombstoneTimeout: DefaultTombstoneTimeout,
	}
}

// clone returns a deep copy with zero fields set to their defaults, so New
// neither modifies the caller's Config nor aliases its maps and slices.
func (c *Config) clone() *Config {
	out := *c
	out.Labels = maps.Clone(c.Labels)
	out.SecretKey = slices.Clone(c.SecretKey)
	out.Meta.Roles = slices.Clone(c.Meta.Roles)
	if out.BindAddr == "" {
		out.BindAddr = DefaultBindAddr
	}
	if out.ClusterName == "" {
		out.ClusterName = DefaultClusterName
	}
	if out.HealthInterval == 0 {
		out.HealthInterval = DefaultHealthInterval
	}
	if out.TombstoneTimeout == 0 {
		out.TombstoneTimeout = DefaultTombstoneTimeout
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return &out
}

// validate reports the first problem with c, phrased for an operator.
func (c *Config) validate() error {
	if c.Name == "" {
		return errors.New("mesh: node name is required")
	}
	if len(c.Name) > maxValueLen {
		return fmt.Errorf("mesh: node name %q is longer than %d bytes", c.Name, maxValueLen)
	}
	if _, err := checkValue(c.Name); err != nil {
		return fmt.Errorf("mesh: node name: %w", err)
	}
	if err := checkPoolName("IDC", c.IDC); err != nil {
		return err
	}
	if c.Pool != "" {
		if err := checkPoolName("pool", c.Pool); err != nil {
			return err
		}
	}
	if err := checkPoolName("cluster name", c.ClusterName); err != nil {
		return err
	}
	if _, err := checkValue(c.Zone); err != nil {
		return fmt.Errorf("mesh: zone: %w", err)
	}
	if err := ValidateLabels(c.Labels); err != nil {
		return err
	}
	switch len(c.SecretKey) {
	case 0:
		if !c.Dev {
			return errors.New("mesh: an encryption key is required (16, 24 or 32 bytes, see --encrypt) unless running in dev mode")
		}
	case 16, 24, 32:
	default:
		return fmt.Errorf("mesh: encryption key is %d bytes; it must be 16, 24 or 32 (AES-128/192/256)", len(c.SecretKey))
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return fmt.Errorf("mesh: bind port %d out of range", c.BindPort)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return fmt.Errorf("mesh: advertise port %d out of range", c.AdvertisePort)
	}
	if c.HealthInterval < 0 {
		return fmt.Errorf("mesh: health interval %s is negative", c.HealthInterval)
	}
	if c.TombstoneTimeout < 0 {
		return fmt.Errorf("mesh: tombstone timeout %s is negative", c.TombstoneTimeout)
	}
	return nil
}

// checkPoolName validates a part of the memberlist label. "/" is excluded
// so that ClusterName+"/"+IDC is unambiguous.
func checkPoolName(what, s string) error {
	if s == "" {
		return fmt.Errorf("mesh: %s is required", what)
	}
	if len(s) > 64 {
		return fmt.Errorf("mesh: %s %q is longer than 64 bytes", what, s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("mesh: %s %q: invalid character %q (allowed: letters, digits, '.', '_', '-')", what, s, c)
		}
	}
	return nil
}

// poolLabel is the memberlist label of the node's gossip pool.
func (c *Config) poolLabel() string {
	if c.Pool != "" {
		return c.ClusterName + "/" + c.Pool
	}
	return c.ClusterName + "/" + c.IDC
}
