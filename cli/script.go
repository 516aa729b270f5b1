package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
)

// ScriptOptions are the inputs shared by the `herd script` verbs.
type ScriptOptions struct {
	globals
	Name string
}

// readScriptOptions reads globals and the NAME argument; want is the
// number of positional arguments the verb takes (NAME first).
func readScriptOptions(c *ucli.Context, args []string, want int, usage string) (ScriptOptions, error) {
	o := ScriptOptions{globals: readGlobals(c)}
	if len(args) != want {
		return o, usagef("script %s takes %s", c.Command.Name, usage)
	}
	o.Name = args[0]
	if err := model.ValidateName("script name", o.Name); err != nil {
		return o, &UsageError{Err: err}
	}
	return o, nil
}

func scriptVersionArg(v string) error {
	if !scriptVersionRE.MatchString(v) {
		return usagef("version %q: a version is 12 hex digits (see herd script versions NAME)", v)
	}
	return nil
}

// readScriptVersionFlag reads the NAME and the optional --version of
// script show and script rm: version is "" when not given, else well formed.
func readScriptVersionFlag(c *ucli.Context, args []string) (ScriptOptions, string, error) {
	o, err := readScriptOptions(c, args, 1, "exactly one NAME")
	if err != nil {
		return o, "", err
	}
	version := c.String("version")
	if version != "" {
		if err := scriptVersionArg(version); err != nil {
			return o, "", err
		}
	}
	return o, version, nil
}

func scriptCommand() *ucli.Command {
	return nounDefaults(&ucli.Command{
		Name:  "script",
		Usage: "keep versioned scripts in the control group's library",
		Description: `Library scripts are run by name: herd run --script-name NAME[@VERSION]. Each content is a
version named by the first 12 hex digits of its SHA-256, so adding the same content twice
changes nothing. One version is online: the one runs use when they name none. The first
version added is online; later ones only with --online or herd script online.

  herd script add backup --file backup.sh --description "nightly dump" --note "gzip level 6"
  herd script online backup 3fa2b1c4d5e6
  herd script show backup --body | less`,
		Subcommands: []*ucli.Command{
			{
				Name: "add", Usage: "add a version of a script (creating it if new)", ArgsUsage: "NAME",
				Description: `  herd script add backup --file backup.sh
  herd script add report --file report.py --online --note "fix totals"
  curl -s https://example/fix.sh | herd script add fix --file -`,
				Flags: commonFlags(
					&ucli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "the script's content from `FILE` (- reads stdin)"},
					&ucli.StringFlag{Name: "lang", Usage: "`LANG`: sh, bash or python (default: from the #! line, else sh)"},
					&ucli.StringFlag{Name: "description", Usage: "what the script is for (`TEXT`)"},
					&ucli.StringFlag{Name: "note", Usage: "what changed in this version (`TEXT`)"},
					&ucli.BoolFlag{Name: "online", Usage: "make this version the one runs use by default"},
				),
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					o, err := readScriptOptions(c, args, 1, "exactly one NAME")
					if err != nil {
						return err
					}
					file := c.String("file")
					if file == "" {
						return usagef("script add needs --file FILE (or --file - for stdin)")
					}
					body, err := readScriptFile(file, os.Stdin)
					if err != nil {
						return err
					}
					in := api.ScriptAdd{Lang: c.String("lang"), Body: body, Description: c.String("description"),
						Note: c.String("note"), Online: c.Bool("online")}
					if err := model.ValidateLang(in.Lang); err != nil {
						return usagef("lang: %v", err)
					}
					if in.Lang == "" {
						in.Lang = guessLang(file, body)
					}
					return runScriptAdd(c.Context, o, in, c.App.Writer)
				}),
			},
			{
				Name: "list", Usage: "list library scripts",
				Description: `  herd script list
  herd script list --json | jq -r '.scripts[].name'`,
				Flags: commonFlags(),
				Action: func(c *ucli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					return runScriptList(c.Context, ScriptOptions{globals: readGlobals(c)}, c.App.Writer)
				},
			},
			{
				Name: "show", Usage: "show a script, or print the body of a version", ArgsUsage: "NAME",
				Description: `Without --version or --body, shows the script and its versions. --body prints the online
version's content; --version V prints version V's content (raw, to stdout).

  herd script show backup
  herd script show backup --body > backup.sh
  herd script show backup --version 3fa2b1c4d5e6 | diff - backup.sh`,
				Flags: commonFlags(
					&ucli.StringFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the body of `VERSION`"},
					&ucli.BoolFlag{Name: "body", Usage: "print the body of the online version"},
				),
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					o, version, err := readScriptVersionFlag(c, args)
					if err != nil {
						return err
					}
					return runScriptShow(c.Context, o, version, c.Bool("body"), c.App.Writer)
				}),
			},
			{
				Name: "versions", Usage: "list a script's versions", ArgsUsage: "NAME",
				Description: `  herd script versions backup`,
				Flags:       commonFlags(),
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					o, err := readScriptOptions(c, args, 1, "exactly one NAME")
					if err != nil {
						return err
					}
					return runScriptVersions(c.Context, o, c.App.Writer)
				}),
			},
			{
				Name: "online", Usage: "make a version the one runs use by default", ArgsUsage: "NAME VERSION",
				Description: `  herd script online backup 3fa2b1c4d5e6`,
				Flags:       commonFlags(),
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					o, err := readScriptOptions(c, args, 2, "NAME and VERSION")
					if err != nil {
						return err
					}
					version := args[1]
					if err := scriptVersionArg(version); err != nil {
						return err
					}
					return runScriptOnline(c.Context, o, version, c.App.Writer)
				}),
			},
			{
				Name: "rm", Usage: "remove a script, or one of its versions", ArgsUsage: "NAME",
				Description: `The online version cannot be removed while others exist: make another online first.

  herd script rm backup --version 3fa2b1c4d5e6
  herd script rm backup`,
				Flags: commonFlags(
					&ucli.StringFlag{Name: "version", Aliases: []string{"V"}, Usage: "remove only `VERSION`"},
				),
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					o, version, err := readScriptVersionFlag(c, args)
					if err != nil {
						return err
					}
					return runScriptRemove(c.Context, o, version, c.App.Writer)
				}),
			},
		},
	})
}

