package jobs

import (
	"fmt"
	"strings"
)

// Key layout of jobs' objects in the control group's KV. Everything lives
// under "herd/", a prefix the KV API refuses to write (see ReservedPrefix),
// so operators' own keys cannot corrupt job state.
//
// IDC scope (runs are an IDC's own):
//
//	herd/runs/RUN               model.Run (header and counts)
//	herd/run-targets/RUN        []model.Target (the resolved hosts)
//	herd/run-hosts/RUN/HOST     model.HostResult (absent while pending)
//	herd/active-runs/RUN        present while the run is running: the
//	                            watchdog's work list, so it never scans the
//	                            whole history
//
// Global scope (owned by the primary IDC, replicated to the others):
//
//	herd/scripts/NAME           model.Script (versions, online)
//	herd/script-bodies/NAME/VER the body of one version
//	herd/accounts/NAME          model.Account
//	herd/config/default-account the default account's name
//	herd/groups/NAME            model.Group
//	herd/ssh-hosts/NAME         model.SSHHost (with its secrets)
//	herd/ssh-hostkeys/ADDR      the SSH host key recorded on first use
//	herd/files/SHA256           model.File (content store catalog)
//	herd/file-meta/SHA256/NNNN  the file's swarm metainfo, in chunks
//
// and, IDC scope again:
//
//	herd/file-holders/SHA256/NODE  model.FileHolder: a node of the IDC that
//	                               keeps the file from an earlier push
const ReservedPrefix = "herd/"

const (
	prefixRuns         = "herd/runs/"
	prefixRunTargets   = "herd/run-targets/"
	prefixRunHosts     = "herd/run-hosts/"
	prefixActiveRuns   = "herd/active-runs/"
	prefixScripts      = "herd/scripts/"
	prefixScriptBodies = "herd/script-bodies/"
	prefixAccounts     = "herd/accounts/"
	keyDefaultAccount  = "herd/config/default-account"
	prefixGroups       = "herd/groups/"
	prefixSSHHosts     = "herd/ssh-hosts/"
	prefixSSHHostKeys  = "herd/ssh-hostkeys/"
	prefixFiles        = "herd/files/"
	prefixFileMeta     = "herd/file-meta/"
	prefixFileHolders  = "herd/file-holders/"
)

func fileKey(sha string) string             { return prefixFiles + sha }
func fileMetaPrefix(sha string) string      { return prefixFileMeta + sha + "/" }
func fileMetaKey(sha string, i int) string  { return fmt.Sprintf("%s%04d", fileMetaPrefix(sha), i) }
func fileHoldersPrefix(sha string) string   { return prefixFileHolders + sha + "/" }
func fileHolderKey(sha, node string) string { return fileHoldersPrefix(sha) + node }

func runKey(id string) string           { return prefixRuns + id }
func runTargetsKey(id string) string    { return prefixRunTargets + id }
func activeRunKey(id string) string     { return prefixActiveRuns + id }
func runHostsPrefix(id string) string   { return prefixRunHosts + id + "/" }
func runHostKey(id, host string) string { return runHostsPrefix(id) + host }
func scriptKey(name string) string      { return prefixScripts + name }
func scriptBodyKey(name, ver string) string {
	return prefixScriptBodies + name + "/" + ver
}
func accountKey(name string) string { return prefixAccounts + name }
func groupKey(name string) string   { return prefixGroups + name }
func sshHostKey(name string) string { return prefixSSHHosts + name }

// sshHostKeyKey is where the host key of addr ("host:port") is kept; the
// colon is not a key character, so it becomes '_'.
func sshHostKeyKey(addr string) string {
	return prefixSSHHostKeys + strings.NewReplacer(":", "_", "[", "", "]", "").Replace(addr)
}
