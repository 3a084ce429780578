#!/usr/bin/env bash
# benches/soak.sh — the soak (issue 14, item 5): a bounded run of mixed pushes (monolithic, chunked,
# cross-repository mount, image index), pulls and deletes against the real binary, kill -9 restarts
# every few minutes and online `image-registry gc` runs; at the end every acknowledged manifest and
# blob is fetched and checked and every blob file in the layout hashed. Progress lines every 30 s,
# a summary at the end (see benches/soak.py); exits 1 when a goal is missed. Not in CI.
#
# Usage: benches/soak.sh [--minutes 30] [--workers 4] [--restart-every 180] [--gc-every 120] [--gc-delay 30s] [--max-tracked 2000]
# Env:   TEST_PROFILE=debug|release (default debug; builds it), BENCH_KEEP_TMP=1, SOAK_LOG_LEVEL=info (access log)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PROFILE=${TEST_PROFILE:-debug}
if [ "$PROFILE" = release ]; then cargo build --release -p image-registry; else cargo build -p image-registry; fi
TMP=$(mktemp -d /tmp/soak.XXXXXX)
# Its own copy: a rebuild during the run must not change what the restarts start.
cp "$ROOT/target/$PROFILE/image-registry" "$TMP/image-registry"
BIN=$TMP/image-registry
cleanup() { [ -n "${BENCH_KEEP_TMP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"; }
trap cleanup EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$TMP/config.yml" <<YAML
storage: {filesystem: {rootdirectory: $TMP/data}, delete: {enabled: true}}
http: {addr: "127.0.0.1:$PORT", secret: soak-secret}
log: {level: ${SOAK_LOG_LEVEL:-warn}}
YAML
echo "$PROFILE binary, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), data in $TMP"
set +e
python3 benches/soak.py --bin "$BIN" --config "$TMP/config.yml" --root "$TMP/data" --port "$PORT" --log "$TMP/server.log" "$@"
rc=$?
set -e
echo "server log: $(grep -ciE 'panick' "$TMP/server.log") panics, $(grep -c ' ERROR ' "$TMP/server.log") ERROR lines"
grep -E 'panick| ERROR ' "$TMP/server.log" | head -5 || true
exit $rc