func runScriptAdd(ctx context.Context, o ScriptOptions, in api.ScriptAdd, w io.Writer) error {
	s, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.Script, error) {
		return c.AddScript(ctx, o.Name, in)
	})
	if err != nil {
		return err
	}
	return o.emit(w, s, func() error {
		v := scriptVersion(in.Body)
		state := "not online; herd script online " + s.Name + " " + v + " makes it so"
		if s.Online == v {
			state = "online"
		}
		return writef(w, "script %s version %s (%s, %s)\n", s.Name, v, humanBytes(uint64(len(in.Body))), state)
	})
}

func runScriptList(ctx context.Context, o ScriptOptions, w io.Writer) error {
	scripts, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) ([]model.Script, error) {
		return c.Scripts(ctx)
	})
	if err != nil {
		return err
	}
	return o.emit(w, map[string][]model.Script{"scripts": nonNil(scripts)}, func() error {
		t := newTable(w, "NAME", "LANG", "ONLINE", "VERSIONS", "DESCRIPTION")
		for _, s := range scripts {
			t.row(s.Name, s.Lang, orDash(s.Online), fmt.Sprint(len(s.Versions)), truncate(orDash(s.Description), 50))
		}
		return t.flush()
	})
}

// runScriptShow shows a script and its versions or, with version or body,
// prints the content of that version or of the online one.
func runScriptShow(ctx context.Context, o ScriptOptions, version string, body bool, w io.Writer) error {
	if version == "" && !body {
		s, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.Script, error) {
			return c.Script(ctx, o.Name)
		})
		if err != nil {
			return err
		}
		return o.emit(w, s, func() error {
			fmt.Fprintf(w, "script %s (%s), online version %s\n", s.Name, s.Lang, orDash(s.Online))
			if s.Description != "" {
				fmt.Fprintf(w, "  %s\n", s.Description)
			}
			fmt.Fprintln(w)
			return writeScriptVersions(w, s)
		})
	}
	b, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*api.ScriptBody, error) {
		if version == "" {
			s, err := c.Script(ctx, o.Name)
			if err != nil {
				return nil, err
			}
			if s.Online == "" {
				return nil, fmt.Errorf("script %s has no online version", o.Name)
			}
			version = s.Online
		}
		return c.ScriptVersion(ctx, o.Name, version)
	})
	if err != nil {
		return err
	}
	return o.emit(w, b, func() error {
		_, err := w.Write(b.Body)
		return err
	})
}

func writeScriptVersions(w io.Writer, s *model.Script) error {
	t := newTable(w, "VERSION", "SIZE", "CREATED", "NOTE")
	for _, v := range s.Versions {
		name := v.Version
		if v.Version == s.Online {
			name += " (online)"
		}
		t.row(name, humanBytes(uint64(max(v.Size, 0))), humanAge(time.Since(v.Created))+" ago", orDash(v.Note))
	}
	return t.flush()
}

func runScriptVersions(ctx context.Context, o ScriptOptions, w io.Writer) error {
	s, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.Script, error) {
		return c.Script(ctx, o.Name)
	})
	if err != nil {
		return err
	}
	return o.emit(w, s, func() error { return writeScriptVersions(w, s) })
}

func runScriptOnline(ctx context.Context, o ScriptOptions, version string, w io.Writer) error {
	s, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.Script, error) {
		return c.SetScriptOnline(ctx, o.Name, version)
	})
	if err != nil {
		return err
	}
	return o.emit(w, s, func() error {
		return writef(w, "script %s: version %s is online\n", s.Name, s.Online)
	})
}

func runScriptRemove(ctx context.Context, o ScriptOptions, version string, w io.Writer) error {
	what := "script " + o.Name
	if version != "" {
		what += " version " + version
	}
	return runRemove(ctx, o.globals, w, func(ctx context.Context, c *api.Client) error {
		return c.DeleteScript(ctx, o.Name, version)
	}, map[string]string{"deleted": o.Name, "version": version}, what)
}

// nonNil turns a nil slice into an empty one so --json prints [] not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
