#!/usr/bin/env bash
# benches/pullthrough.sh — the pull-through cache side by side with CNCF distribution 2.8's proxy
# mode, in one run. The upstream is our server (metrics on, so the bytes it sends are measured the
# same way for both caches); in front of it our cache (`proxy.upstreams`) and distribution 2.8
# (`proxy.remoteurl`), each on a fresh folder. For a blob of SIZE it measures, with curl:
#   direct      the upstream itself (time to first byte, throughput)
#   cold        the first pull through each cache
#   warm        the second pull (a normal local pull)
#   16 cold     16 concurrent first pulls of another blob: wall time, and bytes the upstream sent
# and prints a markdown table (also written to target/pullthrough-bench.md). No assertions: the
# goals (cold >= 90 % of direct, TTFB <= direct + 50 ms, 16 cold = 1x upstream bytes) are read off.
#
# Usage: benches/pullthrough.sh [SIZE]    SIZE for `head -c`, default 1G (e.g. 256M for a quick run)
# Env:   TEST_PROFILE=release|debug (default release; builds it), BENCH_KEEP_TMP=1,
#        BENCH_UPSTREAM_MIBS=N: put the upstream behind benches/throttle.py, a relay that sends at
#        most N MiB/s back (all connections together), as a remote registry's link would; the
#        direct pull and both caches then go through it. Unset: plain loopback.
#        BENCH_UPSTREAM_SHAPE=N: shape what the upstream sends to N MiB/s in the kernel instead
#        (tc htb on lo, matched on the upstream's port; needs root; removed on exit): no relay
#        process on the 2 cores, so the link is the limit rather than the relay's CPU.
#        BENCH_BIN=PATH: our server from PATH instead of building it.
#        BENCH_BASE_BIN=PATH: a second build of ours (say, the commit before a change) as one more
#        cache in the same run, on its own folder: an A/B of the cold pull and the 16 cold pulls.
# Needs: docker-registry (apt-get install -y docker-registry), curl, jq, openssl.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SIZE=${1:-1G}
PROFILE=${TEST_PROFILE:-release}
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
else
  if [ "$PROFILE" = release ]; then cargo build --release -p image-registry; else cargo build -p image-registry; fi
  BIN=$ROOT/target/$PROFILE/image-registry
