package cli

import (
	"fmt"

	ucli "github.com/urfave/cli/v2"
)

const bashCompletion = `# bash completion for herd; load with: source <(herd completion bash)
_herd_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == "-"* ]]; then
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -o nospace -F _herd_complete herd
`

const zshCompletion = `#compdef herd
# zsh completion for herd; load with: source <(herd completion zsh)
_herd() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then _describe 'values' opts; else _files; fi
}
compdef _herd herd
`

func completionCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		ArgsUsage: "bash|zsh",
		Description: `  source <(herd completion bash)     # in ~/.bashrc
  source <(herd completion zsh)      # in ~/.zshrc`,
		Action: func(c *ucli.Context) error {
			var script string
			switch c.Args().First() {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			default:
				return usagef("completion: name a shell: bash or zsh")
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}
