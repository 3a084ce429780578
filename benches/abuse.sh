#!/usr/bin/env bash
# benches/abuse.sh — bounded memory under abuse (issue 14, item 4), measured on the real binary.
# Starts `image-registry serve` on a fresh folder and runs benches/abuse.py against it: 10,000 idle
# connections, 1,000 concurrent slow uploads, a 100,000-tag repository listed with and without `n`,
# a 4 MiB manifest with 10,000 layers (PUT, GETs), deeply nested JSON, very long names, query
# strings and headers. Per scenario: the server's peak RSS (VmHWM from /proc, reset per scenario)
# and the latency of a normal request (new connection, GET /v2/ + a small manifest GET, every
# 200 ms) throughout. Prints a markdown table; exits 1 when a goal (RSS <= 256 MiB, normal request
# <= 100 ms) is missed. Not a test: figures depend on the machine.
#
# Usage: benches/abuse.sh [--only idle,slow,tags,manifest,nested,long] [--scale 0.1]
# Each group runs against a fresh server (its own peak RSS).
# Env:   TEST_PROFILE=debug|release (default debug; builds it), BENCH_KEEP_TMP=1
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PROFILE=${TEST_PROFILE:-debug}
if [ "$PROFILE" = release ]; then cargo build --release -p image-registry; else cargo build -p image-registry; fi
BIN=$ROOT/target/$PROFILE/image-registry
TMP=$(mktemp -d /tmp/abuse-bench.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  [ -n "${BENCH_KEEP_TMP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
# 10,000 client sockets + 10,000 server sockets in one machine.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# A fresh server per group of scenarios: a peak is the scenario's own, not what an earlier one left
# (freed memory is not always handed back to the OS).
SETS=(idle slow tags manifest nested long)
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --only) IFS=, read -r -a SETS <<<"$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
echo "$PROFILE binary, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
for g in "${SETS[@]}"; do
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$TMP/data"
  cat >"$TMP/config.yml" <<YAML
storage: {filesystem: {rootdirectory: $TMP/data}, delete: {enabled: true}}
http: {addr: "127.0.0.1:$PORT", secret: abuse-bench}
log: {level: warn}
YAML
  env $(compgen -e | grep '^REGISTRY_' | sed 's/^/-u /') "$BIN" serve --config "$TMP/config.yml" >>"$TMP/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done
  python3 benches/abuse.py --addr "127.0.0.1:$PORT" --pid "$PID" --root "$TMP/data" --only "$g" --table "$TMP/table" "${ARGS[@]}" | grep -v '^|' || rc=1
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  kill "$PID"; wait "$PID" 2>/dev/null || true
  PID=
done
echo
echo "| scenario | RSS before | peak RSS | normal request p50 / p99 / max | samples | goal | what the abuse saw |"
echo "|---|---|---|---|---|---|---|"
cat "$TMP/table"
if grep -qiE 'panick|ERROR' "$TMP/server.log"; then echo "server log errors:"; grep -iE 'panick|ERROR' "$TMP/server.log" | head -5; fi
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc
