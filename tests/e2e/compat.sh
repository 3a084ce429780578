#!/usr/bin/env bash
# tests/e2e/compat.sh — storage-layout compatibility with CNCF distribution 2.8 (Debian's
# docker-registry), both ways, on a filesystem root:
#   1. distribution writes a repository; ours serves the same folder (and writes a tag distribution
#      then serves);
#   2. ours writes a repository; distribution serves it, and its offline garbage collector reads it;
#   3. a chunked upload handed from one process of ours to another (same folder, same http secret),
#      with a process holding another secret refused in between.
#
#   tests/e2e/compat.sh                          # ours against distribution
#   E2E_SERVER=distribution tests/e2e/compat.sh  # distribution on both sides, to check the script
#
# Prints PASS/FAIL per check and closes with "compat: N passed, M failed"; exits non-zero on failure.
# shellcheck disable=SC2317 # functions called through `step` look unreachable to shellcheck
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
ctr_sandbox_init

section "images: OCI layout written by hand"
L=$E2E_TMP/layout
oci_make_image "$L" v1 amd64 compat 2 128
V1_DIGEST=$OCI_MANIFEST_DIGEST V1_CONFIG=$OCI_CONFIG_DIGEST V1_LAYERS=("${OCI_LAYER_DIGESTS[@]}")
oci_make_image "$L" v2 amd64 compat-v2 1 32
V2_DIGEST=$OCI_MANIFEST_DIGEST
oci_make_image "$L" v3 amd64 compat-v3 1 32
V3_DIGEST=$OCI_MANIFEST_DIGEST V3_CONFIG=$OCI_CONFIG_DIGEST V3_LAYERS=("${OCI_LAYER_DIGESTS[@]}")
oci_make_multiarch "$L" multi compat-multi amd64 arm64
MULTI_DIGEST=$OCI_INDEX_DIGEST MULTI_CHILDREN=("${OCI_CHILD_DIGESTS[@]}")
log "v1 $V1_DIGEST, v2 $V2_DIGEST, v3 $V3_DIGEST, multi $MULTI_DIGEST"

# push_set NAME: push ns/app:v1, ns/app:v2 and ns/multi:v1 (all platforms) to a running server.
push_set() {
  local a
  a=$(server_addr "$1")
  ctr_insecure "$a"
  step "[$1] push ns/app:v1" ctr skopeo copy --dest-tls-verify=false "oci:$L:v1" "docker://$a/ns/app:v1"
  step "[$1] push ns/app:v2" ctr skopeo copy --dest-tls-verify=false "oci:$L:v2" "docker://$a/ns/app:v2"
  step "[$1] push ns/multi:v1 (--all)" \
    ctr skopeo copy --all --dest-tls-verify=false "oci:$L:multi" "docker://$a/ns/multi:v1"
}

# verify_set NAME: the server serves what push_set pushed: digests, tags, catalog, blobs, a copy out.
verify_set() {
  local n=$1 a u out
  a=$(server_addr "$n")
  u=$(server_url "$n")
  ctr_insecure "$a"
  assert_eq "[$n] ns/app:v1 digest" "$V1_DIGEST" "$(registry_digest "$a" ns/app v1)"
  assert_eq "[$n] ns/app:v2 digest" "$V2_DIGEST" "$(registry_digest "$a" ns/app v2)"
  assert_eq "[$n] ns/multi:v1 index digest" "$MULTI_DIGEST" "$(registry_digest "$a" ns/multi v1)"
  assert_eq "[$n] ns/multi arm64 child by digest" "${MULTI_CHILDREN[1]}" \
    "$(registry_digest "$a" ns/multi "${MULTI_CHILDREN[1]}")"
  if step "[$n] skopeo list-tags ns/app" ctr skopeo list-tags --tls-verify=false "docker://$a/ns/app"; then
    assert_eq "[$n] tags of ns/app" "v1 v2" "$(jq -r '.Tags | sort | join(" ")' "$STEP_OUT")"
  fi
  if assert_http "[$n] GET /v2/_catalog" 200 "$u/v2/_catalog"; then
    assert_eq "[$n] catalog" "ns/app ns/multi" "$(jq -r '.repositories | sort | join(" ")' "$HTTP_BODY")"
  fi
  assert_eq "[$n] GET layer blob content" "${V1_LAYERS[0]}" "$(blob_sha256 "$u/v2/ns/app/blobs/${V1_LAYERS[0]}")"
  if assert_http "[$n] HEAD config blob" 200 -I "$u/v2/ns/app/blobs/$V1_CONFIG"; then
    assert_eq "[$n] HEAD config blob Content-Length" "$(size_of "$(oci_blob "$L" "$V1_CONFIG")")" \
      "$(http_header Content-Length)"
  fi
  out=$E2E_TMP/out-$n
  if step "[$n] skopeo copy ns/app:v1 -> oci" \
    ctr skopeo copy --src-tls-verify=false "docker://$a/ns/app:v1" "oci:$out:v1"; then
    assert_eq "[$n] copied-out manifest digest" "$V1_DIGEST" "$(oci_ref "$out" v1)"
    assert_eq "[$n] copied-out layer digests" "${V1_LAYERS[*]}" \
      "$(oci_layer_digests "$out" "$(oci_ref "$out" v1)" | xargs)"
  fi
  if step "[$n] skopeo copy --all ns/multi:v1 -> oci" \
    ctr skopeo copy --all --src-tls-verify=false "docker://$a/ns/multi:v1" "oci:$out:multi"; then
    assert_eq "[$n] copied-out index digest" "$MULTI_DIGEST" "$(oci_ref "$out" multi)"
  fi
}

