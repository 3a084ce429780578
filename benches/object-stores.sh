#!/usr/bin/env bash
# benches/object-stores.sh — pushes and pulls on object storage, side by side, in one command
# (issue 15): starts moto (S3) on a free loopback port, then
#   1. the store's own multipart put throughput (boto3, 1 GiB, 16 MiB parts, 4 in flight) and its
#      single-stream GET of that object (curl of a presigned URL);
#   2. `loadgen compare --storage s3=...`: our server and CNCF distribution 2.8 on a fresh bucket
#      each (redirects off for both, so every byte passes the registry; the store reset between
#      scenarios): 1 GiB monolithic push, 256 MiB chunked push (16 MiB PATCHes), 1 GiB pull,
#      32 and 64 concurrent 100 MiB pushes (peak RSS); then, redirects on (the default of both),
#      the 307 of a small blob GET at 64 connections (latency; not followed);
#   3. the S3 requests of ONE 1 GiB monolithic push and ONE 256 MiB chunked push per server
#      (moto's request log, classified by benches/object-stores.py; load-independent);
#   4. Azurite (Azure Blob) and fake-gcs-server (GCS), our server only (distribution 2.8 cannot
#      address either): the emulator's own put of 1 GiB (Azure: Put Block of 16 MiB, 4 in flight,
#      then Put Block List; GCS: one resumable upload in 16 MiB chunks; Azure also chunk by chunk,
#      each 16 MiB committed before the next: the ceiling of a chunked push), then our monolithic
#      and chunked pushes, pull and 32 concurrent 100 MiB pushes, redirects off.
#   BENCH_STORE_DELAY_MS=N (part 4, Azure only): every client, the store's own included, reaches
#      Azurite through `loadgen relay`, which delays each answer by N ms, as a store a few
#      milliseconds away would (a chunked push pays it per round trip of every PATCH).
#   BENCH_AZURITE_DIR: where Azurite's data folder is made (default: the temp folder, on disk). On a
#      machine whose disk is slower than Azurite, tmpfs (/dev/shm/...) measures the emulator's CPU.
# Prints the tables and writes them to target/object-stores.md. Before each server's turn at a
# scenario 3 GiB are written and deleted (BENCH_PREWARM_MIB; 0 turns it off): on these VMs the
# first touch of fresh memory costs ~1.5 s per GiB, which otherwise lands on whoever runs first.
#
# Usage: benches/object-stores.sh [--quick] [--servers distribution,ours] [--profile release|debug]
#   --quick      smaller sizes (256M mono / 64M chunked / 256M pull; 32 x 100M only), for a check run
#   --no-calls   skip part 3;  --calls-only  only part 3;  --no-others  skip part 4
#   --others-only  only part 4
# Needs: moto in $EMU_CACHE (tests/e2e/storage-emulators.sh installs it), docker-registry.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
EMU_CACHE=${EMU_CACHE:-/var/tmp/image-registry-emulators}
PY=$EMU_CACHE/moto-venv/bin/python
PROFILE=release SERVERS=distribution,ours QUICK=0 CALLS=1 TIMED=1 OTHERS=1
while [ $# -gt 0 ]; do
  case "$1" in
  --quick) QUICK=1 ;;
  --servers) SERVERS=$2; shift ;;
  --profile) PROFILE=$2; shift ;;
  --no-calls) CALLS=0 ;;
  --calls-only) TIMED=0 OTHERS=0 ;;
  --no-others) OTHERS=0 ;;
  --others-only) TIMED=0 CALLS=0 ;;
  *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$EMU_CACHE/moto-venv/bin/moto_server" ] || { echo "moto missing: run tests/e2e/storage-emulators.sh once" >&2; exit 1; }
# distribution 2.8.2 panics with AWS_CA_BUNDLE set; loopback only, no proxies.
unset AWS_CA_BUNDLE http_proxy https_proxy HTTP_PROXY HTTPS_PROXY || true
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost AWS_EC2_METADATA_DISABLED=true

if [ "$PROFILE" = release ]; then
  # One package per build: together they unify features differently and rebuild every dependency.
  cargo build --release -p image-registry && cargo build --release -p loadgen
else
  cargo build -p image-registry && cargo build -p loadgen
