package mesh

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in        string
		canonical string // String() of the result
		wantErr   string // substring; "" means success
	}{
		{"", "", ""},
		{"  \t", "", ""},
		{"role=web", "role=web", ""},
		{"role==web", "role=web", ""},
		{"role!=web", "role!=web", ""},
		{"role = web", "role=web", ""},
		{"role == web , zone != b", "role=web,zone!=b", ""},
		{"env in (prod,staging)", "env in (prod,staging)", ""},
		{"env in ( prod , staging )", "env in (prod,staging)", ""},
		{"env in(prod)", "env in (prod)", ""},
		{"env notin (dev)", "env notin (dev)", ""},
		{"canary", "canary", ""},
		{"!canary", "!canary", ""},
		{"! canary", "!canary", ""},
		{"k=", "k=", ""},
		{"k!=", "k!=", ""},
		{"in=x", "in=x", ""},
		{"in in (in)", "in in (in)", ""},
		{"notin", "notin", ""},
		{"k8s.io/arch=amd64,owner=ops@example.com", "k8s.io/arch=amd64,owner=ops@example.com", ""},
		{"role=web,env in (prod,staging),!canary,zone!=b,k==v,k notin (a,b),k", "role=web,env in (prod,staging),!canary,zone!=b,k=v,k notin (a,b),k", ""},
		{"name=node-1,status=alive", "name=node-1,status=alive", ""},

		{",", "", `position 1: expected a key`},
		{"a,", "", `position 3: expected a requirement after ','`},
		{"a,,b", "", `position 3: expected a key`},
		{"=v", "", `position 1: expected a key`},
		{"-a", "", `position 1: expected a key`},
		{"a b", "", `position 3: unexpected "b" after key "a"`},
		{"a=b c", "", `position 5: expected ',' or end of selector after "a=b", found 'c'`},
		{"a=b!", "", `position 4: invalid character '!' in value "b!"`},
		{"a=(b)", "", `position 3: invalid character '('`},
		{"a!b", "", `position 3: expected '=' after '!'`},
		{"a!", "", `position 3: expected '=' after '!' in "a!", found end of selector`},
		{"!a=b", "", `position 3: "!a" tests that a key is absent`},
		{"!", "", `position 2: expected a key`},
		{"a in", "", `position 5: expected '(' to open the value set of "a", found end of selector`},
		{"a in b", "", `expected '('`},
		{"a in ()", "", `position 7: empty value in the set of "a"`},
		{"a in (b,)", "", `position 9: empty value`},
		{"a in (b", "", `missing ')'`},
		{"a in (b c)", "", `expected ',' or ')' in the value set`},
		{"a in (b;c)", "", `invalid character ';'`},
		{"a inn (b)", "", `unexpected "inn" after key "a"`},
		{"a)", "", `expected ',' or end of selector after "a", found ')'`},
		{strings.Repeat("k", 64), "", "longer than 63"},
		{"k=" + strings.Repeat("v", 129), "", "longer than 128"},
		{"k=ü", "", "invalid character"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			sel, err := ParseSelector(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSelector(%q) error = %v, want %q", tc.in, err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "selector "+strconv.Quote(tc.in)) {
					t.Errorf("error %q does not quote the selector", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSelector(%q): %v", tc.in, err)
			}
			if got := sel.String(); got != tc.canonical {
				t.Errorf("String() = %q, want %q", got, tc.canonical)
			}
			if sel.Empty() != (tc.canonical == "") {
				t.Errorf("Empty() = %v", sel.Empty())
			}
			again, err := ParseSelector(sel.String())
			if err != nil || again.String() != sel.String() {
				t.Errorf("canonical form does not re-parse: %q, %v", again.String(), err)
			}
		})
	}
}

func TestSelectorMatches(t *testing.T) {
	web := map[string]string{"name": "n1", "idc": "dc1", "status": "alive", "role": "web", "env": "prod", "zone": "a"}
	db := map[string]string{"name": "n2", "idc": "dc1", "status": "failed", "role": "db", "env": "staging", "canary": ""}
	bare := map[string]string{"name": "n3", "idc": "dc2", "status": "alive"}
	tests := []struct {
		sel             string
		web, db, bareOK bool
	}{
		{"", true, true, true},
		{"role=web", true, false, false},
		{"role==db", false, true, false},
		{"role!=web", false, true, true}, // != matches a missing key
		{"env in (prod,staging)", true, true, false},
		{"env notin (prod)", false, true, true}, // notin matches a missing key
		{"canary", false, true, false},          // exists, even with an empty value
		{"!canary", true, false, true},
		{"canary=", false, true, false},
		{"status=alive,idc=dc1", true, false, false},
		{"zone", true, false, false},
		{"!zone,status in (alive)", false, false, true},
		{"role=web,role=db", false, false, false},
	}
	for _, tc := range tests {
		sel, err := ParseSelector(tc.sel)
		if err != nil {
			t.Fatalf("ParseSelector(%q): %v", tc.sel, err)
		}
		for _, c := range []struct {
			name  string
			attrs map[string]string
			want  bool
		}{{"web", web, tc.web}, {"db", db, tc.db}, {"bare", bare, tc.bareOK}} {
			if got := sel.Matches(c.attrs); got != c.want {
				t.Errorf("%q matches %s = %v, want %v", tc.sel, c.name, got, c.want)
			}
		}
	}
	var zero Selector
	if !zero.Empty() || !zero.Matches(nil) || zero.String() != "" {
		t.Error("the zero Selector must be empty and match everything")
	}
}

func TestMemberAttributes(t *testing.T) {
	m := Member{
		Name: "n1", Status: StatusLeft,
		Meta:   Meta{IDC: "dc1"},
		Labels: map[string]string{"role": "web"},
	}
	got := m.Attributes()
	want := map[string]string{"name": "n1", "idc": "dc1", "status": "left", "role": "web"}
	if len(got) != len(want) {
		t.Fatalf("Attributes() = %v, want %v (no zone or version when unset)", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Attributes()[%q] = %q, want %q", k, got[k], v)
		}
	}
	got["role"] = "changed"
	if m.Labels["role"] != "web" {
		t.Error("Attributes() aliases the labels map")
	}
}
