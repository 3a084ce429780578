#!/usr/bin/env bash
# benches/gc.sh — garbage collection side by side: our `image-registry gc` vs CNCF distribution
# 2.8's `docker-registry garbage-collect` (Debian) on the same generated store, in one run.
#
#   1. generates a store in distribution's layout (benches/gc-store.py: MANIFESTS schema2
#      manifests, each with its own config and LAYERS layers, GARBAGE % of them untagged), with
#      progress lines;
#   2. filesystem: hard-linked copies per contender; dry runs (`--dry-run --delete-untagged`, ours
#      with `--delay 0s`), the deletion lists compared, then real runs; wall time and peak RSS
#      (/usr/bin/time -v) of each;
#   3. push throughput of our server on the same store: monolithic blob pushes for PUSH_SECONDS
#      without GC, then while our real `gc --delete-untagged` (default delay 1h: the aged garbage
#      goes, the fresh pushes stay) runs — repeated back to back for PUSH_SECONDS;
#   4. S3 on moto (S3_MANIFESTS, smaller: every object is uploaded through moto, twice): the same
#      dry and real runs, plus the storage calls each makes (moto's request log), per manifest and
#      per blob.
# Prints a markdown table (also written to target/gc-bench.md). Fails (exit 1) when the dry runs
# list different deletions, the real runs leave different blobs, a pushed blob is lost or a push
# fails while gc runs (never on speed). `--manifests 100 --no-s3 --push-seconds 2` is the smoke
# of scripts/test-all's bench-smoke phase.
#
# Usage: benches/gc.sh [--manifests N] [--layers L] [--repos R] [--garbage PCT]
#                      [--s3-manifests N] [--push-seconds S] [--no-s3] [--no-push]
# Defaults: 20000 manifests x (3 layers + config + manifest) = 100,000 blobs, 200 repositories,
# 30 % garbage; S3: 2000 manifests; pushes 20 s.
# Environment: IR_BIN (default target/release/image-registry, built with
# `cargo build --release --bin image-registry` when missing), BENCH_TMP (a scratch folder, default
# target/gc-bench), EMU_CACHE (moto, as tests/e2e/storage-emulators.sh installs it).
# Needs: docker-registry (apt-get install -y docker-registry), jq, /usr/bin/time, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MANIFESTS=20000 LAYERS=3 REPOS=200 GARBAGE=30 S3_MANIFESTS=2000 PUSH_SECONDS=20 DO_S3=1 DO_PUSH=1
while [ $# -gt 0 ]; do
  case "$1" in
  --manifests) MANIFESTS=$2; shift 2 ;;
  --layers) LAYERS=$2; shift 2 ;;
  --repos) REPOS=$2; shift 2 ;;
  --garbage) GARBAGE=$2; shift 2 ;;
  --s3-manifests) S3_MANIFESTS=$2; shift 2 ;;
  --push-seconds) PUSH_SECONDS=$2; shift 2 ;;
  --no-s3) DO_S3=0; shift ;;
  --no-push) DO_PUSH=0; shift ;;
  *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
IR_BIN=${IR_BIN:-$ROOT/target/release/image-registry}
if [ ! -x "$IR_BIN" ]; then
  cargo build --release --bin image-registry
fi
command -v docker-registry >/dev/null || { echo "docker-registry is not installed" >&2; exit 1; }
EMU_CACHE=${EMU_CACHE:-/var/tmp/image-registry-emulators}
T=${BENCH_TMP:-$ROOT/target/gc-bench}
rm -rf "$T"
mkdir -p "$T"
OUT=$ROOT/target/gc-bench.md
PIDS=()
FAILED=0
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
# distribution 2.8.2 panics at start with AWS_CA_BUNDLE set; loopback only, no proxies.
unset AWS_CA_BUNDLE http_proxy https_proxy HTTP_PROXY HTTPS_PROXY || true
export NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 AWS_EC2_METADATA_DISABLED=true

