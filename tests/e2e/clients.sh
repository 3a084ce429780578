#!/usr/bin/env bash
# tests/e2e/clients.sh — round trips with real clients (skopeo, podman, buildah) against the server
# under test: push, inspect, list tags, pull back and compare digests, cross-repository mount,
# delete, multi-arch indexes, Docker schema 2. Images are OCI layouts written by hand (no network).
#
#   tests/e2e/clients.sh                          # against our server (target/$TEST_PROFILE/image-registry)
#   E2E_SERVER=distribution tests/e2e/clients.sh  # against distribution 2.8, to check the script itself
#
# Prints PASS/FAIL per check and closes with "clients: N passed, M failed"; exits non-zero on failure.
# shellcheck disable=SC2317 # functions called through `step` look unreachable to shellcheck
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
ctr_sandbox_init
start_sut sut "$E2E_TMP/data"
A=$(server_addr sut)
ctr_insecure "$A"

section "images: OCI layout written by hand"
L=$E2E_TMP/layout
oci_make_image "$L" v1 amd64 app 2 256
V1_DIGEST=$OCI_MANIFEST_DIGEST V1_CONFIG=$OCI_CONFIG_DIGEST V1_LAYERS=("${OCI_LAYER_DIGESTS[@]}")
oci_make_image "$L" v2 amd64 app-v2 1 64
V2_DIGEST=$OCI_MANIFEST_DIGEST
oci_make_multiarch "$L" multi multi amd64 arm64
MULTI_DIGEST=$OCI_INDEX_DIGEST MULTI_CHILDREN=("${OCI_CHILD_DIGESTS[@]}") MULTI_CONFIGS=("${OCI_CHILD_CONFIGS[@]}")
log "v1 $V1_DIGEST (config $V1_CONFIG), v2 $V2_DIGEST, multi $MULTI_DIGEST"

# same_blobs DIR_A DIR_B DIGEST...: the blobs are byte-identical in two layouts.
same_blobs() {
  local a=$1 b=$2 d
  shift 2
  for d in "$@"; do cmp "$(oci_blob "$a" "$d")" "$(oci_blob "$b" "$d")" || return 1; done
}

test_skopeo() {
  section "skopeo"
  step "skopeo copy oci:layout:v1 -> docker://$A/ns/app:v1" \
    ctr skopeo copy --dest-tls-verify=false "oci:$L:v1" "docker://$A/ns/app:v1" || return
  if step "skopeo inspect ns/app:v1" ctr skopeo inspect --tls-verify=false "docker://$A/ns/app:v1"; then
    assert_eq "inspect: digest is the layout's manifest digest" "$V1_DIGEST" "$(jq -r .Digest "$STEP_OUT")"
    assert_eq "inspect: layers" "${V1_LAYERS[*]}" "$(jq -r '.Layers | join(" ")' "$STEP_OUT")"
    assert_eq "inspect: label from the config" app "$(jq -r '.Labels["e2e.seed"]' "$STEP_OUT")"
  fi
  if step "skopeo inspect --raw ns/app:v1" ctr skopeo inspect --raw --tls-verify=false "docker://$A/ns/app:v1"; then
    cp "$STEP_OUT" "$E2E_TMP/raw-v1"
    step "raw manifest is byte-identical to the pushed one" cmp "$E2E_TMP/raw-v1" "$(oci_blob "$L" "$V1_DIGEST")"
  fi
  if step "skopeo inspect --config ns/app:v1" \
    ctr skopeo inspect --config --raw --tls-verify=false "docker://$A/ns/app:v1"; then
    assert_eq "config blob digest" "$V1_CONFIG" "sha256:$(sha256_of "$STEP_OUT")"
  fi
  step "skopeo copy oci:layout:v2 -> ns/app:v2" \
    ctr skopeo copy --dest-tls-verify=false "oci:$L:v2" "docker://$A/ns/app:v2"
  if step "skopeo list-tags ns/app" ctr skopeo list-tags --tls-verify=false "docker://$A/ns/app"; then
    assert_eq "list-tags: v1 and v2" "v1 v2" "$(jq -r '.Tags | sort | join(" ")' "$STEP_OUT")"
  fi

  local out=$E2E_TMP/out-skopeo
  if step "skopeo copy ns/app:v1 -> oci:out:v1" \
    ctr skopeo copy --src-tls-verify=false "docker://$A/ns/app:v1" "oci:$out:v1"; then
    assert_eq "copied-back manifest digest" "$V1_DIGEST" "$(oci_ref "$out" v1)"
    assert_eq "copied-back layer digests" "${V1_LAYERS[*]}" "$(oci_layer_digests "$out" "$(oci_ref "$out" v1)" | xargs)"
    step "copied-back blobs are byte-identical" same_blobs "$L" "$out" "$V1_DIGEST" "$V1_CONFIG" "${V1_LAYERS[@]}"
  fi

  # Registry to registry in the same server: skopeo mounts the blobs from the source repository.
  if step "skopeo copy ns/app:v1 -> other/app:v1 (cross-repository mount)" \
    ctr skopeo copy --src-tls-verify=false --dest-tls-verify=false \
    "docker://$A/ns/app:v1" "docker://$A/other/app:v1"; then
    assert_eq "other/app:v1 digest" "$V1_DIGEST" "$(registry_digest "$A" other/app v1)"
  fi

  step "skopeo delete ns/app:v2" ctr skopeo delete --tls-verify=false "docker://$A/ns/app:v2" || return
  step "ns/app:v2 is gone after delete" expect_fail ctr skopeo inspect --raw --tls-verify=false "docker://$A/ns/app:v2"
  step "ns/app@v2-digest is gone after delete" \
    expect_fail ctr skopeo inspect --raw --tls-verify=false "docker://$A/ns/app@$V2_DIGEST"
  assert_eq "ns/app:v1 is still there" "$V1_DIGEST" "$(registry_digest "$A" ns/app v1)"
  if step "skopeo list-tags ns/app after delete" ctr skopeo list-tags --tls-verify=false "docker://$A/ns/app"; then
    assert_eq "list-tags after delete: v1" "v1" "$(jq -r '.Tags | sort | join(" ")' "$STEP_OUT")"
  fi
}

