#!/usr/bin/env bash
# benches/listings.sh — listings at scale on S3 (moto), side by side with distribution 2.8, in one
# command (issue 15, item 4): writes a store in distribution's layout with REPOS repositories
# (bench/r0000.., one tagged manifest each; benches/gc-store.py gen) and TAGS more tags on
# bench/r0000 (gc-store.py tags), uploads it into one bucket of a fresh moto, starts
# distribution 2.8 (Debian docker-registry) and our release server on that same bucket (both only
# read it: GETs), and times `_catalog?n=100&last=`, `tags/list?n=100&last=` and a manifest GET by
# tag on each (benches/listings.py: one request after another, checked; p50/p99/max).
# Prints a table and writes it to target/listings.md. Goal (issue 15): p99 <= 100 ms for ours.
#
# Usage: benches/listings.sh [--repos N] [--tags N] [--samples N] [--seconds S] [--dist-timeout S]
#   defaults: 10000 repositories, 10000 tags, up to 200 samples or 120 s per request kind; a
#   distribution request over 120 s ends that kind (its catalog lists every folder of the bucket)
# Needs: moto in $EMU_CACHE (tests/e2e/storage-emulators.sh installs it), docker-registry,
# target/release/image-registry (built when missing; IR_BIN overrides).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
EMU_CACHE=${EMU_CACHE:-/var/tmp/image-registry-emulators}
PY=$EMU_CACHE/moto-venv/bin/python
REPOS=10000 TAGS=10000 SAMPLES=200 SECONDS_PER=120 DIST_TIMEOUT=120
while [ $# -gt 0 ]; do
  case "$1" in
  --repos) REPOS=$2; shift 2 ;;
  --tags) TAGS=$2; shift 2 ;;
  --samples) SAMPLES=$2; shift 2 ;;
  --seconds) SECONDS_PER=$2; shift 2 ;;
  --dist-timeout) DIST_TIMEOUT=$2; shift 2 ;;
  *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$EMU_CACHE/moto-venv/bin/moto_server" ] || { echo "moto missing: run tests/e2e/storage-emulators.sh once" >&2; exit 1; }
command -v docker-registry >/dev/null || { echo "docker-registry is not installed" >&2; exit 1; }
IR_BIN=${IR_BIN:-target/release/image-registry}
[ -x "$IR_BIN" ] || cargo build --release -p image-registry
unset AWS_CA_BUNDLE http_proxy https_proxy HTTP_PROXY HTTPS_PROXY || true
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost AWS_EC2_METADATA_DISABLED=true

T=$(mktemp -d "${TMPDIR:-/tmp}/listings.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 150); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; echo "no answer from $1" >&2; return 1; }

port=$(free_port)
"$EMU_CACHE/moto-venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$T/moto.log" 2>&1 &
PIDS+=($!)
EP=http://127.0.0.1:$port
wait_http "$EP/moto-api/"

echo "== store: $REPOS repositories, $TAGS more tags on bench/r0000"
python3 benches/gc-store.py gen "$T/store" "$REPOS" 1 "$REPOS" 0 | tail -1
python3 benches/gc-store.py tags "$T/store" bench/r0000 "$TAGS"
"$PY" benches/gc-store.py upload "$T/store" "$EP" listings | tail -1
OBJECTS=$(find "$T/store" -type f | wc -l)

DPORT=$(free_port) OPORT=$(free_port)
# One config for both (ours accepts distribution's blob descriptor cache key), on port $1.
config_yml() {
  cat <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    bucket: listings
    region: us-east-1
    regionendpoint: $EP
    accesskey: test
    secretkey: test
  redirect:
    disable: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$1
  secret: listings-bench
YML
}
config_yml "$DPORT" >"$T/dist.yml"
config_yml "$OPORT" >"$T/ours.yml"
docker-registry serve "$T/dist.yml" >"$T/dist.log" 2>&1 &
PIDS+=($!)
"$IR_BIN" serve --config "$T/ours.yml" >"$T/ours.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$DPORT/v2/"
wait_http "http://127.0.0.1:$OPORT/v2/"

echo "== the store alone (one ListObjectsV2 window of 100 names)"
STORE=$("$PY" benches/listings.py store "$EP" listings "$REPOS" "$TAGS" 20)
echo "$STORE"
echo "== ours"
OURS=$(python3 benches/listings.py measure "http://127.0.0.1:$OPORT" "$REPOS" "$TAGS" "$SAMPLES" "$SECONDS_PER" 600)
echo "== distribution 2.8 (a request over ${DIST_TIMEOUT}s ends its kind)"
DIST=$(python3 benches/listings.py measure "http://127.0.0.1:$DPORT" "$REPOS" "$TAGS" "$SAMPLES" "$SECONDS_PER" "$DIST_TIMEOUT")

# One table cell: p50 / p99 / max (samples, and what went wrong).
CELL='.[$k] | (if .n > 0 then "\(.p50) / \(.p99) / \(.max) (\(.n)" else "no answer (0" end)
  + (if .errors > 0 then ", \(.errors) wrong" else "" end)
  + (if .whole > 0 then ", \(.whole) unpaged: the whole list" else "" end)
  + (if .timeouts > 0 then ", then one over \(.timeout_s) s" else "" end) + ")"'
OUT=target/listings.md
mkdir -p target
{
  echo "Listings on S3 (moto $("$PY" -c 'import moto; print(moto.__version__)'), one bucket, $OBJECTS objects: $REPOS repositories, bench/r0000 with $((TAGS + 1)) tags), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg); one request at a time on one connection, every answer checked"
  echo
  echo "The store alone, one ListObjectsV2 of 100 names after a random one (p50 / p99 ms, 20 calls): under \`repositories/bench/\` $(jq -r '.catalog | "\(.p50) / \(.p99)"' <<<"$STORE"), under bench/r0000's tags $(jq -r '.tags | "\(.p50) / \(.p99)"' <<<"$STORE"). A page of ours costs one such window (plus a probe for names with \`-\` or \`.\`); moto scans the whole bucket for each."
  echo
  echo "| request | distribution 2.8 p50 / p99 / max ms (n) | ours p50 / p99 / max ms (n) | ours p99 <= 100 ms |"
  echo "|---|---|---|---|"
  for k in catalog tags manifest; do
    case $k in
    catalog) what='`_catalog?n=100&last=<random>`' ;;
    tags) what="\`tags/list?n=100&last=<random>\` ($((TAGS + 1)) tags)" ;;
    manifest) what='manifest GET by tag (random repository)' ;;
    esac
    d=$(jq -r --arg k "$k" "$CELL" <<<"$DIST")
    o=$(jq -r --arg k "$k" "$CELL" <<<"$OURS")
    met=$(jq -r --arg k "$k" '.[$k] | if .timeouts == 0 and .errors == 0 and .whole == 0 and .p99 <= 100 then "met" else "not met" end' <<<"$OURS")
    echo "| $what | $d | $o | $met |"
  done
} | tee "$OUT"
# Wrong answers fail the run (never speed).
[ "$(jq '[.[] | .errors + .whole + .timeouts] | add' <<<"$OURS")" = 0 ] || { echo "ours answered wrongly" >&2; exit 1; }
