package netns

import (
	"fmt"
	"regexp"
)

// Config describes a fleet. The zero value is usable: every zero field falls
// back to the value DefaultConfig returns.
type Config struct {
	// Hosts is the number of hosts (network namespaces) in the fleet.
	// Default 3; zero means the default. At most MaxHosts.
	Hosts int

	// RateMbit shapes every host link with a token bucket filter in both
	// directions (host egress on eth0 inside the namespace and the root-side
	// veth egress toward the host). Default and zero: no shaping. Single
	// hosts can be reshaped later with Host.Shape.
	RateMbit int

	// Prefix starts every namespace name ("<Prefix>-s<slot>-h<N>") so a
	// person reading `ip netns list` knows which suite made it. It must be
	// a lowercase letter followed by up to 15 lowercase letters or digits.
	// Default and zero: "herd". Uniqueness does not depend on it: the slot
	// number in the name is unique per machine.
	Prefix string
}

// MaxHosts is the largest fleet New builds: 16 slots form a /20, minus the
// network, gateway, broadcast and nine reserved low addresses.
const MaxHosts = maxGroup*256 - reservedLow - 2

// DefaultConfig returns a three-host, unshaped fleet named "herd".
func DefaultConfig() Config {
	return Config{
		Hosts:  3,
		Prefix: "herd",
	}
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Hosts == 0 {
		c.Hosts = d.Hosts
	}
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	return c
}

// validate reports the first field that New cannot honour.
func (c Config) validate() error {
	if c.Hosts < 1 || c.Hosts > MaxHosts {
		return fmt.Errorf("netns: Hosts %d out of range 1..%d", c.Hosts, MaxHosts)
	}
	if c.RateMbit < 0 {
		return fmt.Errorf("netns: RateMbit %d is negative", c.RateMbit)
	}
	if !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("netns: Prefix %q must match %s", c.Prefix, prefixRE)
	}
	return nil
}
