#!/usr/bin/env bash
# tests/e2e/auth.sh — real clients (podman, skopeo) against our registry with authentication on:
#
#   openshift mode  against the tests' fake cluster API (examples/fake_kube.rs, a process serving
#                   tests/fake_kube): `podman login` with an API token as password, then push/pull;
#                   `skopeo --creds anyuser:TOKEN` copy/inspect; a viewer token cannot push;
#                   anonymous pull where system:unauthenticated may; a bad token cannot log in.
#   htpasswd mode   bcrypt users, the registry's own token endpoint and role bindings: `podman
#                   login` + push/pull, `skopeo --creds`, wrong password refused, anonymous refused,
#                   an admin deletes with skopeo.
#
# Uses the helpers of tests/e2e/lib.sh (E2E_LIB=path overrides where it is found). Knobs as there
# (TEST_PROFILE, IMAGE_REGISTRY_BIN, E2E_KEEP_TMP, E2E_VERBOSE).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "${E2E_LIB:-$HERE/lib.sh}"
REPO_ROOT=$(cd "$HERE/../.." && pwd)

e2e_init
ctr_sandbox_init

# The htpasswd fixture: user e2e, password e2e-pass-7f3a (bcrypt, cost 5); admin the same hash.
E2E_USER=e2e
E2E_PASS=e2e-pass-7f3a
# shellcheck disable=SC2016 # a literal bcrypt hash
E2E_HASH='$2b$05$qmr8HmEOo/nM5rd5ruSM4.OuLo3sSBF2WPLXIPn0ZfvBy2ErbCKo6'

bin=$(ours_bin)
[ -x "$bin" ] || die "our server binary $bin is missing: build it first (cargo build --workspace)"

# The fake cluster API, built as an example next to our binary.
profile_args=()
[ "$TEST_PROFILE" = release ] && profile_args=(--release)
(cd "$REPO_ROOT" && cargo build -q --example fake_kube "${profile_args[@]}") || die "cannot build examples/fake_kube"
FAKE_KUBE_BIN=${FAKE_KUBE_BIN:-$(dirname "$bin")/examples/fake_kube}
[ -x "$FAKE_KUBE_BIN" ] || die "missing $FAKE_KUBE_BIN"

# start_auth NAME CONFIG [VAR=VALUE...]: our server with a config file, ready when GET /v2/ is 401.
start_auth() {
  local name=$1 cfg=$2 data
  shift 2
  data=$E2E_TMP/data-$name
  mkdir -p "$data"
  launch_ours "$name" "$data" 401 \
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$data" \
    REGISTRY_HTTP_SECRET="$E2E_HTTP_SECRET" \
    "$@" -- --config "$cfg"
  ctr_insecure "$(server_addr "$name")"
}

IMG=$E2E_TMP/img
oci_make_image "$IMG" v1 amd64 authimg 2 32
IMG_DIGEST=$OCI_MANIFEST_DIGEST

podman_login() { # ADDR USER PASS
  printf %s "$3" | ctr podman login --tls-verify=false -u "$2" --password-stdin "$1"
}
# podman_roundtrip ADDR REPO: podman pushes the test image as REPO:p and pulls it back.
podman_roundtrip() {
  local addr=$1 repo=$2 id
  id=$(ctr podman pull -q "oci:$IMG:v1" | tail -n 1)
  ctr podman push --tls-verify=false --format oci "$id" "docker://$addr/$repo:p"
  ctr podman rmi -f "$id" >/dev/null
  ctr podman pull --tls-verify=false "$addr/$repo:p"
}

# ---------------------------------------------------------------------------------------------
section "openshift mode (fake cluster API)"
start_process kube "$FAKE_KUBE_BIN" "$E2E_TMP/kube.url"
for _ in $(seq 1 100); do [ -s "$E2E_TMP/kube.url" ] && break; sleep 0.1; done
[ -s "$E2E_TMP/kube.url" ] || die "the fake cluster API did not start"
printf 'e2e-sa-token\n' >"$E2E_TMP/sa-token"
cat >"$E2E_TMP/openshift.yml" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem: {}
auth:
  openshift:
    server: $(cat "$E2E_TMP/kube.url")
    tokenFile: $E2E_TMP/sa-token
    cacheTTL: 10s
    timeout: 3s
YAML
start_auth os "$E2E_TMP/openshift.yml"
OS=$(server_addr os)

step "skopeo copy with --dest-creds anyuser:<editor token>" \
  ctr skopeo copy --dest-tls-verify=false --dest-creds anyuser:e2e-editor-token \
  "oci:$IMG:v1" "docker://$OS/proj/app:v1"
