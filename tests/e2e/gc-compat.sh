#!/usr/bin/env bash
# tests/e2e/gc-compat.sh — garbage collection against CNCF distribution 2.8's (Debian's
# docker-registry) on a store distribution itself wrote: `docker-registry garbage-collect
# --dry-run --delete-untagged` and our `image-registry gc --dry-run --delete-untagged --delay 0s`
# must list the same deletions, except the children of a tagged multi-arch index (and their
# blobs), which distribution deletes and we keep. Then our real run deletes what it listed and
# distribution serves every tag of the collected store.
#
# Prints PASS/FAIL per check and closes with "gc-compat: N passed, M failed".
# shellcheck disable=SC2317 # functions called through `step` look unreachable to shellcheck
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
ctr_sandbox_init

section "a store written by distribution 2.8"
L=$E2E_TMP/layout
oci_make_image "$L" v1 amd64 gc-v1 2 64
V1=$OCI_MANIFEST_DIGEST
oci_make_image "$L" v2 amd64 gc-v2 2 64
V2=$OCI_MANIFEST_DIGEST V2_CONFIG=$OCI_CONFIG_DIGEST V2_LAYERS=("${OCI_LAYER_DIGESTS[@]}")
oci_make_image "$L" v3 amd64 gc-v3 1 64
V3=$OCI_MANIFEST_DIGEST
oci_make_multiarch "$L" multi gc-multi amd64 arm64
MULTI=$OCI_INDEX_DIGEST CHILDREN=("${OCI_CHILD_DIGESTS[@]}")
DATA=$E2E_TMP/data
start_distribution dist "$DATA"
A=$(server_addr dist)
ctr_insecure "$A"
step "push ns/app:v1" ctr skopeo copy --dest-tls-verify=false "oci:$L:v1" "docker://$A/ns/app:v1"
step "push ns/app:v2" ctr skopeo copy --dest-tls-verify=false "oci:$L:v2" "docker://$A/ns/app:v2"
step "move ns/app:v2 to v3 (v2's image is untagged now)" \
  ctr skopeo copy --dest-tls-verify=false "oci:$L:v3" "docker://$A/ns/app:v2"
step "push ns/multi:v1 (--all)" \
  ctr skopeo copy --all --dest-tls-verify=false "oci:$L:multi" "docker://$A/ns/multi:v1"
stop_server dist

section "dry runs side by side"
if step "docker-registry garbage-collect --dry-run --delete-untagged" \
  env -u AWS_CA_BUNDLE docker-registry garbage-collect --dry-run --delete-untagged "$(distribution_config dist)"; then
  grep -o 'manifest eligible for deletion: sha256:[0-9a-f]*' "$STEP_OUT" | awk '{print $NF}' | sort -u >"$E2E_TMP/d-manifests"
  grep -o 'blob eligible for deletion: sha256:[0-9a-f]*' "$STEP_OUT" | awk '{print $NF}' | sort -u >"$E2E_TMP/d-blobs"
fi
GC=(env -i PATH="$PATH" REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$DATA" REGISTRY_LOG_LEVEL=warn "$(ours_bin)" gc)
if step "image-registry gc --dry-run --delete-untagged --delay 0s --json" \
  "${GC[@]}" --dry-run --delete-untagged --delay 0s --json; then
  cp "$STEP_OUT" "$E2E_TMP/ours.json"
  jq -r '.deletions[] | select(.kind=="manifest") | .digest' "$E2E_TMP/ours.json" | sort -u >"$E2E_TMP/o-manifests"
  jq -r '.deletions[] | select(.kind=="blob") | .digest' "$E2E_TMP/ours.json" | sort -u >"$E2E_TMP/o-blobs"
fi

# What we keep and distribution deletes: the index's children and the blobs only they reference.
: >"$E2E_TMP/kept-by-us"
for c in "${CHILDREN[@]}"; do
  echo "$c" >>"$E2E_TMP/kept-by-us"
  jq -r '.config.digest, .layers[].digest' "$(oci_blob "$L" "$c")" >>"$E2E_TMP/kept-by-us"
done
sort -u -o "$E2E_TMP/kept-by-us" "$E2E_TMP/kept-by-us"

assert_contains "distribution lists v2's untagged image" "$(cat "$E2E_TMP/d-manifests")" "$V2"
assert_contains "distribution lists the index's children (the bug we avoid)" \
  "$(cat "$E2E_TMP/d-manifests")" "${CHILDREN[0]}"
assert_eq "our manifests = distribution's minus the index children" \
  "$(comm -23 "$E2E_TMP/d-manifests" "$E2E_TMP/kept-by-us" | xargs)" "$(xargs <"$E2E_TMP/o-manifests")"
assert_eq "our blobs = distribution's minus the children's" \
  "$(comm -23 "$E2E_TMP/d-blobs" "$E2E_TMP/kept-by-us" | xargs)" "$(xargs <"$E2E_TMP/o-blobs")"
for b in "$V2_CONFIG" "${V2_LAYERS[@]}"; do
  assert_contains "we list v2's blob $b" "$(cat "$E2E_TMP/o-blobs")" "$b"
done

section "our run, then distribution serves the collected store"
if step "image-registry gc --delete-untagged --delay 0s" "${GC[@]}" --delete-untagged --delay 0s --json; then
  assert_eq "the run deleted what the dry run listed" \
    "$(jq -c '[.deletions[] | select(.kind=="manifest" or .kind=="blob")]' "$E2E_TMP/ours.json")" \
    "$(jq -c '[.deletions[] | select(.kind=="manifest" or .kind=="blob")]' "$STEP_OUT")"
fi
start_distribution dist2 "$DATA"
A=$(server_addr dist2)
ctr_insecure "$A"
assert_eq "[dist2] ns/app:v1" "$V1" "$(registry_digest "$A" ns/app v1)"
assert_eq "[dist2] ns/app:v2" "$V3" "$(registry_digest "$A" ns/app v2)"
assert_eq "[dist2] ns/multi:v1" "$MULTI" "$(registry_digest "$A" ns/multi v1)"
for t in v1 v2; do
  step "[dist2] skopeo copy ns/app:$t out (every blob)" \
    ctr skopeo copy --src-tls-verify=false "docker://$A/ns/app:$t" "oci:$E2E_TMP/out:$t"
done
step "[dist2] skopeo copy --all ns/multi:v1 out (children kept)" \
  ctr skopeo copy --all --src-tls-verify=false "docker://$A/ns/multi:v1" "oci:$E2E_TMP/out:multi"
stop_server dist2
if step "docker-registry garbage-collect --dry-run (no --delete-untagged) after ours" \
  env -u AWS_CA_BUNDLE docker-registry garbage-collect --dry-run "$(distribution_config dist2)"; then
  assert_contains "distribution finds nothing more" "$(step_stdout)" "0 blobs and 0 manifests eligible for deletion"
fi
e2e_finish
