package executor

import (
	"strings"
	"testing"
	"time"
)

func TestParseLang(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Lang
		wantErr bool
	}{
		{"", LangSh, false},
		{"sh", LangSh, false},
		{"bash", LangBash, false},
		{"python", LangPython, false},
		{"python3", "", true},
		{"Bash", "", true},
		{"perl", "", true},
	} {
		got, err := ParseLang(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseLang(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "sh, bash, python") {
			t.Errorf("ParseLang(%q) error %q does not name the allowed values", tc.in, err)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{Script: []byte("true")}
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		want string // substring of the error; "" = valid
	}{
		{"minimal", func(*Spec) {}, ""},
		{"full", func(s *Spec) {
			s.Lang, s.Args, s.Env = LangPython, []string{"", "a b"}, map[string]string{"_X1": "v", "a": ""}
			s.Timeout, s.WorkDir, s.User, s.RunID, s.Host = time.Second, "/tmp", "nobody", "r1", "h1"
		}, ""},
		{"non-UTF-8 script", func(s *Spec) { s.Script = []byte{0xff, 0xfe, 0} }, ""},
		{"empty script", func(s *Spec) { s.Script = nil }, "script is empty"},
		{"unknown lang", func(s *Spec) { s.Lang = "ruby" }, `unknown script language "ruby"`},
		{"NUL in arg", func(s *Spec) { s.Args = []string{"ok", "a\x00b"} }, "argument 2 contains a NUL"},
		{"env name digit", func(s *Spec) { s.Env = map[string]string{"1X": "v"} }, `env name "1X" is invalid`},
		{"env name dash", func(s *Spec) { s.Env = map[string]string{"A-B": "v"} }, `env name "A-B" is invalid`},
		{"env name empty", func(s *Spec) { s.Env = map[string]string{"": "v"} }, `env name "" is invalid`},
		{"env name =", func(s *Spec) { s.Env = map[string]string{"A=B": "v"} }, `env name "A=B" is invalid`},
		{"NUL in env", func(s *Spec) { s.Env = map[string]string{"A": "x\x00"} }, "env A: value contains a NUL"},
		{"negative timeout", func(s *Spec) { s.Timeout = -time.Second }, "timeout -1s is negative"},
		{"relative workdir", func(s *Spec) { s.WorkDir = "tmp" }, `workdir "tmp" is not an absolute path`},
		{"NUL in user", func(s *Spec) { s.User = "a\x00" }, "user contains a NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mod(&s)
			err := s.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

// Every problem is reported at once, so one round trip fixes a request.
func TestSpecValidateReportsAll(t *testing.T) {
	err := Spec{Timeout: -1, WorkDir: "rel", Env: map[string]string{"B-": "", "A-": ""}}.Validate()
	if err == nil {
		t.Fatal("invalid spec accepted")
	}
	msg := err.Error()
	for _, want := range []string{"script is empty", `"A-"`, `"B-"`, "negative", "absolute"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Index(msg, `"A-"`) > strings.Index(msg, `"B-"`) {
		t.Errorf("env errors not in sorted order: %q", msg)
	}
}

func FuzzSpecValidate(f *testing.F) {
	f.Add("sh", []byte("echo hi"), "arg", "NAME", "value", int64(0), "/tmp", "root")
	f.Add("", []byte{}, "a\x00", "1BAD", "v\x00", int64(-1), "rel", "")
	f.Add("python", []byte{0xff}, "", "_", "", int64(1<<62), "/", "a\x00b")
	f.Fuzz(func(t *testing.T, lang string, script []byte, arg, envK, envV string, timeout int64, workdir, user string) {
		s := Spec{
			Lang: Lang(lang), Script: script, Args: []string{arg},
			Env: map[string]string{envK: envV}, Timeout: time.Duration(timeout),
			WorkDir: workdir, User: user,
		}
		err := s.Validate()
		if err != nil {
			return
		}
		// Whatever passes must be safe to hand to execve and the lookups.
		if _, perr := ParseLang(lang); perr != nil {
			t.Errorf("accepted unknown lang %q", lang)
		}
		if len(script) == 0 || timeout < 0 || !envNameRE.MatchString(envK) {
			t.Errorf("accepted invalid spec %+v", s)
		}
		for _, str := range []string{arg, envK, envV, workdir, user} {
			if strings.ContainsRune(str, 0) {
				t.Errorf("accepted NUL in %q", str)
			}
		}
		if workdir != "" && workdir[0] != '/' {
			t.Errorf("accepted relative workdir %q", workdir)
		}
	})
}