assert_eq "skopeo inspect with the viewer token sees the pushed digest" "$IMG_DIGEST" \
  "$(registry_digest "$OS" proj/app v1 --creds anyuser:e2e-viewer-token)"
step "skopeo cannot push with the viewer token" expect_fail \
  ctr skopeo copy --dest-tls-verify=false --dest-creds anyuser:e2e-viewer-token \
  "oci:$IMG:v1" "docker://$OS/proj/app:viewer"
step "skopeo without credentials cannot read proj/app" expect_fail \
  ctr skopeo inspect --raw --tls-verify=false "docker://$OS/proj/app:v1"
step "skopeo copy to public/app (editor)" \
  ctr skopeo copy --dest-tls-verify=false --dest-creds anyuser:e2e-editor-token \
  "oci:$IMG:v1" "docker://$OS/public/app:v1"
assert_eq "anonymous skopeo inspect of public/app" "$IMG_DIGEST" "$(registry_digest "$OS" public/app v1)"
step "podman login with a bad token fails" expect_fail podman_login "$OS" anyuser not-a-token
step "podman login -u anyuser -p <editor token>" podman_login "$OS" anyuser e2e-editor-token
step "podman push + pull after login" podman_roundtrip "$OS" proj/podman
assert_eq "the podman-pushed tag reads back (viewer token)" "$(registry_digest "$OS" proj/podman p --creds x:e2e-editor-token)" \
  "$(registry_digest "$OS" proj/podman p --creds x:e2e-viewer-token)"
step "podman logout" ctr podman logout "$OS"
assert_http "token endpoint without credentials answers anonymous" 200 "http://$OS/openshift/token"
assert_contains "anonymous token" "$(cat "$HTTP_BODY")" '"token":"anonymous"'
stop_server os
stop_server kube

# ---------------------------------------------------------------------------------------------
section "htpasswd mode"
printf '%s:%s\nadmin:%s\n' "$E2E_USER" "$E2E_HASH" "$E2E_HASH" >"$E2E_TMP/htpasswd"
cat >"$E2E_TMP/htpasswd.yml" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem: {}
auth:
  htpasswd:
    path: $E2E_TMP/htpasswd
  bindings:
    - role: registry-editor
      namespaces: ["team"]
      users: [$E2E_USER]
    - role: registry-admin
      namespaces: ["*"]
      users: [admin]
YAML
start_auth hp "$E2E_TMP/htpasswd.yml"
HP=$(server_addr hp)
step "skopeo copy with --dest-creds" \
  ctr skopeo copy --dest-tls-verify=false --dest-creds "$E2E_USER:$E2E_PASS" \
  "oci:$IMG:v1" "docker://$HP/team/app:v1"
assert_eq "skopeo inspect with --creds" "$IMG_DIGEST" \
  "$(registry_digest "$HP" team/app v1 --creds "$E2E_USER:$E2E_PASS")"
step "skopeo cannot push outside the bound namespace" expect_fail \
  ctr skopeo copy --dest-tls-verify=false --dest-creds "$E2E_USER:$E2E_PASS" \
  "oci:$IMG:v1" "docker://$HP/other/app:v1"
step "anonymous skopeo cannot read" expect_fail \
  ctr skopeo inspect --raw --tls-verify=false "docker://$HP/team/app:v1"
step "skopeo delete needs the admin role (editor refused)" expect_fail \
  ctr skopeo delete --tls-verify=false --creds "$E2E_USER:$E2E_PASS" "docker://$HP/team/app:v1"
step "skopeo delete as admin" \
  ctr skopeo delete --tls-verify=false --creds "admin:$E2E_PASS" "docker://$HP/team/app@$IMG_DIGEST"
step "the deleted manifest is gone" expect_fail \
  ctr skopeo inspect --raw --tls-verify=false --creds "admin:$E2E_PASS" "docker://$HP/team/app@$IMG_DIGEST"
# podman last: containers/image's blob-info cache would otherwise let skopeo reuse podman's
# recompressed layers and change the digests checked above.
step "podman login with a wrong password fails" expect_fail podman_login "$HP" "$E2E_USER" wrong
step "podman login (htpasswd user)" podman_login "$HP" "$E2E_USER" "$E2E_PASS"
step "podman push + pull after login (bearer flow)" podman_roundtrip "$HP" team/podman
step "podman logout" ctr podman logout "$HP"
stop_server hp

e2e_finish
