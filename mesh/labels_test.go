package mesh

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParseLabels(t *testing.T) {
	long := strings.Repeat("k", 63)
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string // substring; "" means success
	}{
		{"", map[string]string{}, ""},
		{"   ", map[string]string{}, ""},
		{"role=web", map[string]string{"role": "web"}, ""},
		{"role=web,env=prod", map[string]string{"role": "web", "env": "prod"}, ""},
		{" role = web , env=prod ", map[string]string{"role": "web", "env": "prod"}, ""},
		{"empty=", map[string]string{"empty": ""}, ""},
		{"k8s.io/arch=amd64", map[string]string{"k8s.io/arch": "amd64"}, ""},
		{"owner=ops@example.com", map[string]string{"owner": "ops@example.com"}, ""},
		{"v=1.2.3+build:7/x_y-z", map[string]string{"v": "1.2.3+build:7/x_y-z"}, ""},
		{"0=0", map[string]string{"0": "0"}, ""},
		{long + "=x", map[string]string{long: "x"}, ""},

		{"role", nil, `label "role" at position 1: missing '='`},
		{"a=b,c", nil, `label "c" at position 5: missing '='`},
		{"a=b,,c=d", nil, "position 5: empty label"},
		{"a=b,", nil, "position 5: empty label"},
		{"=v", nil, "position 1: empty key"},
		{"-a=v", nil, "must start with a letter or digit"},
		{"a b=v", nil, `position 2: invalid character ' ' in key "a b"`},
		{"a=b c", nil, `position 4: invalid character ' ' in value "b c"`},
		{"a=b=c", nil, `invalid character '=' in value`},
		{"a=ü", nil, "invalid character"},
		{"a=1,a=2", nil, `position 5: duplicate key "a"`},
		{"idc=x", nil, "reserved attribute"},
		{"name=x", nil, "reserved attribute"},
		{"Status=x", map[string]string{"Status": "x"}, ""}, // reserved names are lower case
		{long + "k=x", nil, "longer than 63"},
		{"a=" + strings.Repeat("v", 129), nil, "longer than 128"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLabels(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseLabels(%q) error = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLabels(%q): %v", tc.in, err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("ParseLabels(%q) = %v, want %v", tc.in, got, tc.want)
			}
			if err := ValidateLabels(got); err != nil {
				t.Errorf("ValidateLabels(ParseLabels(%q)): %v", tc.in, err)
			}
		})
	}
}

func TestValidateLabels(t *testing.T) {
	tests := []struct {
		in      map[string]string
		wantErr string
	}{
		{nil, ""},
		{map[string]string{"a": "", "b.c/d-e_f": "x:y@z+1"}, ""},
		{map[string]string{"": "x"}, "empty key"},
		{map[string]string{"zone": "x"}, "reserved"},
		{map[string]string{"version": "x"}, "reserved"},
		{map[string]string{"ok": "x", "bad!": "y"}, `label "bad!"`},
		{map[string]string{"k": "with space"}, "invalid character ' '"},
		{map[string]string{"k": "a\nb"}, "invalid character"},
	}
	for _, tc := range tests {
		err := ValidateLabels(tc.in)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("ValidateLabels(%v) = %v, want %q", tc.in, err, tc.wantErr)
		}
	}
}

// formatLabels writes l in the form ParseLabels reads, keys sorted.
func formatLabels(l map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}
