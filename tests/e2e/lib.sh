# shellcheck shell=bash
# shellcheck disable=SC2034 # variables here are for the scripts that source this file
# tests/e2e/lib.sh — helpers shared by the end-to-end scripts in this folder.
#
# Source it, then call `e2e_init` once. It gives:
#   - servers:   start_sut / start_ours / start_distribution NAME DATADIR [SECRET], launch_ours (ours
#                with any storage or config file), stop_server NAME, server_addr / server_url /
#                server_data / server_log NAME. Each binds 127.0.0.1 on a free port and is ready once
#                GET /v2/ answers 200 (or the status asked for). Servers get no REGISTRY_* or
#                AWS_CA_BUNDLE from our environment; extra settings for ours go in E2E_OURS_ENV=(K=V...).
#   - processes: start_process NAME CMD... for helpers (emulators, Prometheus, a fake API), stopped
#                like servers; free_port, wait_port HOST PORT [TIMEOUT].
#   - clients:   ctr_sandbox_init, ctr_insecure HOST:PORT, then `ctr skopeo|podman|buildah ARGS...` runs
#                the tool with private storage (vfs), containers.conf, registries.conf, auth file,
#                TMPDIR, HOME and network config dir, in a private mount namespace where
#                /var/lib/containers/cache is the sandbox's and /run is a fresh tmpfs: nothing of the
#                host's container state is read or written
#   - images:    oci_init, oci_make_image, oci_make_multiarch, oci_tag, oci_ref, oci_blob (OCI image
#                layouts written by hand, no network)
#   - checks:    step, expect_fail, assert_eq, assert_ne, assert_contains, assert_not_contains,
#                assert_http (+ http_req, http_header), registry_digest, blob_sha256, pass, fail,
#                and e2e_finish (closing line "NAME: N passed, M failed", exit status)
# Everything lives under one temp folder ($E2E_TMP) that is removed on exit, and every process
# started here is stopped by the EXIT trap (only those: by their recorded pid). Server logs are
# printed at the end when anything failed.
#
# Knobs (environment):
#   E2E_SERVER=ours|distribution  which server plays "the server under test" (default: ours). With
#                                 `distribution`, Debian's docker-registry (CNCF distribution 2.8)
#                                 stands in, which is how these scripts themselves are checked.
#   IMAGE_REGISTRY_BIN            our binary (default: <cargo target dir>/$TEST_PROFILE/image-registry)
#   TEST_PROFILE=debug|release    which cargo profile's binaries to use (default: debug)
#   E2E_START_TIMEOUT=30          seconds to wait for a server to answer GET /v2/ with 200
#   E2E_STEP_TIMEOUT=300          seconds any one container-tool command may run
#   E2E_KEEP_TMP=1                keep the temp folder (its path is printed) for debugging
#   E2E_VERBOSE=1                 print each step's output even when it passes

E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_REPO_ROOT=$(cd "$E2E_LIB_DIR/../.." && pwd)
E2E_SERVER=${E2E_SERVER:-ours}
TEST_PROFILE=${TEST_PROFILE:-debug}
E2E_START_TIMEOUT=${E2E_START_TIMEOUT:-30}
E2E_STEP_TIMEOUT=${E2E_STEP_TIMEOUT:-300}
E2E_NAME=${E2E_NAME:-$(basename "$0" .sh)}

E2E_PASSED=0
E2E_FAILED=0
E2E_FAILED_NAMES=()
E2E_TMP=
declare -A SRV_PID=() SRV_ADDR=() SRV_LOG=() SRV_KIND=() SRV_DATA=()
[ -n "${E2E_OURS_ENV+x}" ] || E2E_OURS_ENV=()
E2E_USED_PORTS=" "

# ---------------------------------------------------------------------------------------------
# Output and checks

log() { printf '%s\n' "$*"; }
warn() { printf 'WARN: %s\n' "$*" >&2; }
# die MSG: a set-up step failed; the test cannot go on.
die() {
  printf 'FATAL: %s\n' "$*" >&2
  E2E_FAILED=$((E2E_FAILED + 1))
  E2E_FAILED_NAMES+=("fatal: $*")
  exit 1
}
section() { printf '\n--- %s\n' "$*"; }