fi
LG=target/$PROFILE/loadgen
OURS=target/$PROFILE/image-registry
T=$(mktemp -d "${TMPDIR:-/tmp}/object-stores.XXXXXX")
MOTO_PID= OTHER_PIDS= AZ_DIR=
cleanup() {
  for p in $MOTO_PID $OTHER_PIDS; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
  [ -z "$AZ_DIR" ] || rm -rf "$AZ_DIR"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to 30 s for something to listen on 127.0.0.1:$1.
wait_port() { for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.2; done; }
port=$(free_port)
"$EMU_CACHE/moto-venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$T/moto.log" 2>&1 &
MOTO_PID=$!
EP=http://127.0.0.1:$port
for _ in $(seq 100); do curl -fsS -o /dev/null "$EP/moto-api/" 2>/dev/null && break; sleep 0.2; done
OUT=target/object-stores.md
: >"$OUT"
say() { echo "$@" | tee -a "$OUT"; }

if [ "$QUICK" = 1 ]; then
  MONO=256M CHUNKED=64M PULL=256M OWN_MIB=256 CONC_SCEN=push-100M-x32
else
  MONO=1G CHUNKED=256M PULL=1G OWN_MIB=1024 CONC_SCEN=push-100M-x32,push-100M-x64
fi

say "# Object storage (moto $("$PY" -c 'import moto; print(moto.__version__)'), $(date -u +%FT%TZ), load: $(cut -d' ' -f1-3 /proc/loadavg))"
say

if [ "$TIMED" = 1 ]; then
  own=$("$PY" benches/object-stores.py put "$EP" own-put "$OWN_MIB" 16 4)
  own_get=$("$PY" benches/object-stores.py get "$EP" own-put)
  curl -fsS -X POST -o /dev/null "$EP/moto-api/reset"
  say "The store alone (boto3 multipart put of $OWN_MIB MiB, 16 MiB parts, 4 in flight): $(jq -r .mib_s <<<"$own") MiB/s;"
  say "its single-stream GET (curl of a presigned URL): $(jq -r .mib_s <<<"$own_get") MiB/s"
  say
  "$LG" compare --storage "s3=$EP" --servers "$SERVERS" --ours "$OURS" --sizes "$MONO,$CHUNKED" \
    --chunk 16M --scenarios "push-mono-$MONO,push-chunked-$CHUNKED,pull-$PULL,$CONC_SCEN" \
    --workdir "$T" --out "$T/table.md" --prewarm-mib "${BENCH_PREWARM_MIB:-3072}"
  cat "$T/table.md" >>"$OUT"
  say
  say "Redirects on (both servers' default): the 307 of a blob GET at 64 connections, not followed:"
  "$LG" compare --storage "s3-redirect=$EP" --servers "$SERVERS" --ours "$OURS" --conc 64 \
    --duration 10 --scenarios blob-redirect-4K --workdir "$T" --out "$T/redirect.md"
  cat "$T/redirect.md" >>"$OUT"
  own2=$("$PY" benches/object-stores.py put "$EP" own-put2 "$OWN_MIB" 16 4)
  curl -fsS -X POST -o /dev/null "$EP/moto-api/reset"
  say
  say "The store alone again after the runs: $(jq -r .mib_s <<<"$own2") MiB/s"
  say
fi

if [ "$CALLS" = 1 ]; then
  say "S3 requests of one push (moto's request log; start-up calls of the server included):"
  say
  say "| server | push | requests | by call (area: upload = _uploads/, blob = blobs/) |"
  say "|---|---|---:|---|"
  IFS=, read -r -a servers <<<"$SERVERS"
  for s in "${servers[@]}"; do
    for scen in "push-mono-$MONO" "push-chunked-$CHUNKED"; do
      mark=$(wc -l <"$T/moto.log")
      "$LG" compare --storage "s3=$EP" --servers "$s" --ours "$OURS" --sizes "$MONO,$CHUNKED" --chunk 16M \
        --scenarios "$scen" --ops 1 --workdir "$T" >/dev/null 2>"$T/calls.err" || { cat "$T/calls.err" >&2; exit 1; }
      c=$("$PY" benches/object-stores.py calls "$T/moto.log" "$mark")
      say "| $s | $scen | $(jq .total <<<"$c") | $(jq -r '.by_call|to_entries|map("\(.key) \(.value)")|join(", ")' <<<"$c") |"
    done
  done
fi
if [ "$OTHERS" = 1 ]; then
  [ -x "$EMU_CACHE/azurite/node_modules/.bin/azurite-blob" ] || { echo "azurite missing: run tests/e2e/storage-emulators.sh once" >&2; exit 1; }
  FAKE_GCS=$(find "$EMU_CACHE/gcs-venv" -type f -name 'fake-gcs-server-linux-*' 2>/dev/null | head -n1)
  [ -n "$FAKE_GCS" ] || { echo "fake-gcs-server missing: run tests/e2e/storage-emulators.sh once" >&2; exit 1; }
  az_port=$(free_port) gcs_port=$(free_port)
  AZ_DIR=$T/azurite
  [ -z "${BENCH_AZURITE_DIR:-}" ] || AZ_DIR=$(mktemp -d "$BENCH_AZURITE_DIR/azurite.XXXXXX")
  mkdir -p "$AZ_DIR"
  "$EMU_CACHE/azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$az_port" \
    --location "$AZ_DIR" --skipApiVersionCheck --disableTelemetry --loose >"$T/azurite.log" 2>&1 &
  OTHER_PIDS="$OTHER_PIDS $!"
  "$FAKE_GCS" -scheme http -host 127.0.0.1 -port "$gcs_port" -backend memory \
    -public-host "127.0.0.1:$gcs_port" -external-url "http://127.0.0.1:$gcs_port" -log-level warn >"$T/gcs.log" 2>&1 &
  OTHER_PIDS="$OTHER_PIDS $!"
  wait_port "$az_port"
  wait_port "$gcs_port"
  AZ_EP=http://127.0.0.1:$az_port/devstoreaccount1 GCS_EP=http://127.0.0.1:$gcs_port
  DELAY=${BENCH_STORE_DELAY_MS:-0}
  if [ "$DELAY" != 0 ]; then
    relay_port=$(free_port)
    "$LG" relay --listen "$relay_port" --target "127.0.0.1:$az_port" --delay-ms "$DELAY" >"$T/relay.log" 2>&1 &
    OTHER_PIDS="$OTHER_PIDS $!"
    wait_port "$relay_port"
    AZ_EP=http://127.0.0.1:$relay_port/devstoreaccount1
  fi
  OTHER_CONC=push-100M-x32
  for store in azure gcs; do
    if [ $store = azure ]; then
      ep=$AZ_EP name="Azurite $(jq -r .version "$EMU_CACHE/azurite/node_modules/azurite/package.json" 2>/dev/null)"
      [ "$DELAY" = 0 ] || name="$name, answers delayed $DELAY ms (loadgen relay)"
      own=$(python3 benches/object-stores.py az-put "$ep" own-put "$OWN_MIB" 16 4)
      how="Put Block of 16 MiB, 4 in flight, Put Block List"
      # The ceiling of a chunked push: 16 MiB chunks, each committed before the next is sent.
      serial=$(python3 benches/object-stores.py az-append "$ep" own-put "${CHUNKED%M}" 16 10 3)
    else
      ep=$GCS_EP name="fake-gcs-server (${FAKE_GCS##*/}, memory backend)"
      own=$(python3 benches/object-stores.py gcs-put "$ep" own-put "$OWN_MIB" 16)
      how="one resumable upload, 16 MiB chunks"
    fi
    say "## $name (ours only; distribution 2.8 cannot address it)"
    say
    say "The store alone ($how, $OWN_MIB MiB): $(jq -r .mib_s <<<"$own") MiB/s"
    say
    [ $store != azure ] || {
      say "The store alone chunk by chunk (${CHUNKED%M} MiB in 16 MiB chunks, each Put Block (10 MiB, 3 in flight) + Put Block List of all so far before the next, as a PATCH's 202 needs): $(jq -r .mib_s <<<"$serial") MiB/s"
      say
    }
    "$LG" compare --storage "$store=$ep" --servers ours --ours "$OURS" --sizes "$MONO,$CHUNKED" \
      --chunk 16M --scenarios "push-mono-$MONO,push-chunked-$CHUNKED,pull-$PULL,$OTHER_CONC" \
      --workdir "$T" --out "$T/$store.md" --prewarm-mib "${BENCH_PREWARM_MIB:-3072}"
    cat "$T/$store.md" >>"$OUT"
    # Azurite slows as it fills (its own put 320-359 MiB/s fresh, ~180 after ~7 GiB on
    # 2026-12-06): its put again, after ours, says which state our figures met.
    [ $store != azure ] || {
      after=$(python3 benches/object-stores.py az-put "$ep" own-put-after "$OWN_MIB" 16 4)
      say
      say "The store alone again, after our scenarios: $(jq -r .mib_s <<<"$after") MiB/s"
    }
    say
  done
fi
echo "written to $OUT" >&2
