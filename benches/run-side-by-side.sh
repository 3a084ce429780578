#!/usr/bin/env bash
# benches/run-side-by-side.sh — the side-by-side benchmark in one command:
# builds our server and the load generator (release), then `loadgen compare` starts image-registry
# and CNCF distribution 2.8 (Debian `docker-registry`) on fresh folders of the same filesystem and
# prints a markdown table with ratios (also written to target/side-by-side.md).
#
# Usage: benches/run-side-by-side.sh [loadgen compare options...]
#   e.g. --sizes 1M,10M --duration 2          a shorter run
#        --wait-load 1.0                       wait for a quiet machine first (shared CPUs)
#        --servers ours                        only our server (no docker-registry needed)
# Needs: docker-registry (apt-get install -y docker-registry) unless --servers ours.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
cargo build --release -p image-registry && cargo build --release -p loadgen # one each: together they rebuild the deps
# Before each server's turn at a scenario, 3 GiB are written and deleted (BENCH_PREWARM_MIB; 0
# turns it off): on these VMs the first touch of fresh memory costs ~1.5 s per GiB, which would
# otherwise land on whichever server runs first.
exec target/release/loadgen compare --out target/side-by-side.md --prewarm-mib "${BENCH_PREWARM_MIB:-3072}" "$@"