pass() {
  E2E_PASSED=$((E2E_PASSED + 1))
  printf 'PASS: %s\n' "$1"
}
# fail NAME [DETAIL...]
fail() {
  E2E_FAILED=$((E2E_FAILED + 1))
  E2E_FAILED_NAMES+=("$1")
  printf 'FAIL: %s\n' "$1"
  shift
  local line
  for line in "$@"; do printf '      %s\n' "$line"; done
}

# Output of the last `step`: stdout in $STEP_OUT, stderr in $STEP_ERR (files).
STEP_OUT=
STEP_ERR=
# step NAME CMD [ARGS...]: run a command (a function is fine), PASS if it exits 0, else FAIL with
# its output. Returns the command's status, so `step ... || return` skips dependent steps.
step() {
  local name=$1 rc=0
  shift
  "$@" >"$STEP_OUT" 2>"$STEP_ERR" || rc=$?
  if [ "$rc" -eq 0 ]; then
    pass "$name"
    if [ -n "${E2E_VERBOSE:-}" ]; then show_step_output; fi
  else
    fail "$name" "exit status $rc from: $*"
    show_step_output
  fi
  return "$rc"
}
show_step_output() {
  if [ -s "$STEP_OUT" ]; then
    printf '      stdout:\n'
    tail -n 40 "$STEP_OUT" | sed 's/^/      | /'
  fi
  if [ -s "$STEP_ERR" ]; then
    printf '      stderr:\n'
    tail -n 40 "$STEP_ERR" | sed 's/^/      | /'
  fi
}
# expect_fail CMD...: succeeds when CMD fails (for `step "x is gone" expect_fail ...`).
expect_fail() { ! "$@"; }
# step_stdout: what the last step printed on stdout.
step_stdout() { cat "$STEP_OUT"; }

# assert_eq NAME EXPECTED ACTUAL
assert_eq() {
  if [ "$2" == "$3" ]; then pass "$1"; else
    fail "$1" "expected: $2" "actual:   $3"
    return 1
  fi
}
# assert_ne NAME UNEXPECTED ACTUAL
assert_ne() {
  if [ "$2" != "$3" ]; then pass "$1"; else
    fail "$1" "expected anything but: $2"
    return 1
  fi
}
# assert_contains NAME HAYSTACK NEEDLE
assert_contains() {
  if [[ "$2" == *"$3"* ]]; then pass "$1"; else
    fail "$1" "expected to contain: $3" "actual: $(printf '%s' "$2" | head -c 2000)"
    return 1
  fi
}
# assert_not_contains NAME HAYSTACK NEEDLE
assert_not_contains() {
  if [[ "$2" != *"$3"* ]]; then pass "$1"; else
    fail "$1" "expected not to contain: $3" "actual: $(printf '%s' "$2" | head -c 2000)"
    return 1
  fi
}

# Last http_req results: status code, headers file, body file.
HTTP_CODE=
HTTP_HEADERS=
HTTP_BODY=
# http_req CURL_ARGS...: one request with curl; sets HTTP_CODE, HTTP_HEADERS, HTTP_BODY.
http_req() {
  HTTP_HEADERS=$E2E_TMP/http.headers
  HTTP_BODY=$E2E_TMP/http.body
  HTTP_CODE=$(curl -sS --max-time 60 -o "$HTTP_BODY" -D "$HTTP_HEADERS" -w '%{http_code}' "$@") || {
    HTTP_CODE=${HTTP_CODE:-000}
    return 0
  }
}
# http_header NAME: a header of the last http_req (case-insensitive, last one wins, CR stripped).
http_header() {
  awk -v h="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" '
    { line=$0; sub(/\r$/, "", line); i=index(line, ":"); if (i == 0) next
      k=tolower(substr(line, 1, i-1)); if (k == h) { v=substr(line, i+1); sub(/^[ \t]+/, "", v); out=v } }
    END { if (out != "") print out }' "$HTTP_HEADERS"
}
# assert_http NAME EXPECTED_CODE CURL_ARGS...: a request whose status must be EXPECTED_CODE
# (a regex such as 20[0-9] is allowed). Prints headers and body on failure.
assert_http() {
  local name=$1 want=$2
  shift 2
  http_req "$@"
  if [[ "$HTTP_CODE" =~ ^($want)$ ]]; then
    pass "$name"
  else
    fail "$name" "expected HTTP $want, got $HTTP_CODE from: curl $*"
    sed 's/^/      < /' "$HTTP_HEADERS" 2>/dev/null | tr -d '\r' | head -n 20
    if [ -s "$HTTP_BODY" ] && ! head -c 5 "$HTTP_BODY" | grep -q '^HTTP/'; then # (-I writes headers there)
      head -c 1500 "$HTTP_BODY" | sed 's/^/      | /'
      echo
    fi
    return 1
  fi
}

