package node

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/jobs"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/transfer"
)

// Version is the herd version, stamped by the linker (-X) at build time.
var Version = "dev"

// Default ports. The gossip port matches Serf/Consul's LAN habit; the API
// and stream ports sit next to it so one firewall rule range covers herd.
const (
	DefaultGossipPort = 7946
	DefaultP2PPort    = 7947
	DefaultAPIPort    = 7600
	DefaultWANPort    = 7948
	DefaultSwarmPort  = 7949
	// SwarmOff as Config.Swarm (--swarm off) runs no file swarm.
	SwarmOff = "off"
)

// Config is everything `herd agent` needs. Flags, HERD_* environment
// variables and the optional config file all fill this one struct; see
// FileConfig for the file format.
type Config struct {
	// Name is the node's unique name in its IDC. Default: the hostname.
	Name string
	// IDC is the datacenter the node belongs to; nodes of one IDC form a
	// gossip pool. Default "dc1".
	IDC string
	// Zone is the failure domain inside the IDC (rack, room). Optional; the
	// control group spreads its voters across zones.
	Zone string
	// Labels are operator-chosen attributes used by selectors.
	Labels map[string]string
	// DataDir holds the node identity, API token and local stores.
	// Default /var/lib/herd.
	DataDir string
	// Bind is the gossip listen address. Default 0.0.0.0:7946.
	Bind string
	// Advertise is the gossip address other nodes use to reach this one.
	// Default: derived from Bind by memberlist.
	Advertise string
	// P2P is the listen address of the node-stream (libp2p) host. Default:
	// the Bind IP with port 7947.
	P2P string
	// API is the HTTP API listen address. Default 127.0.0.1:7600.
	API string
	// Join lists gossip addresses of existing nodes. They are retried with
	// jittered backoff until one answers (Consul's retry_join).
	Join []string
	// JoinTimeout gives up joining after this long and stops the agent with
	// an error. Zero keeps trying for as long as the agent runs.
	JoinTimeout time.Duration
	// EncryptKey is the cluster gossip key (16, 24 or 32 bytes, given in
	// base64). Required unless Dev.
	EncryptKey []byte
	// Dev allows plaintext gossip and enables dev-only settings (FSRoot).
	Dev bool
	// ClusterName separates meshes that share a network. Default "herd".
	ClusterName string
	// ControlSize is the target number of Raft voters in this IDC. Default 3.
	ControlSize int
	// PrimaryIDC owns global objects (scripts, templates, global config);
	// the other IDCs replicate them. Every node must agree. Default: this
	// node's IDC, which suits a single-IDC cluster.
	PrimaryIDC string
	// WANBind is where the WAN pool listens while this node is a voter.
	// Default: the Bind IP with port 7948.
	WANBind string
	// WANAdvertise is the WAN address other IDCs dial. Default: from WANBind.
	WANAdvertise string
	// WANJoin lists WAN addresses of nodes in any IDC; voters join them.
	WANJoin []string
	// DeadServerTimeout is how long a control-group server must be failed
	// or left in gossip before the autopilot removes it and promotes a
	// replacement. Default 20s; shorter reacts faster to a dead voter,
	// longer rides out reboots without a membership change.
	DeadServerTimeout time.Duration
	// OutputRetention is how long this node keeps the full output of the
	// scripts it ran (the control group keeps head and tail). Default 7 days.
	OutputRetention time.Duration
	// Swarm is the "ip:port" the file swarm listens on (peer-to-peer
	// pushes). Default 0.0.0.0:7949. SwarmOff ("off") runs no swarm: the
	// node still receives files under 4 MiB and --no-swarm pushes over node
	// streams, but neither fetches nor seeds larger ones.
	Swarm string
	// UploadRate and DownloadRate cap this node's swarm traffic in bytes
	// per second; 0 means unlimited.
	UploadRate, DownloadRate int64
	// UploadSlots is how many peers the swarm uploads to at once (0: all
	// that ask, as plain BitTorrent). Default transfer.DefaultUploadSlots.
	UploadSlots int
	// SwarmCongestion is the TCP congestion control of swarm connections
	// ("system": the kernel's). Default transfer.DefaultSwarmCongestion.
	SwarmCongestion string
	// SSHConcurrency bounds the SSH sessions this node opens to agentless
	// hosts at once. Default 50.
	SSHConcurrency int
	// APIToken is the bearer token the HTTP API requires. When it and
	// APITokenFile are empty, a token is generated on first start and kept
	// in DataDir/api-token (mode 0600).
	APIToken string
	// APITokenFile names a file holding the API token.
	APITokenFile string
	// FSRoot (dev only) prefixes absolute destination paths, so several
	// nodes on one machine keep separate copies of pushed files.
	FSRoot string
	// HealthInterval is how often health is sampled and gossiped. Default 5s.
	HealthInterval time.Duration
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string
	// ConfigFile is the path the file settings came from, if any; SIGHUP
	// re-reads labels from it.
	ConfigFile string

	// TuneMesh, when set, adjusts the mesh configuration last. It is not a
	// flag: tests and in-process harnesses use it for fast failure detection
	// or memberlist's in-memory transport. It applies to the WAN pool too.
	TuneMesh func(*mesh.Config)
	// TuneControl, when set, adjusts the control group configuration last
	// (tests: fast raft and autopilot timings).
	TuneControl func(*consensus.GroupConfig)
	// TuneJobs, when set, adjusts the run scheduler's configuration last
	// (tests: short acknowledgement deadlines).
	TuneJobs func(*jobs.SchedulerConfig)
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() *Config {
	host, _ := os.Hostname()
	return &Config{
		Name:              host,
		IDC:               "dc1",
		Labels:            map[string]string{},
		DataDir:           "/var/lib/herd",
		Bind:              net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultGossipPort)),
		API:               net.JoinHostPort("127.0.0.1", strconv.Itoa(DefaultAPIPort)),
		ClusterName:       "herd",
		ControlSize:       3,
		DeadServerTimeout: consensus.DefaultDeadServerTimeout,
		OutputRetention:   7 * 24 * time.Hour,
		SSHConcurrency:    50,
		UploadSlots:       transfer.DefaultUploadSlots,
		SwarmCongestion:   transfer.DefaultSwarmCongestion,
		Swarm:             net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultSwarmPort)),
		HealthInterval:    5 * time.Second,
		LogLevel:          "info",
	}
}

