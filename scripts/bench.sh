#!/usr/bin/env bash
# Runs the benchmark of issue 15 (as root): namespaces, vsftpd, ftpgate built from this tree,
# routing vs ftpgate in interleaved rounds; writes BENCHMARKS.md at the repository root.
# Flags go to the benchmark: --quick (smoke), --scale (1,000 / 8,000 sessions, pinholes under load), --rounds N,
# --profile DIR (pprof and strace of small-file transfers). See bench/main_linux.go.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench "$@"