# e2e_finish: print the closing line and exit with the verdict (the EXIT trap cleans up).
e2e_finish() {
  local name
  for name in "${!SRV_PID[@]}"; do # a server that died during the run is a failure too
    kill -0 "${SRV_PID[$name]}" 2>/dev/null || stop_server "$name"
  done
  echo
  if [ "$E2E_FAILED" -gt 0 ]; then
    printf 'Failed checks in %s:\n' "$E2E_NAME"
    printf '  - %s\n' "${E2E_FAILED_NAMES[@]}"
  fi
  printf '%s: %d passed, %d failed\n' "$E2E_NAME" "$E2E_PASSED" "$E2E_FAILED"
  [ "$E2E_FAILED" -eq 0 ]
  exit
}

# ---------------------------------------------------------------------------------------------
# Set-up and clean-up

e2e_init() {
  # Lower case only: podman names an image pulled from oci:DIR after DIR, and a reference with
  # upper-case letters is invalid.
  local base=${TMPDIR:-/tmp}
  [[ "$base" =~ [A-Z] ]] && base=/tmp
  E2E_TMP=$base/e2e-$(printf '%s' "$E2E_NAME" | tr '[:upper:]' '[:lower:]')-$(openssl rand -hex 6)
  mkdir -m 0700 "$E2E_TMP" || die "cannot create $E2E_TMP"
  STEP_OUT=$E2E_TMP/step.stdout
  STEP_ERR=$E2E_TMP/step.stderr
  : >"$STEP_OUT"
  : >"$STEP_ERR"
  # The original stdout/stderr, for the traps: a signal can arrive while a step's output is
  # redirected to a file, and the trap then runs inside that redirection.
  exec 8>&1 9>&2
  trap e2e_cleanup EXIT
  trap 'echo "interrupted" >&9; exit 130' INT TERM HUP
  local tool
  for tool in curl jq tar gzip sha256sum openssl timeout unshare; do
    command -v "$tool" >/dev/null || die "missing tool: $tool (run scripts/install-test-deps)"
  done
  log "e2e $E2E_NAME: server under test = $E2E_SERVER, temp = $E2E_TMP"
}

e2e_cleanup() {
  local rc=$? name
  trap - EXIT INT TERM HUP
  exec 1>&8 2>&9
  for name in "${!SRV_PID[@]}"; do
    stop_server "$name" quiet >/dev/null 2>&1 || true
  done
  if [ "$rc" -ne 0 ] || [ "$E2E_FAILED" -gt 0 ]; then
    for name in "${!SRV_LOG[@]}"; do
      if [ -s "${SRV_LOG[$name]}" ]; then
        printf '\n----- log of server %s (%s, %s), last 40 lines -----\n' \
          "$name" "${SRV_KIND[$name]}" "${SRV_ADDR[$name]:-?}"
        tail -n 40 "${SRV_LOG[$name]}"
      fi
    done
  fi
  if [ -n "$E2E_TMP" ] && [ -d "$E2E_TMP" ]; then
    if [ -n "${E2E_KEEP_TMP:-}" ]; then
      log "kept temp folder: $E2E_TMP"
    else
      rm -rf "$E2E_TMP"
    fi
  fi
  exit "$rc"
}

# ---------------------------------------------------------------------------------------------
# Servers

