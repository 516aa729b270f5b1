#!/usr/bin/env bash
# Installs the Debian packages that herd's tests and benchmarks use, when missing.
# Without root nothing is installed: the netns tests then skip with a printed reason.
# The SSH peers (openssh-server, pssh, ansible) are best effort: offline, the SSH
# tests skip and the fan-out benchmark's columns for them say "not installed".
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
peers=()
[ -x /usr/sbin/sshd ] || peers+=(openssh-server)
command -v parallel-ssh >/dev/null 2>&1 || [ -x /usr/bin/parallel-ssh ] || peers+=(pssh)
command -v ansible >/dev/null 2>&1 || peers+=(ansible)
if [ "${#need[@]}" -eq 0 ] && [ "${#peers[@]}" -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: not root; missing ${need[*]} ${peers[*]} (netns and SSH tests will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  updated=1
fi
if [ "${#peers[@]}" -gt 0 ]; then
  if { [ -n "${updated:-}" ] || timeout 180 apt-get update -qq >/dev/null 2>&1; } &&
    timeout 600 apt-get install -y -qq --no-install-recommends "${peers[@]}" >/dev/null 2>&1; then
    :
  else
    echo "install-deps: could not install ${peers[*]} (offline?); SSH tests skip, the fan-out benchmark says \"not installed\"" >&2
  fi
fi