test_podman() {
  section "podman"
  local img=$A/ns/pod:v1 id id2 pushed
  step "podman pull oci:layout:v1" ctr podman pull -q "oci:$L:v1" || return
  id=$(tail -n 1 "$STEP_OUT")
  assert_eq "podman image ID is the config digest" "${V1_CONFIG#sha256:}" "$id"
  step "podman tag $img" ctr podman tag "$id" "$img" || return
  step "podman push --format oci $img" \
    ctr podman push --tls-verify=false --format oci --digestfile "$E2E_TMP/pod.digest" "$img" || return
  pushed=$(cat "$E2E_TMP/pod.digest")
  assert_eq "registry serves the digest podman pushed" "$pushed" "$(registry_digest "$A" ns/pod v1)"
  if step "skopeo inspect --raw ns/pod:v1" ctr skopeo inspect --raw --tls-verify=false "docker://$A/ns/pod:v1"; then
    assert_eq "pushed manifest is OCI" "$MT_OCI_MANIFEST" "$(jq -r .mediaType "$STEP_OUT")"
    assert_eq "pushed manifest's config is the image ID" "$V1_CONFIG" "$(jq -r .config.digest "$STEP_OUT")"
  fi
  step "podman push --format v2s2 -> ns/pod-docker:v1" \
    ctr podman push --tls-verify=false --format v2s2 --digestfile "$E2E_TMP/pod-docker.digest" \
    "$img" "docker://$A/ns/pod-docker:v1"
  if step "skopeo inspect --raw ns/pod-docker:v1" \
    ctr skopeo inspect --raw --tls-verify=false "docker://$A/ns/pod-docker:v1"; then
    assert_eq "v2s2 manifest media type" "$MT_DOCKER_MANIFEST" "$(jq -r .mediaType "$STEP_OUT")"
    assert_eq "v2s2 digest" "$(cat "$E2E_TMP/pod-docker.digest")" "sha256:$(sha256_of "$STEP_OUT")"
  fi

  step "podman rmi -a -f" ctr podman rmi -a -f
  if step "podman images (empty)" ctr podman images -q; then
    assert_eq "no local images left" "" "$(step_stdout)"
  fi

  step "podman pull $img" ctr podman pull -q --tls-verify=false "$img" || return
  id2=$(tail -n 1 "$STEP_OUT")
  assert_eq "pulled image ID equals the pushed one" "$id" "$id2"
  if step "podman image inspect $img" ctr podman image inspect --format '{{.Digest}}' "$img"; then
    assert_eq "pulled image digest equals the pushed one" "$pushed" "$(step_stdout)"
  fi
  if step "podman pull ns/pod-docker:v1" ctr podman pull -q --tls-verify=false "$A/ns/pod-docker:v1"; then
    assert_eq "v2s2 pulled image ID" "$id" "$(tail -n 1 "$STEP_OUT")"
  fi
}