fi
BASE_BIN=${BENCH_BASE_BIN:-}
command -v docker-registry >/dev/null || { echo "docker-registry is missing" >&2; exit 2; }
TMP=$(mktemp -d /tmp/pullthrough-bench.XXXXXX)
PIDS=()
SHAPED=
cleanup() {
  local p
  [ -n "$SHAPED" ] && tc qdisc del dev lo root 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${BENCH_KEEP_TMP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://$1/v2/" && return 0; sleep 0.1; done; echo "$1 did not start" >&2; exit 1; }
# Only ever run in the background (`clean_env CMD &`): the exec makes $! the server itself, so the
# cleanup stops it (without it the subshell dies and the server lives on).
clean_env() { exec env -u AWS_CA_BUNDLE $(compgen -e | grep '^REGISTRY_' | sed 's/^/-u /') "$@"; }

UP=127.0.0.1:$(free_port)
cat >"$TMP/up.yml" <<YAML
storage: {filesystem: {rootdirectory: $TMP/up}}
http: {addr: "$UP", secret: bench}
metrics: {enabled: true}
log: {level: ${BENCH_UP_LOG:-warn}}
YAML
clean_env "$BIN" serve --config "$TMP/up.yml" >"$TMP/up.log" 2>&1 &
PIDS+=($!)
wait_up "$UP"

# What the caches (and the "direct" pull) reach: the upstream itself, or the throttled relay.
UPSTREAM=$UP
LINK="loopback"
if [ -n "${BENCH_UPSTREAM_MIBS:-}" ]; then
  UPSTREAM=127.0.0.1:$(free_port)
  python3 "$ROOT/benches/throttle.py" "${UPSTREAM#*:}" "$UP" "$BENCH_UPSTREAM_MIBS" >"$TMP/throttle.log" 2>&1 &
  PIDS+=($!)
  wait_up "$UPSTREAM"
  LINK="upstream throttled to $BENCH_UPSTREAM_MIBS MiB/s (benches/throttle.py)"
elif [ -n "${BENCH_UPSTREAM_SHAPE:-}" ]; then
  if tc qdisc show dev lo | grep -qv noqueue; then echo "lo already has a qdisc: not touching it" >&2; exit 2; fi
  bits=$((BENCH_UPSTREAM_SHAPE * 8 * 1048576))
  # Unclassified traffic (everything but the upstream's answers) is not shaped: no default class.
  tc qdisc add dev lo root handle 1: htb
  SHAPED=1
  tc class add dev lo parent 1: classid 1:10 htb rate "${bits}bit" ceil "${bits}bit" burst 4mb cburst 4mb
  tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport "${UP#*:}" 0xffff flowid 1:10
  LINK="upstream shaped to $BENCH_UPSTREAM_SHAPE MiB/s (tc htb on lo)"
fi

OURS=127.0.0.1:$(free_port)
cat >"$TMP/ours.yml" <<YAML
storage: {filesystem: {rootdirectory: $TMP/ours}}
http: {addr: "$OURS", secret: bench}
log: {level: warn}
proxy:
  upstreams:
    - {prefix: up, url: "http://$UPSTREAM", ttl: 1h}
YAML
clean_env "$BIN" serve --config "$TMP/ours.yml" >"$TMP/ours.log" 2>&1 &
PIDS+=($!)
OURS_PID=$!
if [ -n "$BASE_BIN" ]; then
  BASE=127.0.0.1:$(free_port)
  sed -e "s|$TMP/ours|$TMP/base|" -e "s|$OURS|$BASE|" "$TMP/ours.yml" >"$TMP/base.yml"
  clean_env "$BASE_BIN" serve --config "$TMP/base.yml" >"$TMP/base.log" 2>&1 &
  PIDS+=($!)
  BASE_PID=$!
  wait_up "$BASE"
fi
DIST=127.0.0.1:$(free_port)
cat >"$TMP/dist.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $TMP/dist}}
http: {addr: "$DIST", secret: bench}
proxy: {remoteurl: "http://$UPSTREAM"}
YAML
clean_env docker-registry serve "$TMP/dist.yml" >"$TMP/dist.log" 2>&1 &
PIDS+=($!)
DIST_PID=$!
wait_up "$OURS"
wait_up "$DIST"

# push_blob REPO FILE: POST then PUT ?digest= with the whole body streamed from the file (`-T`;
# `--data-binary @FILE` loads the file into curl's memory and fails at 1 GiB); prints the digest,
# and stops the script when the blob is not there afterwards (a failure inside `$(...)` is silent).
push_blob() {
  local d loc
  d=sha256:$(sha256sum "$2" | cut -d' ' -f1)
  loc=$(curl -fsS -X POST -D - -o /dev/null "http://$UP/v2/$1/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case "$loc" in http*) ;; *) loc=http://$UP$loc ;; esac
  curl -fsS -X PUT -H 'content-type: application/octet-stream' -T "$2" -o /dev/null "$loc&digest=$d" >&2
  curl -fsS -I -o /dev/null "http://$UP/v2/$1/blobs/$d" || { echo "push of $2 did not land" >&2; exit 1; }
  echo "$d"
}
echo "making two $SIZE blobs..." >&2
head -c "$SIZE" /dev/urandom >"$TMP/a"
head -c "$SIZE" /dev/urandom >"$TMP/b"
BYTES=$(stat -c %s "$TMP/a")
A=$(push_blob bench/app "$TMP/a") || exit 1
B=$(push_blob bench/app "$TMP/b") || exit 1

up_bytes() { curl -fsS "http://$UP/extensions/v2/metrics" | awk '/^imageregistry_http_response_size_bytes_sum/{printf "%.0f\n", $2}'; }
# pull URL: "ttfb seconds, total seconds"
pull() { curl -fsS -o /dev/null -w '%{time_starttransfer} %{time_total}\n' "$1"; }
# Before each cold pull: write and delete 3 GiB, so the cache's writes land on page-cache memory
# the VM has backed already. On these VMs the first touch of fresh guest memory costs about
# 1.5 s per GiB of kernel time (dd into the page cache: 2.0 s for the first GiB, 0.8 s after),
# and without this the first contender pays it and the second reuses what the first freed.
prewarm() { dd if=/dev/zero of="$TMP/prewarm" bs=1M count=3072 status=none; rm -f "$TMP/prewarm"; sync; }
mibs() { awk -v b="$BYTES" -v t="$1" 'BEGIN{printf "%.0f", b/1048576/t}'; }
ms() { awk -v t="$1" 'BEGIN{printf "%.0f", t*1000}'; }

# CPU seconds (user + system) process PID has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
row() { # NAME "ttfb total" [CPU-s]
  local t=($2)
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$(ms "${t[0]}")" "$(ms "${t[1]}")" "$(mibs "${t[1]}")" "${3:-}"
}
# cold NAME PID URL: a first pull through the cache PID, with the CPU the cache spent on it
# (sampled after the blob is stored too, so the store's share counts).
cold() {
  local c0 t
  prewarm
  c0=$(cpu_s "$2")
  t=$(pull "$3")
  sleep 2
  row "$1" "$t" "$(awk -v a="$c0" -v b="$(cpu_s "$2")" 'BEGIN{printf "%.2f", b-a}')"
}

OUT=$ROOT/target/pullthrough-bench.md
mkdir -p "$ROOT/target"
# concurrent NAME URL: 16 concurrent first pulls; wall time and the upstream's bytes meanwhile.
concurrent() {
  local before start end sent cpids=()
  before=$(up_bytes)
  start=$(date +%s.%N)
  for _ in $(seq 1 16); do
    curl -fsS -o /dev/null "$2" &
    cpids+=($!)
  done
  wait "${cpids[@]}" || echo "a pull failed" >&2
  end=$(date +%s.%N)
  sleep 2 # a cache that copies in the background finishes its upstream reads
  sent=$(($(up_bytes) - before))
  printf '| %s | %s | %s | %s |\n' "$1" "$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.0f", (b-a)*1000}')" \
    "$sent" "$(awk -v s="$sent" -v b="$BYTES" 'BEGIN{printf "%.2f", s/b}')"
}
# Ours first, then distribution, so one's background upstream reads never land in the other's
# window.
{
  echo "Blob of $BYTES bytes; upstream: our server ($PROFILE); one machine, $LINK."
  echo
  echo "| pull | TTFB ms | total ms | MiB/s | cache CPU s |"
  echo "|---|---|---|---|---|"
  row "direct from the upstream" "$(pull "http://$UPSTREAM/v2/bench/app/blobs/$A")"
  # (the blob may still be being stored after the client has it: cold waits 2 s after the pull)
  if [ -n "$BASE_BIN" ]; then
    cold "cold via ours (base: $BASE_BIN)" "$BASE_PID" "http://$BASE/v2/up/bench/app/blobs/$A"
  fi
  cold "cold via ours" "$OURS_PID" "http://$OURS/v2/up/bench/app/blobs/$A"
  row "warm via ours" "$(pull "http://$OURS/v2/up/bench/app/blobs/$A")"
  sleep 2
  cold "cold via distribution 2.8 proxy" "$DIST_PID" "http://$DIST/v2/bench/app/blobs/$A"
  row "warm via distribution 2.8 proxy" "$(pull "http://$DIST/v2/bench/app/blobs/$A")"
  echo
  echo "| 16 concurrent cold pulls | wall ms | upstream bytes sent | x blob |"
  echo "|---|---|---|---|"
  sleep 2
  prewarm
  if [ -n "$BASE_BIN" ]; then
    concurrent "ours (base)" "http://$BASE/v2/up/bench/app/blobs/$B"
    prewarm
  fi
  concurrent ours "http://$OURS/v2/up/bench/app/blobs/$B"
  prewarm
  concurrent "distribution 2.8 proxy" "http://$DIST/v2/bench/app/blobs/$B"
} | tee "$OUT"
