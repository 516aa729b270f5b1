package node

import (
	"strings"
	"testing"
	"time"
)

func validConfig() *Config {
	c := DefaultConfig()
	c.Name = "n1"
	c.EncryptKey = make([]byte, 32)
	return c
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // "" = valid
	}{
		{"defaults with key", func(*Config) {}, ""},
		{"dev without key", func(c *Config) { c.EncryptKey = nil; c.Dev = true }, ""},
		{"no key", func(c *Config) { c.EncryptKey = nil }, "encrypt: a cluster key is required"},
		{"short key", func(c *Config) { c.EncryptKey = make([]byte, 7) }, "key is 7 bytes"},
		{"empty name", func(c *Config) { c.Name = "" }, "name: must not be empty"},
		{"bad name", func(c *Config) { c.Name = "a b" }, `name: "a b" has ' '`},
		{"bad idc", func(c *Config) { c.IDC = "-x" }, "idc:"},
		{"reserved idc", func(c *Config) { c.IDC = "global" }, "reserved"},
		{"bad bind", func(c *Config) { c.Bind = "nope" }, "bind:"},
		{"bind hostname", func(c *Config) { c.Bind = "localhost:1" }, "host must be an IP"},
		{"bad port", func(c *Config) { c.API = "127.0.0.1:99999" }, "bad port"},
		{"bad join", func(c *Config) { c.Join = []string{"1.2.3.4"} }, "join:"},
		{"control size", func(c *Config) { c.ControlSize = 0 }, "control-size: 0"},
		{"fs-root without dev", func(c *Config) { c.FSRoot = "/tmp/x" }, "fs-root: only allowed with --dev"},
		{"relative fs-root", func(c *Config) { c.Dev = true; c.FSRoot = "x" }, "must be an absolute path"},
		{"health interval", func(c *Config) { c.HealthInterval = time.Millisecond }, "too short"},
		{"dead server timeout", func(c *Config) { c.DeadServerTimeout = 10 * time.Millisecond }, "dead-server-timeout"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log-level"},
		{"reserved label", func(c *Config) { c.Labels = map[string]string{"idc": "x"} }, "labels:"},
		{"two tokens", func(c *Config) { c.APIToken = "a"; c.APITokenFile = "/f" }, "give one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("want error containing %q, got none", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateDerivesP2P(t *testing.T) {
	c := validConfig()
	c.Bind = "198.18.0.5:7946"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.P2P != "198.18.0.5:7947" {
		t.Fatalf("P2P = %q, want the bind IP with port 7947", c.P2P)
	}
}

func TestParseEncryptKey(t *testing.T) {
	if _, err := ParseEncryptKey("AAAAAAAAAAAAAAAAAAAAAA=="); err != nil {
		t.Fatalf("16-byte key: %v", err)
	}
	for _, bad := range []string{"", "!!!", "AAAA"} {
		if _, err := ParseEncryptKey(bad); err == nil {
			t.Errorf("ParseEncryptKey(%q): want error", bad)
		}
	}
}

func TestConfigFile(t *testing.T) {
	fc, err := ParseConfigFile("t.yaml", []byte(`
name: web-01
idc: sh1
labels: {role: web}
join: [198.18.0.2:7946]
join_timeout: 2m
dead_server_timeout: 45s
control_size: 5
encrypt: "AAAAAAAAAAAAAAAAAAAAAA=="
`))
	if err != nil {
		t.Fatal(err)
	}
	c := validConfig()
	setByFlag := map[string]bool{"idc": true}
	c.IDC = "from-flag"
	if err := fc.Apply(c, func(f string) bool { return setByFlag[f] }); err != nil {
		t.Fatal(err)
	}
	if c.Name != "web-01" || c.IDC != "from-flag" || c.Labels["role"] != "web" ||
		c.ControlSize != 5 || c.JoinTimeout != 2*time.Minute || c.DeadServerTimeout != 45*time.Second || len(c.EncryptKey) != 16 || c.Join[0] != "198.18.0.2:7946" {
		t.Fatalf("file not applied as expected: %+v", c)
	}
}

func TestConfigFileErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"unknown key", "nmae: x\n", "field nmae not found"},
		{"wrong type", "control_size: many\n", "line 1: cannot unmarshal"},
		{"not yaml", "{{{", "config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfigFile("t.yaml", []byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	fc, err := ParseConfigFile("t.yaml", []byte("health_interval: soon\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fc.Apply(validConfig(), func(string) bool { return false }); err == nil ||
		!strings.Contains(err.Error(), "health_interval") {
		t.Fatalf("bad duration: err = %v", err)
	}
	if _, err := ParseConfigFile("empty.yaml", nil); err != nil {
		t.Fatalf("empty file: %v", err)
	}
}

func FuzzParseConfigFile(f *testing.F) {
	f.Add([]byte("name: a\nidc: b\nlabels: {x: y}\n"))
	f.Add([]byte("join: [1.2.3.4:5]\ncontrol_size: 3\n"))
	f.Add([]byte("encrypt: zzz\nhealth_interval: 1s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := ParseConfigFile("fuzz.yaml", data)
		if err != nil {
			return
		}
		c := validConfig()
		if err := fc.Apply(c, func(string) bool { return false }); err != nil {
			return
		}
		_ = c.Validate()
	})
}

// The example config shipped in dist/ must stay loadable.
func TestExampleConfigLoads(t *testing.T) {
	fc, err := LoadConfigFile("../dist/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	// The example's key is a placeholder; everything else must apply.
	fc.Encrypt = nil
	if err := fc.Apply(c, func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	c.EncryptKey = make([]byte, 32)
	if err := c.Validate(); err != nil {
		t.Fatalf("dist/agent.yaml does not validate: %v", err)
	}
}