# check_tree DATA REPO TAG DIGEST CONFIG LAYER...: the files distribution's layout has for a tagged
# image (docker/registry/v2/...).
check_tree() {
  local root=$1/docker/registry/v2 repo=$2 tag=$3 digest=$4 d hex
  shift 4
  local r=$root/repositories/$repo
  [ "$(cat "$r/_manifests/tags/$tag/current/link")" = "$digest" ] || {
    echo "tags/$tag/current/link is not $digest"
    return 1
  }
  [ -f "$r/_manifests/tags/$tag/index/sha256/${digest#sha256:}/link" ] || {
    echo "no tags/$tag/index entry"
    return 1
  }
  [ "$(cat "$r/_manifests/revisions/sha256/${digest#sha256:}/link")" = "$digest" ] || {
    echo "no revisions link"
    return 1
  }
  for d in "$digest" "$@"; do
    hex=${d#sha256:}
    [ "$(sha256_of "$root/blobs/sha256/${hex:0:2}/$hex/data")" = "$hex" ] || {
      echo "blob data of $d missing or wrong"
      return 1
    }
  done
  for d in "$@"; do
    [ "$(cat "$r/_layers/sha256/${d#sha256:}/link")" = "$d" ] || {
      echo "_layers link of $d missing"
      return 1
    }
  done
}

test_distribution_to_ours() {
  section "distribution 2.8 writes, ours reads"
  local data=$E2E_TMP/data-d2o
  start_distribution dist "$data"
  push_set dist
  stop_server dist
  step "distribution's tree has the layout we expect" \
    check_tree "$data" ns/app v1 "$V1_DIGEST" "$V1_CONFIG" "${V1_LAYERS[@]}"

  start_sut ours "$data"
  verify_set ours
  local a
  a=$(server_addr ours)
  step "[ours] push ns/app:v3 into distribution's tree" \
    ctr skopeo copy --dest-tls-verify=false "oci:$L:v3" "docker://$a/ns/app:v3"
  stop_server ours
  step "ours wrote ns/app:v3 in distribution's layout" \
    check_tree "$data" ns/app v3 "$V3_DIGEST" "$V3_CONFIG" "${V3_LAYERS[@]}"

  start_distribution dist-again "$data"
  a=$(server_addr dist-again)
  ctr_insecure "$a"
  assert_eq "[dist-again] serves ns/app:v3 written by ours" "$V3_DIGEST" "$(registry_digest "$a" ns/app v3)"
  assert_eq "[dist-again] still serves ns/app:v1" "$V1_DIGEST" "$(registry_digest "$a" ns/app v1)"
  stop_server dist-again
}

test_ours_to_distribution() {
  section "ours writes, distribution 2.8 reads"
  local data=$E2E_TMP/data-o2d
  start_sut ours2 "$data"
  push_set ours2
  stop_server ours2
  step "ours' tree has distribution's layout" \
    check_tree "$data" ns/app v1 "$V1_DIGEST" "$V1_CONFIG" "${V1_LAYERS[@]}"
  start_distribution dist2 "$data"
  verify_set dist2
  stop_server dist2
  # The offline garbage collector walks every repository, manifest and link: a tree it cannot read
  # fails here; and with everything tagged it must find nothing to delete.
  if step "docker-registry garbage-collect --dry-run reads ours' tree" \
    env -u AWS_CA_BUNDLE docker-registry garbage-collect --dry-run "$(distribution_config dist2)"; then
    assert_contains "garbage-collect finds nothing to delete" "$(step_stdout)" "0 blobs and 0 manifests eligible for deletion"
  fi
}

# loc_path LOCATION: the path and query of a Location header (absolute or relative).
loc_path() { printf '%s' "$1" | sed -E 's#^https?://[^/]+##'; }
# add_query URL K=V
add_query() { if [[ "$1" == *\?* ]]; then echo "$1&$2"; else echo "$1?$2"; fi; }

test_upload_handoff() {
  section "chunked upload handed between processes of the server under test"
  local data=$E2E_TMP/data-upload blob=$E2E_TMP/upload.bin size half digest loc uuid u
  local secret=$E2E_HTTP_SECRET other_secret
  other_secret=$(openssl rand -hex 32)
  head -c $((1024 * 1024 + 123)) /dev/zero |
    openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass pass:upload >"$blob"
  size=$(size_of "$blob")
  half=$((size / 2))
  head -c "$half" "$blob" >"$E2E_TMP/upload.1"
  tail -c +$((half + 1)) "$blob" >"$E2E_TMP/upload.2"
  digest=sha256:$(sha256_of "$blob")

  start_sut up1 "$data" "$secret"
  u=$(server_url up1)
  assert_http "[up1] POST start upload" 202 -X POST "$u/v2/ns/chunked/blobs/uploads/" || return
  loc=$(loc_path "$(http_header Location)")
  uuid=$(http_header Docker-Upload-UUID)
  assert_contains "[up1] Location carries _state" "$loc" "_state=" || return
  assert_http "[up1] PATCH first half" 202 -X PATCH -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: 0-$((half - 1))" --data-binary "@$E2E_TMP/upload.1" "$u$loc" || return
  assert_eq "[up1] Range after first half" "0-$((half - 1))" "$(http_header Range)"
  loc=$(loc_path "$(http_header Location)")
  stop_server up1
  local up=$data/docker/registry/v2/repositories/ns/chunked/_uploads/$uuid
  assert_eq "upload data on disk holds the first half" "$half" "$(size_of "$up/data" 2>/dev/null)"
  step "hash state stored next to the upload (hashstates/sha256/$half)" test -s "$up/hashstates/sha256/$half"

  start_sut other "$data" "$other_secret"
  u=$(server_url other)
  assert_http "[other secret] PATCH with a _state signed by another secret is refused" 4[0-9][0-9] \
    -X PATCH -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: $half-$((size - 1))" --data-binary "@$E2E_TMP/upload.2" "$u$loc"
  assert_contains "[other secret] error code (HTTP $HTTP_CODE)" "$(cat "$HTTP_BODY")" BLOB_UPLOAD_
  stop_server other

  start_sut up2 "$data" "$secret"
  u=$(server_url up2)
  if assert_http "[up2] GET upload status" 204 "$u$loc"; then
    assert_eq "[up2] Range of the handed-over upload" "0-$((half - 1))" "$(http_header Range)"
  fi
  assert_http "[up2] PATCH second half" 202 -X PATCH -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: $half-$((size - 1))" --data-binary "@$E2E_TMP/upload.2" "$u$loc" || return
  assert_eq "[up2] Range after second half" "0-$((size - 1))" "$(http_header Range)"
  loc=$(loc_path "$(http_header Location)")
  assert_http "[up2] PUT ?digest= completes the upload" 201 -X PUT -H 'Content-Type: application/octet-stream' \
    -H 'Content-Length: 0' "$u$(add_query "$loc" "digest=$digest")" || return
  assert_eq "[up2] Docker-Content-Digest" "$digest" "$(http_header Docker-Content-Digest)"
  assert_eq "[up2] GET the blob" "$digest" "$(blob_sha256 "$u/v2/ns/chunked/blobs/$digest")"
  if assert_http "[up2] HEAD the blob" 200 -I "$u/v2/ns/chunked/blobs/$digest"; then
    assert_eq "[up2] HEAD Content-Length" "$size" "$(http_header Content-Length)"
  fi
  step "upload folder removed after completion" test ! -e "$up"
  stop_server up2
}

test_distribution_to_ours
test_ours_to_distribution
test_upload_handoff
e2e_finish