log() { echo "gc-bench: $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  local i
  for i in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
ROWS=()
# timed NAME CMD...: runs CMD under /usr/bin/time -v (stdout to $T/NAME.out); records wall seconds
# and peak RSS (MiB) in TIME_S / RSS_MIB.
timed() {
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$T/$name.time" "$@" >"$T/$name.out" 2>"$T/$name.err" || {
    log "$name failed:"; tail -n 20 "$T/$name.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  TIME_S=$(echo "$t1 - $t0" | bc -l | xargs printf '%.2f')
  RSS_MIB=$(awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$T/$name.time")
  log "$name: ${TIME_S}s, peak RSS ${RSS_MIB} MiB"
}
dist_counts() { # FILE -> "manifests blobs" distribution listed
  echo "$(grep -o 'manifest eligible for deletion: sha256:[0-9a-f]*' "$1" | sort -u | wc -l) \
$(grep -o 'blob eligible for deletion: sha256:[0-9a-f]*' "$1" | sort -u | wc -l)"
}
ours_counts() { # JSON summary -> "manifests blobs"
  echo "$(jq '[.deletions[] | select(.kind=="manifest") | .digest] | unique | length' "$1") \
$(jq '[.deletions[] | select(.kind=="blob") | .digest] | unique | length' "$1")"
}
same_lists() { # DIST_OUT OURS_JSON: the deletion lists agree
  diff <(grep -o 'eligible for deletion: sha256:[0-9a-f]*' "$1" | awk '{print $NF}' | sort -u) \
    <(jq -r '.deletions[] | select(.kind=="manifest" or .kind=="blob") | .digest' "$2" | sort -u) >/dev/null
}
dist_config() { # FILE STORAGE_YAML
  cat >"$1" <<EOF
version: 0.1
log:
  level: info
storage:
$2
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
EOF
}
ours_config() { # FILE STORAGE_YAML [HTTP_ADDR]
  cat >"$1" <<EOF
version: 0.1
log:
  level: warn
storage:
$2
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${3:-127.0.0.1:0}
  secret: gc-bench
EOF
}

# side_by_side LABEL DIST_STORAGE_YAML_A OURS_STORAGE_YAML_B: dry and real runs; A and B hold
# identical copies of the store (A for distribution, B for us).
side_by_side() {
  local label=$1 ya=$2 yb=$3
  dist_config "$T/$label-dist.yml" "$ya"
  ours_config "$T/$label-ours.yml" "$yb"
  local dm db om ob
  mark_calls
  timed "$label-dist-dry" docker-registry garbage-collect --dry-run --delete-untagged "$T/$label-dist.yml"
  local dist_dry=$TIME_S dist_dry_rss=$RSS_MIB dist_dry_calls; dist_dry_calls=$(calls_since)
  cat "$T/$label-dist-dry.out" "$T/$label-dist-dry.err" >"$T/$label-dist-dry.all"
  read -r dm db < <(dist_counts "$T/$label-dist-dry.all")
  mark_calls
  timed "$label-ours-dry" "$IR_BIN" gc --config "$T/$label-ours.yml" --dry-run --delete-untagged --delay 0s --json
  local ours_dry=$TIME_S ours_dry_rss=$RSS_MIB ours_dry_calls; ours_dry_calls=$(calls_since)
  read -r om ob < <(ours_counts "$T/$label-ours-dry.out")
  local agree=no
  same_lists "$T/$label-dist-dry.all" "$T/$label-ours-dry.out" && agree=yes
  log "$label dry runs: distribution lists $dm manifests, $db blobs; ours $om, $ob; same lists: $agree"
  [ "$agree" = yes ] || { log "FAIL: the dry runs list different deletions"; FAILED=1; }
  mark_calls
  timed "$label-dist-real" docker-registry garbage-collect --delete-untagged "$T/$label-dist.yml"
  local dist_real=$TIME_S dist_real_rss=$RSS_MIB dist_real_calls; dist_real_calls=$(calls_since)
  LAST_DIST_REAL_KINDS=$(call_kinds)
  mark_calls
  timed "$label-ours-real" "$IR_BIN" gc --config "$T/$label-ours.yml" --delete-untagged --delay 0s --json
  local ours_real=$TIME_S ours_real_rss=$RSS_MIB ours_real_calls; ours_real_calls=$(calls_since)
  LAST_OURS_REAL_KINDS=$(call_kinds)
  # The real run's fixed safety waits (lease settle, tombstone grace = linkTTL + 2 s): shown
  # beside the time, and the speed-up of the work without them.
  local waited
  waited=$(jq -r '.waited_seconds // 0' "$T/$label-ours-real.out" 2>/dev/null || echo 0)
  local work; work=$(echo "$ours_real - $waited" | bc -l | xargs printf '%.2f')
  ROWS+=("| $label | dry run | $dist_dry s | $ours_dry s | $(ratio "$dist_dry" "$ours_dry") | $dist_dry_rss | $ours_dry_rss | $dm / $db | $om / $ob ($agree) | $dist_dry_calls | $ours_dry_calls |")
  ROWS+=("| $label | real | $dist_real s | $ours_real s (${waited} s safety waits; work $work s: $(ratio "$dist_real" "$work")) | $(ratio "$dist_real" "$ours_real") | $dist_real_rss | $ours_real_rss | | | $dist_real_calls | $ours_real_calls |")
  LAST_OURS_REAL_CALLS=$ours_real_calls LAST_OURS_DRY_CALLS=$ours_dry_calls
}
ratio() { if [ "$(echo "$2 <= 0" | bc -l)" = 1 ]; then echo "-"; else echo "$1 / $2" | bc -l | xargs printf "%.1f×"; fi; }
# Storage calls: moto's request log lines (S3 only; "-" on the filesystem).
MOTO_LOG=
mark_calls() { CALL_MARK=$([ -n "$MOTO_LOG" ] && wc -l <"$MOTO_LOG" || echo 0); }
calls_since() {
  if [ -n "$MOTO_LOG" ]; then
    echo $(($(grep -c '" [0-9][0-9][0-9] ' "$MOTO_LOG") - $(head -n "$CALL_MARK" "$MOTO_LOG" | grep -c '" [0-9][0-9][0-9] ')))
  else echo "-"; fi
}
# call_kinds: the requests since mark_calls by kind (LIST = GET with a listing query, DeleteObjects
# = POST ?delete; PUT includes server-side copies, which moto's log does not tell apart).
call_kinds() {
  [ -n "$MOTO_LOG" ] || { echo "-"; return; }
  tail -n +"$((CALL_MARK + 1))" "$MOTO_LOG" | grep '" [0-9][0-9][0-9] ' | sed 's/\x1b\[[0-9;]*m//g' | awk '{
    m = $6; gsub(/"/, "", m); u = $7; k = m
    if (m == "GET" && u ~ /[?&](list-type|prefix|delimiter)=/) k = "LIST"
    else if (m == "POST" && u ~ /[?&]delete/) k = "DeleteObjects"
    else if (m == "GET" && u ~ /[?&]uploads/) k = "ListMultipartUploads"
    c[k]++
  } END { n = 0; for (k in c) { printf "%s%s %d", (n++ ? ", " : ""), k, c[k] } }'
}

# ---- 1. the store
log "generating $MANIFESTS manifests x ($LAYERS layers + config + manifest), $GARBAGE % untagged"
python3 benches/gc-store.py gen "$T/store" "$MANIFESTS" "$LAYERS" "$REPOS" "$GARBAGE" | tee "$T/gen.out" >&2
SUMMARY=$(tail -n 1 "$T/gen.out")

# ---- 2. filesystem
log "filesystem: hard-linked copies"
cp -al "$T/store" "$T/fs-dist"
cp -al "$T/store" "$T/fs-ours"
side_by_side filesystem "  filesystem:
    rootdirectory: $T/fs-dist" "  filesystem:
    rootdirectory: $T/fs-ours"
left_dist=$(find "$T/fs-dist/docker/registry/v2/blobs" -name data | wc -l)
left_ours=$(find "$T/fs-ours/docker/registry/v2/blobs" -name data | wc -l)
log "filesystem: blobs left: distribution $left_dist, ours $left_ours"
[ "$left_dist" = "$left_ours" ] || { log "FAIL: the real runs left different blobs"; FAILED=1; }

# ---- 3. pushes while our gc runs
PUSH_ROW=
if [ "$DO_PUSH" = 1 ]; then
  cp -al "$T/store" "$T/fs-push"
  port=$(free_port)
  ours_config "$T/push.yml" "  filesystem:
    rootdirectory: $T/fs-push" "127.0.0.1:$port"
  "$IR_BIN" serve --config "$T/push.yml" >"$T/push-server.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port" || { log "our server did not start"; exit 1; }
  log "pushes without gc ($PUSH_SECONDS s)"
  python3 benches/gc-store.py push "http://127.0.0.1:$port" "$PUSH_SECONDS" 8 >"$T/push-base.json"
  log "pushes while gc runs ($PUSH_SECONDS s)"
  (
    end=$((SECONDS + PUSH_SECONDS))
    runs=0
    while [ $SECONDS -lt $end ]; do
      "$IR_BIN" gc --config "$T/push.yml" --delete-untagged --json >"$T/push-gc-$runs.json" 2>>"$T/push-gc.err" || exit 1
      runs=$((runs + 1))
    done
    echo "$runs" >"$T/push-gc-runs"
  ) &
  gcpid=$!
  python3 benches/gc-store.py push "http://127.0.0.1:$port" "$PUSH_SECONDS" 8 >"$T/push-gc.json"
  wait "$gcpid" || { log "gc during pushes failed"; tail "$T/push-gc.err" >&2; exit 1; }
  base=$(jq .per_second "$T/push-base.json") during=$(jq .per_second "$T/push-gc.json")
  errs=$(jq '.errors' "$T/push-gc.json")
  deleted=$(jq -s '[.[].deletions | length] | add' "$T"/push-gc-*.json)
  loss=$(echo "100 * (1 - $during / $base)" | bc -l | xargs printf '%.1f')
  PUSH_ROW="Pushes (8 threads, 4 KiB blobs, monolithic): $base/s without gc, $during/s while $(cat "$T/push-gc-runs") real gc run(s) (deletions listed: $deleted): $loss % lost; $errs failed pushes."
  log "$PUSH_ROW"
  # Every blob the pushers were told is stored is still there.
  python3 - "$T/fs-push" <<'EOF'
import os, sys
root = os.path.join(sys.argv[1], "docker/registry/v2/repositories/bench")
n = 0
for d in os.listdir(root):
    if d.startswith("push"):
        layers = os.path.join(root, d, "_layers/sha256")
        for h in os.listdir(layers):
            data = os.path.join(sys.argv[1], "docker/registry/v2/blobs/sha256", h[:2], h, "data")
            assert os.path.exists(data), f"pushed blob {h} lost"
            n += 1
print(f"gc-bench: {n} pushed blobs all present after the gc runs", file=sys.stderr)
EOF
  [ "$errs" = 0 ] || { log "FAIL: $errs pushes failed while gc ran"; FAILED=1; }
fi

# ---- 4. S3 on moto
CALL_ROW=
if [ "$DO_S3" = 1 ]; then
  [ -x "$EMU_CACHE/moto-venv/bin/moto_server" ] || { log "moto missing: run tests/e2e/storage-emulators.sh once"; exit 1; }
  rm -rf "$T/store"
  log "S3: generating $S3_MANIFESTS manifests"
  python3 benches/gc-store.py gen "$T/store" "$S3_MANIFESTS" "$LAYERS" "$REPOS" "$GARBAGE" | tee "$T/gen-s3.out" >&2
  port=$(free_port)
  MOTO_LOG=$T/moto.log
  "$EMU_CACHE/moto-venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$MOTO_LOG" 2>&1 &
  PIDS+=($!)
  wait_port "$port" || { log "moto did not start"; exit 1; }
  "$EMU_CACHE/moto-venv/bin/python" benches/gc-store.py upload "$T/store" "http://127.0.0.1:$port" gc-dist gc-ours >&2
  s3() { echo "  s3:
    bucket: $1
    region: us-east-1
    regionendpoint: http://127.0.0.1:$port
    accesskey: test
    secretkey: test"; }
  side_by_side "S3 (moto)" "$(s3 gc-dist)" "$(s3 gc-ours)"
  m=$(jq .manifests <(tail -n 1 "$T/gen-s3.out")) b=$(jq .blobs <(tail -n 1 "$T/gen-s3.out"))
  CALL_ROW="S3 calls of our runs on $m manifests / $b blobs (moto's request log): dry run $LAST_OURS_DRY_CALLS ($(echo "$LAST_OURS_DRY_CALLS / $m" | bc -l | xargs printf '%.2f') per manifest, $(echo "$LAST_OURS_DRY_CALLS / $b" | bc -l | xargs printf '%.2f') per blob), real run $LAST_OURS_REAL_CALLS ($LAST_OURS_REAL_KINDS; distribution's real run: $LAST_DIST_REAL_KINDS)."
  log "$CALL_ROW"
fi

{
  echo "GC bench: $SUMMARY (filesystem$([ "$DO_S3" = 1 ] && echo "; S3: $S3_MANIFESTS manifests"))"
  echo
  echo "| store | run | distribution | ours | speed-up | dist. RSS MiB | our RSS MiB | dist. lists (manifests / blobs) | ours lists (same) | dist. S3 calls | our S3 calls |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  [ -z "$PUSH_ROW" ] || echo "$PUSH_ROW"
  [ -z "$CALL_ROW" ] || echo "$CALL_ROW"
  echo "Filesystem blobs left after the real runs: distribution $left_dist, ours $left_ours."
} | tee "$OUT"
exit "$FAILED"
