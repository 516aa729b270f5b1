#!/usr/bin/env bash
# make bench: runs herd's benchmarks and writes one report under
# integration/reports/ (the figures quoted in closing notes come from there).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p integration/reports
report="integration/reports/bench-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# herd benchmarks — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(go version | cut -d' ' -f3)"
  echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  echo
  echo "## mesh convergence: N in-process nodes on memberlist's MockNetwork, one seed, until all see N alive"
  go test ./mesh -run '^$' -bench 'BenchmarkConverge$' -benchtime 1x -timeout 30m
  echo
  echo "## failure detection, 20 netns hosts, shipped LAN timings (target <= 6 s, no false positives)"
  go test ./integration -run '^$' -bench 'BenchmarkFailureDetectionNetns' -benchtime 5x -timeout 20m
  echo
  echo "## idle agent over ${HERD_IDLE_SECONDS:-60}s (target <= 40 MB RSS, < 1% of a core)"
  go test ./integration -run '^$' -bench 'BenchmarkIdleAgent' -benchtime 1x -timeout 10m
  echo
  echo "## control group: committed KV writes/s, 3 voters, via the HTTP API (leader's or a follower's)"
  go test ./integration -run '^$' -bench 'BenchmarkKVWrite' -benchtime 3s -timeout 10m
  echo
  echo "## control group: kill -9 of the leader process -> first accepted write (target <= 3 s)"
  go test ./integration -run '^$' -bench 'BenchmarkFailoverProcess' -benchtime 5x -timeout 10m
  echo
  echo "## control group: replication lag of global objects to a second IDC under 8 writers"
  go test ./integration -run '^$' -bench 'BenchmarkReplicationLag' -benchtime 3s -timeout 10m
  echo
  echo "## fan-out: \`hostname\` on 20 netns hosts, herd vs parallel-ssh vs ansible ad-hoc (target: herd <= 0.5 s)"
  go test ./integration -run '^$' -bench 'BenchmarkFanoutNetns' -benchtime 5x -timeout 20m
  echo
  echo "## fan-out: \`hostname\` on 100 and 1,000 in-process agents, one /bin/sh each, via a non-leader (target: <= 2 s at 1,000; the 1,000-node start takes minutes)"
  go test ./integration -run '^$' -bench 'BenchmarkFanoutInProcess' -benchtime 3x -timeout 60m
  echo
  echo "## file push: 200 MB to 20 netns hosts on 100 Mbit links, herd swarm vs --no-swarm vs parallel-scp, against the fluid bound; 1 GB to 10 hosts; 10 GB prepare (target: swarm <= 1.5x bound, >= 10x faster than central push)"
  go test ./integration -run '^$' -bench 'BenchmarkPushNetns' -benchtime 1x -timeout 30m
  echo
  echo "## node-stream RPC micro-benchmark"
  go test ./mesh/p2p -run '^$' -bench . -benchmem -timeout 10m
} 2>&1 | tee "$report"
echo "report: $report"
