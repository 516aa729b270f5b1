#!/usr/bin/env bash
# make bench: runs herd's benchmarks and writes one report under
# integration/reports/ (the figures quoted in closing notes come from there).
# HERD_BENCH=REGEX runs only the sections whose title matches, e.g.
#   HERD_BENCH='fan-out|file push' make bench
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p integration/reports
report="integration/reports/bench-$(date -u +%Y%m%dT%H%M%SZ).txt"

# section TITLE CMD...: one titled part of the report.
section() {
  local title=$1
  shift
  if [ -n "${HERD_BENCH:-}" ] && ! [[ $title =~ $HERD_BENCH ]]; then return 0; fi
  echo
  echo "## $title"
  "$@"
}
itest() { go test ./integration -run '^$' "$@"; }

{
  echo "# herd benchmarks — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(go version | cut -d' ' -f3)"
  echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)${HERD_BENCH:+, sections matching /$HERD_BENCH/}"
  section "mesh convergence: N in-process nodes on memberlist's MockNetwork, one seed, until all see N alive" \
    go test ./mesh -run '^$' -bench 'BenchmarkConverge$' -benchtime 1x -timeout 30m
  section "failure detection, 20 netns hosts, shipped LAN timings (target <= 6 s, no false positives)" \
    itest -bench 'BenchmarkFailureDetectionNetns' -benchtime 5x -timeout 20m
  section "idle agent over ${HERD_IDLE_SECONDS:-60}s (target <= 40 MB RSS, < 1% of a core)" \
    itest -bench 'BenchmarkIdleAgent' -benchtime 1x -timeout 10m
  section "control group: committed KV writes/s, 3 voters, via the HTTP API (leader's or a follower's)" \
    itest -bench 'BenchmarkKVWrite' -benchtime 3s -timeout 10m
  section "control group: kill -9 of the leader process -> first accepted write (target <= 3 s)" \
    itest -bench 'BenchmarkFailoverProcess' -benchtime 5x -timeout 10m
  section "control group: replication lag of global objects to a second IDC under 8 writers" \
    itest -bench 'BenchmarkReplicationLag' -benchtime 3s -timeout 10m
  section "fan-out: \`hostname\` on 20 netns hosts, herd vs parallel-ssh vs ansible ad-hoc (target: herd <= 0.5 s)" \
    itest -bench 'BenchmarkFanoutNetns' -benchtime 5x -timeout 20m
  section "fan-out: \`hostname\` on 100 and 1,000 in-process agents, one /bin/sh each, via a non-leader (target: <= 2 s at 1,000)" \
    itest -bench 'BenchmarkFanoutInProcess' -benchtime 5x -timeout 60m
  section "file push: 200 MB to 20 netns hosts on 100 Mbit links, herd swarm vs --no-swarm vs parallel-scp, against the fluid bound; 1 GB to 10 hosts; 10 GB prepare (target: swarm <= 1.5x bound, >= 10x faster than central push)" \
    itest -bench 'BenchmarkPushNetns' -benchtime 1x -timeout 30m
  section "node-stream RPC micro-benchmark" \
    go test ./mesh/p2p -run '^$' -bench . -benchmem -timeout 10m
} 2>&1 | tee "$report"
echo "report: $report"