# free_port: a TCP port on 127.0.0.1 that nothing listens on (below the ephemeral range, and not
# one handed out before in this run).
free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    [[ "$E2E_USED_PORTS" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      E2E_USED_PORTS+="$p "
      echo "$p"
      return 0
    fi
  done
  return 1
}

# wait_port HOST PORT [TIMEOUT]: until something accepts connections.
wait_port() {
  local deadline=$((SECONDS + ${3:-$E2E_START_TIMEOUT}))
  while [ "$SECONDS" -lt "$deadline" ]; do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# wait_ready NAME [CODE]: until GET /v2/ answers CODE (default 200), the server dies, or
# E2E_START_TIMEOUT passes.
wait_ready() {
  local name=$1 want=${2:-200} code deadline=$((SECONDS + E2E_START_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "${SRV_PID[$name]}" 2>/dev/null; then
      local st=0
      wait "${SRV_PID[$name]}" 2>/dev/null || st=$?
      warn "server $name (${SRV_KIND[$name]}) exited with status $st before it was ready (its log follows at the end)"
      unset 'SRV_PID[$name]'
      return 1
    fi
    code=$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://${SRV_ADDR[$name]}/v2/" || true)
    [ "$code" = "$want" ] && return 0
    sleep 0.1
  done
  warn "server $name (${SRV_KIND[$name]}) at ${SRV_ADDR[$name]} not ready after ${E2E_START_TIMEOUT}s (last GET /v2/: $code, want $want; its log follows at the end)"
  return 1
}

# The environment a server starts with: ours, less every REGISTRY_* variable (distribution and our
# server both read REGISTRY_* as configuration) and AWS_CA_BUNDLE (distribution 2.8 panics with it).
server_env_cmd() {
  local v
  SERVER_ENV=(env -u AWS_CA_BUNDLE)
  for v in $(compgen -e); do
    case "$v" in REGISTRY_*) SERVER_ENV+=(-u "$v") ;; esac
  done
}

_launch() { # NAME KIND DATADIR LOG CMD...
  local name=$1 kind=$2 data=$3 logf=$4
  shift 4
  [ -z "${SRV_PID[$name]:-}" ] || die "server $name is already running"
  "$@" >"$logf" 2>&1 8>&- 9>&- </dev/null &
  SRV_PID[$name]=$!
  SRV_KIND[$name]=$kind
  SRV_LOG[$name]=$logf
  SRV_DATA[$name]=$data
}

# ours_bin: path of our server binary.
ours_bin() {
  if [ -n "${IMAGE_REGISTRY_BIN:-}" ]; then
    echo "$IMAGE_REGISTRY_BIN"
    return
  fi
  local target=${CARGO_TARGET_DIR:-}
  if [ -z "$target" ]; then
    target=$(cd "$E2E_REPO_ROOT" && cargo metadata --offline --format-version 1 --no-deps 2>/dev/null |
      jq -r .target_directory) || target=
    [ -n "$target" ] || target=$E2E_REPO_ROOT/target
  fi
  echo "$target/$TEST_PROFILE/image-registry"
}

# launch_ours NAME STORE READY [VAR=VALUE...] [-- SERVE_ARGS...]: our server on a free port, set up
# by the VAR=VALUE settings only (plus REGISTRY_HTTP_ADDR, NO_COLOR and E2E_OURS_ENV), started as
# `image-registry serve SERVE_ARGS...` and ready once GET /v2/ answers READY (200; 401 with auth
# on). STORE says where it keeps its data (a folder, or e.g. s3://bucket), for server_data and logs.
OURS_BIN=
launch_ours() {
  local name=$1 store=$2 ready=$3 bin port vars=()
  shift 3
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    vars+=("$1")
    shift
  done
  [ $# -eq 0 ] || shift
  [ -n "$OURS_BIN" ] || OURS_BIN=$(ours_bin)
  bin=$OURS_BIN
  [ -x "$bin" ] || die "our server binary $bin is missing: build it first (cargo build --workspace)"
  port=$(free_port) || die "no free port"
  SRV_ADDR[$name]=127.0.0.1:$port
  server_env_cmd
  _launch "$name" ours "$store" "$E2E_TMP/server-$name.log" "${SERVER_ENV[@]}" \
    REGISTRY_HTTP_ADDR="127.0.0.1:$port" \
    "${vars[@]}" \
    NO_COLOR=1 \
    "${E2E_OURS_ENV[@]}" \
    "$bin" serve "$@"
  wait_ready "$name" "$ready" || die "our server $name did not start"
  log "started $name: ours (pid ${SRV_PID[$name]}) at ${SRV_ADDR[$name]} on $store"
}

# start_ours NAME DATADIR [SECRET]: our server on a free port, filesystem storage in DATADIR.
# Extra configuration: put REGISTRY_* assignments in the array E2E_OURS_ENV before the call.
start_ours() {
  local name=$1 data=$2 secret=${3:-$E2E_HTTP_SECRET}
  mkdir -p "$data"
  launch_ours "$name" "$data" 200 \
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$data" \
    REGISTRY_HTTP_SECRET="$secret" \
    REGISTRY_STORAGE_DELETE_ENABLED=true
}

# start_process NAME CMD...: a helper process (an emulator, Prometheus, a fake API) in the
# background, its output in $E2E_TMP/NAME.log (printed at the end when anything failed). It is
# stopped like a server: stop_server NAME, or at exit; dying before that counts as a failure.
start_process() {
  local name=$1
  shift
  _launch "$name" process "" "$E2E_TMP/$name.log" "$@"
}

# start_distribution NAME DATADIR [SECRET]: CNCF distribution 2.8 (Debian's docker-registry).
start_distribution() {
  local name=$1 data=$2 secret=${3:-$E2E_HTTP_SECRET} port cfg
  command -v docker-registry >/dev/null || die "docker-registry is not installed (scripts/install-test-deps)"
  port=$(free_port) || die "no free port"
  mkdir -p "$data"
  cfg=$E2E_TMP/distribution-$name.yml
  cat >"$cfg" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $secret
EOF
  SRV_ADDR[$name]=127.0.0.1:$port
  server_env_cmd
  _launch "$name" distribution "$data" "$E2E_TMP/server-$name.log" "${SERVER_ENV[@]}" \
    docker-registry serve "$cfg"
  wait_ready "$name" || die "distribution $name did not start"
  log "started $name: distribution (pid ${SRV_PID[$name]}) at ${SRV_ADDR[$name]} on $data"
}

# distribution_config NAME: the YAML config a distribution server was started with.
distribution_config() { echo "$E2E_TMP/distribution-$1.yml"; }

# start_sut NAME DATADIR [SECRET]: the server under test (E2E_SERVER).
start_sut() {
  case "$E2E_SERVER" in
  ours) start_ours "$@" ;;
  distribution) start_distribution "$@" ;;
  *) die "E2E_SERVER must be ours or distribution, not $E2E_SERVER" ;;
  esac
}

# stop_server NAME [quiet]: SIGTERM, then SIGKILL after 10 s. Only the pid recorded at start is
# signalled. A server that had already exited by itself counts as a failed check (unless quiet).
stop_server() {
  local name=$1 pid=${SRV_PID[$1]:-} i st=0
  [ -n "$pid" ] || return 0
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || st=$?
    unset 'SRV_PID[$name]'
    [ -n "${2:-}" ] || fail "server $name (${SRV_KIND[$name]}) exited by itself before it was stopped (status $st)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "server $name (pid $pid) ignored SIGTERM for 10 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  unset 'SRV_PID[$name]'
  log "stopped $name"
}

server_addr() { echo "${SRV_ADDR[$1]}"; }
server_url() { echo "http://${SRV_ADDR[$1]}"; }
server_data() { echo "${SRV_DATA[$1]}"; }
server_log() { echo "${SRV_LOG[$1]}"; }

E2E_HTTP_SECRET=${E2E_HTTP_SECRET:-$(openssl rand -hex 32)}
# Never send loopback traffic through a proxy (curl, skopeo, podman all read these).
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

# ---------------------------------------------------------------------------------------------
# Container tools in a sandbox

CTR_DIR=
# ctr_sandbox_init: private storage (vfs), containers.conf, registries.conf, auth file, TMPDIR,
# HOME and blob-info cache for skopeo/podman/buildah, all under $E2E_TMP/ctr.
ctr_sandbox_init() {
  CTR_DIR=$E2E_TMP/ctr
  mkdir -p "$CTR_DIR"/{root,runroot,tmp,cache,home,libpod-tmp,volumes,networks}
  cat >"$CTR_DIR/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$CTR_DIR/root"
runroot = "$CTR_DIR/runroot"
EOF
  cat >"$CTR_DIR/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "$CTR_DIR/libpod-tmp"
volume_path = "$CTR_DIR/volumes"
image_copy_tmp_dir = "$CTR_DIR/tmp"

[network]
network_config_dir = "$CTR_DIR/networks"
EOF
  cat >"$CTR_DIR/registries.conf" <<EOF
unqualified-search-registries = []
EOF
  echo '{"auths":{}}' >"$CTR_DIR/auth.json"
  # The mount point for the private cache; the host's folder stays empty.
  mkdir -p /var/lib/containers/cache || die "cannot create /var/lib/containers/cache"
  local tool
  for tool in skopeo podman buildah; do
    command -v "$tool" >/dev/null || die "missing tool: $tool (run scripts/install-test-deps)"
  done
}

# ctr_insecure HOST:PORT: let podman/buildah use plain HTTP there (skopeo needs --tls-verify=false).
ctr_insecure() {
  grep -qF "location = \"$1\"" "$CTR_DIR/registries.conf" && return 0
  cat >>"$CTR_DIR/registries.conf" <<EOF

[[registry]]
location = "$1"
insecure = true
EOF
}

# ctr TOOL ARGS...: run skopeo/podman/buildah in the sandbox, in a private mount namespace whose
# /var/lib/containers/cache is the sandbox's and whose /run is an empty tmpfs (podman makes
# /run/containers/networks there), under a timeout of E2E_STEP_TIMEOUT seconds.
ctr() {
  [ -n "$CTR_DIR" ] || die "ctr_sandbox_init was not called"
  # shellcheck disable=SC2016 # $0 and $@ belong to the inner sh
  # --foreground keeps the tool in our process group, so a signal to the group (test-all's
  # phase time limit) reaches it too.
  timeout --foreground -k 10 "$E2E_STEP_TIMEOUT" \
    env -u XDG_CONFIG_HOME -u XDG_RUNTIME_DIR -u CONTAINER_HOST -u CONTAINER_CONNECTION \
    HOME="$CTR_DIR/home" TMPDIR="$CTR_DIR/tmp" \
    CONTAINERS_STORAGE_CONF="$CTR_DIR/storage.conf" \
    CONTAINERS_CONF="$CTR_DIR/containers.conf" \
    CONTAINERS_REGISTRIES_CONF="$CTR_DIR/registries.conf" \
    REGISTRY_AUTH_FILE="$CTR_DIR/auth.json" \
    unshare -m --propagation private -- \
    sh -c 'mount --bind "$0" /var/lib/containers/cache && mount -t tmpfs -o mode=0755 e2e-run /run && exec "$@"' \
    "$CTR_DIR/cache" "$@" 8>&- 9>&-
}

# ---------------------------------------------------------------------------------------------
# OCI image layouts, written by hand (no network, no registry)

MT_OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_OCI_INDEX=application/vnd.oci.image.index.v1+json
MT_OCI_CONFIG=application/vnd.oci.image.config.v1+json
MT_OCI_LAYER_GZIP=application/vnd.oci.image.layer.v1.tar+gzip
MT_DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
MT_DOCKER_LIST=application/vnd.docker.distribution.manifest.list.v2+json

# oci_init DIR: an empty layout (oci-layout, index.json, blobs/sha256).
oci_init() {
  mkdir -p "$1/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
  [ -f "$1/index.json" ] || printf '{"schemaVersion":2,"manifests":[]}' >"$1/index.json"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# oci_add_blob DIR FILE: move FILE into the layout's blob store; prints sha256:HEX.
oci_add_blob() {
  local hex
  hex=$(sha256_of "$2")
  mv -f "$2" "$1/blobs/sha256/$hex"
  echo "sha256:$hex"
}

# oci_blob DIR DIGEST: path of a blob in a layout.
oci_blob() { echo "$1/blobs/sha256/${2#sha256:}"; }

# oci_tag DIR MEDIATYPE DIGEST SIZE TAG: point TAG (index.json ref.name) at a descriptor.
oci_tag() {
  local dir=$1 tmp
  tmp=$(mktemp "$E2E_TMP/index.XXXXXX")
  jq -c --arg mt "$2" --arg d "$3" --argjson s "$4" --arg t "$5" '
    .manifests |= (map(select(.annotations["org.opencontainers.image.ref.name"] != $t))
      + [{mediaType: $mt, digest: $d, size: $s,
          annotations: {"org.opencontainers.image.ref.name": $t}}])' "$dir/index.json" >"$tmp"
  mv -f "$tmp" "$dir/index.json"
}

# oci_ref DIR TAG: the digest index.json gives for TAG.
oci_ref() {
  jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
    "$1/index.json"
}

# oci_layer_digests DIR MANIFEST_DIGEST: the layer digests of a manifest in a layout, one a line.
oci_layer_digests() { jq -r '.layers[].digest' "$(oci_blob "$1" "$2")"; }

# Results of the last oci_make_layer / oci_make_image / oci_make_multiarch:
OCI_LAYER_DIGEST='' OCI_LAYER_SIZE='' OCI_LAYER_DIFFID=''
OCI_MANIFEST_DIGEST='' OCI_MANIFEST_SIZE='' OCI_CONFIG_DIGEST='' OCI_LAYER_DIGESTS=()
OCI_INDEX_DIGEST='' OCI_INDEX_SIZE='' OCI_CHILD_DIGESTS=() OCI_CHILD_CONFIGS=()

# oci_make_layer DIR SEED [KIB]: a gzipped tar layer holding a few files (and KIB KiB of
# pseudo-random bytes derived from SEED). Sets OCI_LAYER_DIGEST, OCI_LAYER_SIZE, OCI_LAYER_DIFFID.
oci_make_layer() {
  local dir=$1 seed=$2 kib=${3:-0} work
  work=$(mktemp -d "$E2E_TMP/layer.XXXXXX")
  mkdir -p "$work/root/etc/e2e" "$work/root/bin"
  printf 'layer %s\n' "$seed" >"$work/root/etc/e2e/$seed.txt"
  printf '#!/bin/sh\necho hello from %s\n' "$seed" >"$work/root/bin/hello-$seed"
  chmod 0755 "$work/root" "$work/root/etc" "$work/root/etc/e2e" "$work/root/bin" "$work/root/bin/hello-$seed"
  chmod 0644 "$work/root/etc/e2e/$seed.txt"
  if [ "$kib" -gt 0 ]; then
    head -c $((kib * 1024)) /dev/zero |
      openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass "pass:$seed" >"$work/root/etc/e2e/$seed.bin"
    chmod 0644 "$work/root/etc/e2e/$seed.bin"
  fi
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$work/root" -cf "$work/layer.tar" .
  OCI_LAYER_DIFFID=sha256:$(sha256_of "$work/layer.tar")
  gzip -n -6 <"$work/layer.tar" >"$work/layer.tar.gz"
  OCI_LAYER_SIZE=$(size_of "$work/layer.tar.gz")
  OCI_LAYER_DIGEST=$(oci_add_blob "$dir" "$work/layer.tar.gz")
  rm -rf "$work"
}

# oci_make_image DIR TAG [ARCH] [SEED] [LAYERS] [KIB]: an image (config + LAYERS layers + OCI
# manifest) for linux/ARCH; TAG may be empty (untagged, e.g. the child of an index). Sets
# OCI_MANIFEST_DIGEST, OCI_MANIFEST_SIZE, OCI_CONFIG_DIGEST, OCI_LAYER_DIGESTS.
oci_make_image() {
  local dir=$1 tag=$2 arch=${3:-amd64} seed=${4:-$2} nlayers=${5:-2} kib=${6:-64}
  local i layers='[]' diffids='[]' history='[]' variant='' f cfg_digest cfg_size
  oci_init "$dir"
  OCI_LAYER_DIGESTS=()
  for i in $(seq 1 "$nlayers"); do
    oci_make_layer "$dir" "$seed-$arch-$i" "$kib"
    OCI_LAYER_DIGESTS+=("$OCI_LAYER_DIGEST")
    layers=$(jq -c --arg mt "$MT_OCI_LAYER_GZIP" --arg d "$OCI_LAYER_DIGEST" --argjson s "$OCI_LAYER_SIZE" \
      '. + [{mediaType: $mt, digest: $d, size: $s}]' <<<"$layers")
    diffids=$(jq -c --arg d "$OCI_LAYER_DIFFID" '. + [$d]' <<<"$diffids")
    history=$(jq -c --arg c "e2e layer $i of $seed" '. + [{created: "1970-01-01T00:00:00Z", created_by: $c}]' <<<"$history")
  done
  [ "$arch" = arm64 ] && variant=v8
  f=$(mktemp "$E2E_TMP/config.XXXXXX")
  jq -cn --arg arch "$arch" --arg variant "$variant" --arg seed "$seed" \
    --argjson diffids "$diffids" --argjson history "$history" '
    {created: "1970-01-01T00:00:00Z", architecture: $arch, os: "linux",
     config: {Env: ["PATH=/usr/local/bin:/usr/bin:/bin"], Cmd: ["/bin/sh"], Labels: {"e2e.seed": $seed}},
     rootfs: {type: "layers", diff_ids: $diffids}, history: $history}
    + (if $variant != "" then {variant: $variant} else {} end)' >"$f"
  cfg_size=$(size_of "$f")
  cfg_digest=$(oci_add_blob "$dir" "$f")
  OCI_CONFIG_DIGEST=$cfg_digest
  f=$(mktemp "$E2E_TMP/manifest.XXXXXX")
  jq -cn --arg mt "$MT_OCI_MANIFEST" --arg cmt "$MT_OCI_CONFIG" --arg cd "$cfg_digest" \
    --argjson cs "$cfg_size" --argjson layers "$layers" --arg seed "$seed" '
    {schemaVersion: 2, mediaType: $mt, config: {mediaType: $cmt, digest: $cd, size: $cs},
     layers: $layers, annotations: {"org.opencontainers.image.title": $seed}}' >"$f"
  OCI_MANIFEST_SIZE=$(size_of "$f")
  OCI_MANIFEST_DIGEST=$(oci_add_blob "$dir" "$f")
  if [ -n "$tag" ]; then
    oci_tag "$dir" "$MT_OCI_MANIFEST" "$OCI_MANIFEST_DIGEST" "$OCI_MANIFEST_SIZE" "$tag"
  fi
}

# oci_make_multiarch DIR TAG SEED ARCH...: one image per ARCH and an OCI image index over them,
# tagged TAG. Sets OCI_INDEX_DIGEST, OCI_INDEX_SIZE, OCI_CHILD_DIGESTS and OCI_CHILD_CONFIGS
# (manifest and config digests, in ARCH order).
oci_make_multiarch() {
  local dir=$1 tag=$2 seed=$3 arch entries='[]' f
  shift 3
  OCI_CHILD_DIGESTS=()
  OCI_CHILD_CONFIGS=()
  for arch in "$@"; do
    oci_make_image "$dir" "" "$arch" "$seed" 1 16
    OCI_CHILD_DIGESTS+=("$OCI_MANIFEST_DIGEST")
    OCI_CHILD_CONFIGS+=("$OCI_CONFIG_DIGEST")
    entries=$(jq -c --arg mt "$MT_OCI_MANIFEST" --arg d "$OCI_MANIFEST_DIGEST" \
      --argjson s "$OCI_MANIFEST_SIZE" --arg arch "$arch" '
      . + [{mediaType: $mt, digest: $d, size: $s,
            platform: ({architecture: $arch, os: "linux"}
              + (if $arch == "arm64" then {variant: "v8"} else {} end))}]' <<<"$entries")
  done
  f=$(mktemp "$E2E_TMP/index.XXXXXX")
  jq -cn --arg mt "$MT_OCI_INDEX" --argjson m "$entries" \
    '{schemaVersion: 2, mediaType: $mt, manifests: $m}' >"$f"
  OCI_INDEX_SIZE=$(size_of "$f")
  OCI_INDEX_DIGEST=$(oci_add_blob "$dir" "$f")
  oci_tag "$dir" "$MT_OCI_INDEX" "$OCI_INDEX_DIGEST" "$OCI_INDEX_SIZE" "$tag"
}

# ---------------------------------------------------------------------------------------------
# Registry helpers built on skopeo and curl

# registry_digest ADDR REPO REF [skopeo args]: sha256 of the raw manifest the registry serves, or
# "error: ..." (for assert_eq to show) when skopeo fails.
registry_digest() {
  local addr=$1 repo=$2 ref=$3 sep=: out
  shift 3
  [[ "$ref" == sha256:* ]] && sep=@
  out=$(mktemp "$E2E_TMP/raw.XXXXXX")
  if ctr skopeo inspect --raw --tls-verify=false "$@" "docker://$addr/$repo$sep$ref" >"$out" 2>"$out.err"; then
    echo "sha256:$(sha256_of "$out")"
  else
    echo "error: skopeo inspect --raw docker://$addr/$repo$sep$ref: $(tail -n 3 "$out.err" | tr '\n' ' ')"
  fi
  rm -f "$out" "$out.err"
}

# blob_sha256 URL: sha256 of a blob fetched by GET (follows redirects), or "error: ...".
blob_sha256() {
  local out code
  out=$(mktemp "$E2E_TMP/blob.XXXXXX")
  code=$(curl -sSL --max-time 120 -o "$out" -w '%{http_code}' "$1" 2>&1) || true
  if [ "$code" = 200 ]; then
    echo "sha256:$(sha256_of "$out")"
  else
    echo "error: GET $1 -> HTTP $code: $(head -c 300 "$out" | tr '\n' ' ')"
  fi
  rm -f "$out"
}
