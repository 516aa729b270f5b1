package sshexec

import (
	"context"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/herd-io/herd/jobs/sshexec/sshdtest"
)

func TestTargetValidateAndAddr(t *testing.T) {
	key, _ := sshdtest.NewClientKey(t)
	ok := Target{Name: "h", Addr: "10.0.0.1", User: "root", Key: key}
	for _, tc := range []struct {
		name, addr, wantAddr, wantErr string
		mut                           func(*Target)
	}{
		{name: "ipv4 no port", addr: "10.0.0.1", wantAddr: "10.0.0.1:22"},
		{name: "host port", addr: "web1.example:2222", wantAddr: "web1.example:2222"},
		{name: "ipv6 bare", addr: "fd00::5", wantAddr: "[fd00::5]:22"},
		{name: "ipv6 brackets", addr: "[fd00::5]", wantAddr: "[fd00::5]:22"},
		{name: "ipv6 port", addr: "[fd00::5]:2200", wantAddr: "[fd00::5]:2200"},
		{name: "bad port", addr: "h:0", wantErr: "port in 1-65535"},
		{name: "junk", addr: "a:b:c", wantErr: "not host[:port]"},
		{name: "empty addr", addr: "", wantErr: "address is empty"},
		{name: "no creds", addr: "h", wantErr: "neither a private key nor a password", mut: func(t *Target) { t.Key = nil }},
		{name: "password only", addr: "h", wantAddr: "h:22", mut: func(t *Target) { t.Key = nil; t.Password = "pw" }},
		{name: "bad key", addr: "h", wantErr: "private key", mut: func(t *Target) { t.Key = []byte("nope") }},
		{name: "no user, no name", addr: "h", wantErr: "login user is empty", mut: func(t *Target) { t.User = ""; t.Name = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := ok
			tg.Addr = tc.addr
			if tc.mut != nil {
				tc.mut(&tg)
			}
			err := tg.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := tg.hostPort(); got != tc.wantAddr {
				t.Fatalf("hostPort() = %q, want %q", got, tc.wantAddr)
			}
		})
	}
}

func TestMemoryHostKeysCreateOnly(t *testing.T) {
	m := NewMemoryHostKeys()
	ctx := context.Background()
	if _, found, err := m.Lookup(ctx, "a:22"); found || err != nil {
		t.Fatal("empty store found a key")
	}
	var wg sync.WaitGroup
	stored := make([][]byte, 20)
	for i := range stored {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stored[i], _ = m.Record(ctx, "a:22", []byte{byte(i)})
		}()
	}
	wg.Wait()
	winner, found, _ := m.Lookup(ctx, "a:22")
	if !found {
		t.Fatal("no key recorded")
	}
	for i, s := range stored {
		if string(s) != string(winner) {
			t.Fatalf("Record %d returned %v, stored is %v", i, s, winner)
		}
	}
	winner[0] = 99 // callers cannot mutate the store
	if again, _, _ := m.Lookup(ctx, "a:22"); again[0] == 99 {
		t.Fatal("Lookup returned the store's own slice")
	}
}

func TestHostKeyAlgorithmsPinned(t *testing.T) {
	if got := hostKeyAlgorithms(ssh.KeyAlgoRSA); len(got) != 3 || got[0] != ssh.KeyAlgoRSASHA512 {
		t.Fatalf("rsa: %v", got)
	}
	if got := hostKeyAlgorithms(ssh.KeyAlgoED25519); len(got) != 1 || got[0] != ssh.KeyAlgoED25519 {
		t.Fatalf("ed25519: %v", got)
	}
}

func TestNewConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "HostKeys is required") {
		t.Fatalf("New without HostKeys: %v", err)
	}
	if _, err := New(Config{HostKeys: NewMemoryHostKeys(), KillGrace: -1}); err == nil {
		t.Fatal("negative KillGrace accepted")
	}
	r, err := New(Config{HostKeys: NewMemoryHostKeys()})
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if r.cfg.Concurrency != d.Concurrency || cap(r.slots) != 50 || r.cfg.DialTimeout != d.DialTimeout || r.cfg.KillGrace != d.KillGrace || r.cfg.WaitDelay != d.WaitDelay {
		t.Fatalf("defaults not applied: %+v", r.cfg)
	}
}
