#!/usr/bin/env bash
# tests/e2e/pullthrough.sh — real clients through the pull-through cache: CNCF distribution 2.8
# (Debian's docker-registry) is the upstream, our server mirrors it under the prefix `up.local`
# (`proxy.upstreams`), and skopeo and podman pull through the cache: digests, byte-identical blobs,
# a multi-arch index pulled per platform, containerd's ctr with the cache as a hosts.toml mirror
# (`?ns=`), pushes into the mirror refused, and pulls of cached
# images still working after the upstream is stopped (stale-if-error).
#
# Prints PASS/FAIL per check and closes with "pullthrough: N passed, M failed".
# shellcheck disable=SC2317 # functions called through `step` look unreachable to shellcheck
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
ctr_sandbox_init
start_distribution up "$E2E_TMP/up"
U=$(server_addr up)
ctr_insecure "$U"

CFG=$E2E_TMP/cache.yml
cat >"$CFG" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $E2E_TMP/cache
http:
  secret: $E2E_HTTP_SECRET
proxy:
  upstreams:
    - prefix: up.local
      url: http://$U
      ttl: 1s
YAML
launch_ours cache "$E2E_TMP/cache" 200 -- --config "$CFG"
C=$(server_addr cache)
ctr_insecure "$C"

section "images pushed to the upstream (distribution 2.8)"
L=$E2E_TMP/layout
oci_make_image "$L" v1 amd64 app 2 256
V1_DIGEST=$OCI_MANIFEST_DIGEST V1_CONFIG=$OCI_CONFIG_DIGEST V1_LAYERS=("${OCI_LAYER_DIGESTS[@]}")
oci_make_multiarch "$L" multi multi amd64 arm64
MULTI_DIGEST=$OCI_INDEX_DIGEST MULTI_CHILDREN=("${OCI_CHILD_DIGESTS[@]}") MULTI_CONFIGS=("${OCI_CHILD_CONFIGS[@]}")
step "skopeo copy oci:layout:v1 -> upstream ns/app:v1" \
  ctr skopeo copy --dest-tls-verify=false "oci:$L:v1" "docker://$U/ns/app:v1"
step "skopeo copy --all oci:layout:multi -> upstream ns/multi:v1" \
  ctr skopeo copy --all --dest-tls-verify=false "oci:$L:multi" "docker://$U/ns/multi:v1"

section "skopeo through the cache"
assert_eq "cache serves the upstream's digest" "$V1_DIGEST" "$(registry_digest "$C" up.local/ns/app v1)"
OUT=$E2E_TMP/out
if step "skopeo copy cache up.local/ns/app:v1 -> oci:out:v1" \
  ctr skopeo copy --src-tls-verify=false "docker://$C/up.local/ns/app:v1" "oci:$OUT:v1"; then
  assert_eq "copied manifest digest" "$V1_DIGEST" "$(oci_ref "$OUT" v1)"
  for d in "$V1_CONFIG" "${V1_LAYERS[@]}"; do
    step "blob $d is byte-identical" cmp "$(oci_blob "$L" "$d")" "$(oci_blob "$OUT" "$d")"
  done
fi
if step "skopeo list-tags up.local/ns/app (cached tags are local tags)" \
  ctr skopeo list-tags --tls-verify=false "docker://$C/up.local/ns/app"; then
  assert_eq "tags" "v1" "$(jq -r '.Tags | join(" ")' "$STEP_OUT")"
fi
step "skopeo copy into the mirrored prefix is refused" \
  expect_fail ctr skopeo copy --dest-tls-verify=false "oci:$L:v1" "docker://$C/up.local/ns/pushed:v1"
step "skopeo copy into a normal repository works" \
  ctr skopeo copy --dest-tls-verify=false "oci:$L:v1" "docker://$C/mine/app:v1"

section "podman through the cache"
if step "podman pull up.local/ns/app:v1" ctr podman pull -q --tls-verify=false "$C/up.local/ns/app:v1"; then
  assert_eq "image ID is the config digest" "${V1_CONFIG#sha256:}" "$(tail -n 1 "$STEP_OUT")"
fi
if step "podman pull --arch arm64 up.local/ns/multi:v1" \
  ctr podman pull -q --tls-verify=false --os linux --arch arm64 --variant v8 "$C/up.local/ns/multi:v1"; then
  assert_eq "arm64 image ID is the arm64 config" "${MULTI_CONFIGS[1]#sha256:}" "$(tail -n 1 "$STEP_OUT")"
fi
assert_eq "the index is cached by digest" "$MULTI_DIGEST" "$(registry_digest "$C" up.local/ns/multi "$MULTI_DIGEST")"

section "containerd: the cache as a hosts.toml mirror (?ns=)"
# A private containerd; the mirror's `server` fallback is a dead port, so a pull that works went
# through the cache. The amd64 child of ns/multi is not cached yet: it is fetched on the miss.
CTRD=$E2E_TMP/containerd
CTR_BIN=$(type -P ctr)
mkdir -p "$CTRD/hosts/up.local"
cat >"$CTRD/config.toml" <<TOML
version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
TOML
cat >"$CTRD/hosts/up.local/hosts.toml" <<TOML
server = "http://127.0.0.1:1"

[host."http://$C"]
  capabilities = ["pull", "resolve"]
TOML
start_process containerd containerd --root "$CTRD/root" --state "$CTRD/state" \
  --address "$CTRD/ctd.sock" --config "$CTRD/config.toml"
for _ in $(seq 1 100); do [ -S "$CTRD/ctd.sock" ] && break; sleep 0.1; done
if step "ctr images pull up.local/ns/multi:v1 (linux/amd64) through the mirror" \
  timeout 120 "$CTR_BIN" -a "$CTRD/ctd.sock" images pull --snapshotter native --platform linux/amd64 \
  --hosts-dir "$CTRD/hosts" up.local/ns/multi:v1; then
  step "ctr images ls shows the index digest" \
    sh -c '"$0" -a "$1" images ls | grep -F "up.local/ns/multi:v1" | grep -qF "$2"' \
    "$CTR_BIN" "$CTRD/ctd.sock" "$MULTI_DIGEST"
  step "the amd64 child was fetched into up.local/ns/multi of the cache" \
    test -f "$E2E_TMP/cache/docker/registry/v2/repositories/up.local/ns/multi/_manifests/revisions/sha256/${MULTI_CHILDREN[0]#sha256:}/link"
fi
stop_server containerd

section "upstream gone: cached images still pull (stale-if-error)"
stop_server up
sleep 1.5 # past the ttl: the cache tries to revalidate and cannot
step "podman rmi -a -f" ctr podman rmi -a -f
if step "podman pull up.local/ns/app:v1 with the upstream stopped" \
  ctr podman pull -q --tls-verify=false "$C/up.local/ns/app:v1"; then
  assert_eq "image ID" "${V1_CONFIG#sha256:}" "$(tail -n 1 "$STEP_OUT")"
fi
assert_http "uncached image with the upstream stopped: 502" 502 "http://$C/v2/up.local/ns/none/manifests/v1"

e2e_finish