// Validate checks the whole Config and fills derived defaults (P2P). Its
// errors name the setting that is wrong.
func (c *Config) Validate() error {
	if err := validateName("name", c.Name); err != nil {
		return err
	}
	if err := validateName("idc", c.IDC); err != nil {
		return err
	}
	if c.IDC == "global" {
		return errors.New(`idc: "global" is reserved: it names the scope of objects shared by every IDC`)
	}
	if c.Zone != "" {
		if err := validateName("zone", c.Zone); err != nil {
			return err
		}
	}
	if err := mesh.ValidateLabels(c.Labels); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	if c.DataDir == "" {
		return errors.New("data-dir: must not be empty")
	}
	bindHost, _, err := splitHostPort("bind", c.Bind)
	if err != nil {
		return err
	}
	if c.Advertise != "" {
		if _, _, err := splitHostPort("advertise", c.Advertise); err != nil {
			return err
		}
	}
	if c.P2P == "" {
		c.P2P = net.JoinHostPort(bindHost, strconv.Itoa(DefaultP2PPort))
	}
	if _, _, err := splitHostPort("p2p", c.P2P); err != nil {
		return err
	}
	if _, _, err := splitHostPort("api", c.API); err != nil {
		return err
	}
	if c.WANBind == "" {
		c.WANBind = net.JoinHostPort(bindHost, strconv.Itoa(DefaultWANPort))
	}
	if _, _, err := splitHostPort("wan-bind", c.WANBind); err != nil {
		return err
	}
	if c.WANAdvertise != "" {
		if _, _, err := splitHostPort("wan-advertise", c.WANAdvertise); err != nil {
			return err
		}
	}
	for _, j := range c.WANJoin {
		if _, _, err := splitHostPort("wan-join", j); err != nil {
			return err
		}
	}
	if c.PrimaryIDC != "" {
		if err := validateName("primary-idc", c.PrimaryIDC); err != nil {
			return err
		}
	}
	for _, j := range c.Join {
		if _, _, err := splitHostPort("join", j); err != nil {
			return err
		}
	}
	if !c.Dev {
		if len(c.EncryptKey) == 0 {
			return errors.New("encrypt: a cluster key is required (make one with `herd keygen`); only --dev runs plaintext gossip")
		}
	}
	if n := len(c.EncryptKey); n != 0 && n != 16 && n != 24 && n != 32 {
		return fmt.Errorf("encrypt: key is %d bytes, want 16, 24 or 32", n)
	}
	if c.ControlSize < 1 || c.ControlSize > 7 {
		return fmt.Errorf("control-size: %d is out of range 1..7", c.ControlSize)
	}
	if c.FSRoot != "" {
		if !c.Dev {
			return errors.New("fs-root: only allowed with --dev")
		}
		if !filepath.IsAbs(c.FSRoot) {
			return fmt.Errorf("fs-root: %q must be an absolute path", c.FSRoot)
		}
	}
	if c.HealthInterval < 100*time.Millisecond {
		return fmt.Errorf("health-interval: %s is too short (minimum 100ms)", c.HealthInterval)
	}
	if c.DeadServerTimeout < time.Second {
		return fmt.Errorf("dead-server-timeout: %s is too short (minimum 1s: shorter would remove voters that merely missed a probe)", c.DeadServerTimeout)
	}
	if c.OutputRetention < time.Minute {
		return fmt.Errorf("output-retention: %s is too short (minimum 1m)", c.OutputRetention)
	}
	if c.Swarm != SwarmOff {
		if _, _, err := splitHostPort("swarm", c.Swarm); err != nil {
			return err
		}
	}
	if c.UploadRate < 0 || c.DownloadRate < 0 {
		return fmt.Errorf("upload-rate/download-rate must not be negative")
	}
	if !transfer.ValidCongestion(c.SwarmCongestion) {
		return fmt.Errorf("swarm-congestion: %q is not a TCP congestion control name (cubic, bbr, reno, ... or %q)", c.SwarmCongestion, transfer.SystemCongestion)
	}
	if c.UploadSlots < 0 || c.UploadSlots > 1000 {
		return fmt.Errorf("upload-slots: %d is out of range (0..1000; 0 = every peer that asks)", c.UploadSlots)
	}
	if c.SSHConcurrency < 1 || c.SSHConcurrency > 10000 {
		return fmt.Errorf("ssh-concurrency: %d is out of range (1..10000)", c.SSHConcurrency)
	}
	if c.JoinTimeout < 0 {
		return fmt.Errorf("join-timeout: %s is negative", c.JoinTimeout)
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return err
	}
	if c.APIToken != "" && c.APITokenFile != "" {
		return errors.New("api-token and api-token-file: give one, not both")
	}
	return nil
}