test_multiarch() {
  section "multi-arch (OCI image index)"
  step "skopeo copy --all oci:layout:multi -> ns/multi:v1" \
    ctr skopeo copy --all --dest-tls-verify=false "oci:$L:multi" "docker://$A/ns/multi:v1" || return
  if step "skopeo inspect --raw ns/multi:v1" ctr skopeo inspect --raw --tls-verify=false "docker://$A/ns/multi:v1"; then
    assert_eq "index digest" "$MULTI_DIGEST" "sha256:$(sha256_of "$STEP_OUT")"
    assert_eq "index media type" "$MT_OCI_INDEX" "$(jq -r .mediaType "$STEP_OUT")"
  fi
  local i arch archs=(amd64 arm64)
  for i in 0 1; do
    assert_eq "child ${archs[$i]} by digest" "${MULTI_CHILDREN[$i]}" \
      "$(registry_digest "$A" ns/multi "${MULTI_CHILDREN[$i]}")"
  done
  for i in 0 1; do
    arch=${archs[$i]}
    if step "skopeo inspect --override-arch $arch ns/multi:v1" \
      ctr skopeo inspect --tls-verify=false --override-os linux --override-arch "$arch" "docker://$A/ns/multi:v1"; then
      # skopeo 1.9 reports the index's digest here, and the chosen image's config.
      assert_eq "platform $arch resolves to its image" "$arch" "$(jq -r .Architecture "$STEP_OUT")"
    fi
  done
  local out=$E2E_TMP/out-multi
  if step "skopeo copy --all ns/multi:v1 -> oci:out:multi" \
    ctr skopeo copy --all --src-tls-verify=false "docker://$A/ns/multi:v1" "oci:$out:multi"; then
    assert_eq "copied-back index digest" "$MULTI_DIGEST" "$(oci_ref "$out" multi)"
    step "copied-back children are byte-identical" same_blobs "$L" "$out" "${MULTI_CHILDREN[@]}" "${MULTI_CONFIGS[@]}"
  fi
  if step "podman pull --arch arm64 ns/multi:v1" \
    ctr podman pull -q --tls-verify=false --os linux --arch arm64 --variant v8 "$A/ns/multi:v1"; then
    assert_eq "arm64 image ID is the arm64 config" "${MULTI_CONFIGS[1]#sha256:}" "$(tail -n 1 "$STEP_OUT")"
  fi
}

test_buildah() {
  section "buildah"
  local c img=$A/ns/built:v1
  step "buildah from scratch" ctr buildah from scratch || return
  c=$(tail -n 1 "$STEP_OUT")
  printf 'built by buildah\n' >"$E2E_TMP/built.txt"
  step "buildah copy" ctr buildah copy "$c" "$E2E_TMP/built.txt" /built.txt || return
  step "buildah config" ctr buildah config --cmd /bin/sh --label e2e=buildah "$c" || return
  step "buildah commit $img" ctr buildah commit -q --format oci "$c" "$img" || return
  step "buildah push $img" \
    ctr buildah push --tls-verify=false --digestfile "$E2E_TMP/built.digest" "$img" || return
  if step "skopeo inspect ns/built:v1" ctr skopeo inspect --tls-verify=false "docker://$A/ns/built:v1"; then
    assert_eq "buildah image digest" "$(cat "$E2E_TMP/built.digest")" "$(jq -r .Digest "$STEP_OUT")"
    assert_eq "buildah image label" buildah "$(jq -r .Labels.e2e "$STEP_OUT")"
    assert_eq "buildah image has one layer" 1 "$(jq -r '.Layers | length' "$STEP_OUT")"
  fi
  step "buildah rm" ctr buildah rm "$c"
}

test_skopeo
test_podman
test_multiarch
test_buildah
e2e_finish