// ParseEncryptKey decodes a base64 cluster key and checks its length.
func ParseEncryptKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("encrypt: not valid base64: %w", err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("encrypt: key is %d bytes, want 16, 24 or 32 (make one with `herd keygen`)", len(key))
}

func validateName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s: must not be empty", what)
	}
	if len(s) > 63 {
		return fmt.Errorf("%s: %q is longer than 63 characters", what, s)
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			(i > 0 && (r == '-' || r == '_' || r == '.'))
		if !ok {
			return fmt.Errorf("%s: %q has %q at position %d (letters, digits, '-', '_', '.' allowed; first must be a letter or digit)", what, s, r, i)
		}
	}
	return nil
}

func splitHostPort(what, addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %q is not host:port: %w", what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s: %q has a bad port %q", what, addr, p)
	}
	if host != "" && net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("%s: %q: host must be an IP address", what, addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// FileConfig is the config file format (YAML). Keys mirror the agent's
// flags with underscores; unknown keys are rejected so a typo never goes
// unnoticed. Example:
//
//	name: web-01
//	idc: sh1
//	zone: rack-a
//	labels: {role: web, env: prod}
//	data_dir: /var/lib/herd
//	bind: 198.18.0.10:7946
//	api: 127.0.0.1:7600
//	join: [198.18.0.11:7946, 198.18.0.12:7946]
//	encrypt: "base64 key from herd keygen"
//	control_size: 3
//	api_token_file: /etc/herd/token
type FileConfig struct {
	Name              *string           `yaml:"name"`
	IDC               *string           `yaml:"idc"`
	Zone              *string           `yaml:"zone"`
	Labels            map[string]string `yaml:"labels"`
	DataDir           *string           `yaml:"data_dir"`
	Bind              *string           `yaml:"bind"`
	Advertise         *string           `yaml:"advertise"`
	P2P               *string           `yaml:"p2p"`
	API               *string           `yaml:"api"`
	Join              []string          `yaml:"join"`
	JoinTimeout       *string           `yaml:"join_timeout"`
	Encrypt           *string           `yaml:"encrypt"`
	Dev               *bool             `yaml:"dev"`
	ClusterName       *string           `yaml:"cluster_name"`
	ControlSize       *int              `yaml:"control_size"`
	PrimaryIDC        *string           `yaml:"primary_idc"`
	WANBind           *string           `yaml:"wan_bind"`
	WANAdvertise      *string           `yaml:"wan_advertise"`
	WANJoin           []string          `yaml:"wan_join"`
	DeadServerTimeout *string           `yaml:"dead_server_timeout"`
	OutputRetention   *string           `yaml:"output_retention"`
	SSHConcurrency    *int              `yaml:"ssh_concurrency"`
	UploadSlots       *int              `yaml:"upload_slots"`
	SwarmCongestion   *string           `yaml:"swarm_congestion"`
	Swarm             *string           `yaml:"swarm"`
	UploadRate        *string           `yaml:"upload_rate"`
	DownloadRate      *string           `yaml:"download_rate"`
	APIToken          *string           `yaml:"api_token"`
	APITokenFile      *string           `yaml:"api_token_file"`
	FSRoot            *string           `yaml:"fs_root"`
	HealthInterval    *string           `yaml:"health_interval"`
	LogLevel          *string           `yaml:"log_level"`
}

// maxConfigFileSize bounds what LoadConfigFile reads; a config is a few KB.
const maxConfigFileSize = 1 << 20

// LoadConfigFile reads and strictly decodes a YAML config file.
func LoadConfigFile(path string) (*FileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return ParseConfigFile(path, data)
}

// ParseConfigFile decodes config file bytes; name is used in errors.
func ParseConfigFile(name string, data []byte) (*FileConfig, error) {
	if len(data) > maxConfigFileSize {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", name, maxConfigFileSize)
	}
	var fc FileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil {
		if errors.Is(err, io.EOF) {
			return &fc, nil // an empty file sets nothing
		}
		return nil, fmt.Errorf("config file %s: %w", name, err)
	}
	return &fc, nil
}

// Apply copies the settings present in the file into c, skipping those for
// which isSet reports that a flag or environment variable already decided.
func (fc *FileConfig) Apply(c *Config, isSet func(flag string) bool) error {
	str := func(flag string, src *string, dst *string) {
		if src != nil && !isSet(flag) {
			*dst = *src
		}
	}
	str("name", fc.Name, &c.Name)
	str("idc", fc.IDC, &c.IDC)
	str("zone", fc.Zone, &c.Zone)
	str("data-dir", fc.DataDir, &c.DataDir)
	str("bind", fc.Bind, &c.Bind)
	str("advertise", fc.Advertise, &c.Advertise)
	str("p2p", fc.P2P, &c.P2P)
	str("api", fc.API, &c.API)
	str("cluster-name", fc.ClusterName, &c.ClusterName)
	str("api-token", fc.APIToken, &c.APIToken)
	str("api-token-file", fc.APITokenFile, &c.APITokenFile)
	str("fs-root", fc.FSRoot, &c.FSRoot)
	str("log-level", fc.LogLevel, &c.LogLevel)
	str("primary-idc", fc.PrimaryIDC, &c.PrimaryIDC)
	str("wan-bind", fc.WANBind, &c.WANBind)
	str("wan-advertise", fc.WANAdvertise, &c.WANAdvertise)
	if fc.WANJoin != nil && !isSet("wan-join") {
		c.WANJoin = fc.WANJoin
	}
	if fc.Labels != nil && !isSet("labels") {
		c.Labels = fc.Labels
	}
	if fc.Join != nil && !isSet("join") {
		c.Join = fc.Join
	}
	if fc.Dev != nil && !isSet("dev") {
		c.Dev = *fc.Dev
	}
	if fc.Swarm != nil && !isSet("swarm") {
		c.Swarm = *fc.Swarm
	}
	for _, r := range []struct {
		flag string
		src  *string
		dst  *int64
	}{{"upload-rate", fc.UploadRate, &c.UploadRate}, {"download-rate", fc.DownloadRate, &c.DownloadRate}} {
		if r.src == nil || isSet(r.flag) {
			continue
		}
		v, err := model.ParseSize(*r.src)
		if err != nil {
			return fmt.Errorf("config %s: %w", r.flag, err)
		}
		*r.dst = v
	}
	if fc.SSHConcurrency != nil && !isSet("ssh-concurrency") {
		c.SSHConcurrency = *fc.SSHConcurrency
	}
	if fc.UploadSlots != nil && !isSet("upload-slots") {
		c.UploadSlots = *fc.UploadSlots
	}
	if fc.SwarmCongestion != nil && !isSet("swarm-congestion") {
		c.SwarmCongestion = *fc.SwarmCongestion
	}
	if fc.ControlSize != nil && !isSet("control-size") {
		c.ControlSize = *fc.ControlSize
	}
	if fc.Encrypt != nil && !isSet("encrypt") {
		key, err := ParseEncryptKey(*fc.Encrypt)
		if err != nil {
			return err
		}
		c.EncryptKey = key
	}
	for _, d := range []struct {
		flag string
		src  *string
		dst  *time.Duration
	}{
		{"join-timeout", fc.JoinTimeout, &c.JoinTimeout},
		{"health-interval", fc.HealthInterval, &c.HealthInterval},
		{"dead-server-timeout", fc.DeadServerTimeout, &c.DeadServerTimeout},
		{"output-retention", fc.OutputRetention, &c.OutputRetention},
	} {
		if d.src == nil || isSet(d.flag) {
			continue
		}
		v, err := time.ParseDuration(*d.src)
		if err != nil {
			return fmt.Errorf("config file: %s: %q is not a duration like 30s or 5m", strings.ReplaceAll(d.flag, "-", "_"), *d.src)
		}
		*d.dst = v
	}
	return nil
}

// ParseLogLevel parses debug, info, warn or error.
func ParseLogLevel(s string) (slog.Level, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log-level: %q: want debug, info, warn or error", s)
	}
	return lvl, nil
}
