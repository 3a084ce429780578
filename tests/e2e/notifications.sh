#!/usr/bin/env bash
# tests/e2e/notifications.sh — webhook notifications side by side with CNCF distribution 2.8
# (Debian's docker-registry): both send their notifications to real receivers (a small Python
# HTTP server each, recording every POST); the same operations go to both (blob pushes, a manifest
# push by tag, GET and HEAD of a manifest and of a blob, a cross-repository mount, a manifest
# delete by digest);
# then the envelopes are compared field by field: Content-Type, the sequence of actions, every
# event's set of keys (top level, target, request, source, actor) and the target's values (URLs
# with the host normalised), the request's method and user agent.
#
#   tests/e2e/notifications.sh
#
# Prints PASS/FAIL per check and closes with "notifications: N passed, M failed".
# shellcheck disable=SC2317 # functions called through `step` look unreachable to shellcheck
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
command -v docker-registry >/dev/null || die "docker-registry is not installed (scripts/install-test-deps)"

cat >"$E2E_TMP/receiver.py" <<'PY'
import http.server, json, sys
out = open(sys.argv[2], "a")
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        out.write(json.dumps({"ct": self.headers.get("content-type"), "body": json.loads(body)}) + "\n")
        out.flush()
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY

section "receivers"
RD_PORT=$(free_port) || die "no free port"
RO_PORT=$(free_port) || die "no free port"
start_process recv-dist python3 "$E2E_TMP/receiver.py" "$RD_PORT" "$E2E_TMP/dist.jsonl"
start_process recv-ours python3 "$E2E_TMP/receiver.py" "$RO_PORT" "$E2E_TMP/ours.jsonl"
wait_port 127.0.0.1 "$RD_PORT" || die "receiver did not start"
wait_port 127.0.0.1 "$RO_PORT" || die "receiver did not start"

section "servers"
# distribution 2.8 with a notifications endpoint (its own config file).
DPORT=$(free_port) || die "no free port"
mkdir -p "$E2E_TMP/dist-data"
cat >"$E2E_TMP/distribution-notify.yml" <<EOF2
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $E2E_TMP/dist-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$DPORT
  secret: $E2E_HTTP_SECRET
notifications:
  endpoints:
    - name: recv
      url: http://127.0.0.1:$RD_PORT/events
      timeout: 1s
      threshold: 3
      backoff: 1s
EOF2
SRV_ADDR[dist]=127.0.0.1:$DPORT
server_env_cmd
_launch dist distribution "$E2E_TMP/dist-data" "$E2E_TMP/server-dist.log" "${SERVER_ENV[@]}" \
  docker-registry serve "$E2E_TMP/distribution-notify.yml"
wait_ready dist || die "distribution did not start"
mkdir -p "$E2E_TMP/ours-data"
launch_ours ours "$E2E_TMP/ours-data" 200 \
  REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$E2E_TMP/ours-data" \
  REGISTRY_HTTP_SECRET="$E2E_HTTP_SECRET" \
  REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME=recv \
  REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL="http://127.0.0.1:$RO_PORT/events"

# ops URL: the same operations against one server.
printf 'layer-bytes-for-notifications' >"$E2E_TMP/layer"
printf '{"architecture":"amd64","os":"linux"}' >"$E2E_TMP/cfg"
L=sha256:$(sha256sum "$E2E_TMP/layer" | cut -d' ' -f1)
C=sha256:$(sha256sum "$E2E_TMP/cfg" | cut -d' ' -f1)
cat >"$E2E_TMP/man" <<EOF2
{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":$(stat -c%s "$E2E_TMP/cfg"),"digest":"$C"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":$(stat -c%s "$E2E_TMP/layer"),"digest":"$L"}]}
EOF2
M=sha256:$(sha256sum "$E2E_TMP/man" | cut -d' ' -f1)

upload() { # BASE FILE DIGEST: POST a session, PUT the bytes with the digest
  local loc sep
  loc=$(curl -sf -o /dev/null -D - -X POST -A e2e-notify/1 "$1/v2/ns/app/blobs/uploads/" |
    tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case "$loc" in http*) ;; *) loc="$1$loc" ;; esac
  case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -sf -o /dev/null -X PUT -A e2e-notify/1 -H 'Content-Type: application/octet-stream' \
    --data-binary "@$2" "$loc${sep}digest=$3"
}

ops() {
  local b=$1
  upload "$b" "$E2E_TMP/layer" "$L" &&
    upload "$b" "$E2E_TMP/cfg" "$C" &&
    curl -sf -o /dev/null -X PUT -A e2e-notify/1 \
      -H 'Content-Type: application/vnd.docker.distribution.manifest.v2+json' \
      --data-binary "@$E2E_TMP/man" "$b/v2/ns/app/manifests/v1" &&
    curl -sf -o /dev/null -A e2e-notify/1 \
      -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "$b/v2/ns/app/manifests/v1" &&
    curl -sf -o /dev/null -I -A e2e-notify/1 \
      -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "$b/v2/ns/app/manifests/v1" &&
    curl -sf -o /dev/null -A e2e-notify/1 "$b/v2/ns/app/blobs/$L" &&
    curl -sf -o /dev/null -I -A e2e-notify/1 "$b/v2/ns/app/blobs/$L" &&
    curl -sf -o /dev/null -X POST -A e2e-notify/1 "$b/v2/ns/other/blobs/uploads/?mount=$L&from=ns/app" &&
    curl -sf -o /dev/null -X DELETE -A e2e-notify/1 "$b/v2/ns/app/manifests/$M"
}

section "the same operations on both"
step "[distribution] push, pull, mount, delete" ops "$(server_url dist)"
step "[ours] push, pull, mount, delete" ops "$(server_url ours)"

wait_events() { # FILE N
  local i
  for i in $(seq 1 100); do
    [ "$(python3 -c 'import json,sys; print(sum(len(json.loads(l)["body"]["events"]) for l in open(sys.argv[1])))' "$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
# 2 blob pushes, manifest push, 4 pulls (GET and HEAD of the manifest and of a blob: distribution
# announces a HEAD as a pull with request.method HEAD), mount, manifest delete, tag delete.
step "distribution delivered 10 events" wait_events "$E2E_TMP/dist.jsonl" 10
step "ours delivered 10 events" wait_events "$E2E_TMP/ours.jsonl" 10

section "envelopes, field by field"
compare() {
  python3 - "$E2E_TMP/dist.jsonl" "$E2E_TMP/ours.jsonl" <<'PY'
import json, re, sys
def load(f):
    cts, evs = set(), []
    for line in open(f):
        d = json.loads(line)
        cts.add(d["ct"])
        assert set(d["body"]) == {"events"}, d["body"].keys()
        evs += d["body"]["events"]
    return cts, evs
(dc, d), (oc, o) = load(sys.argv[1]), load(sys.argv[2])
bad = []
if dc != oc: bad.append(f"content types {dc} vs {oc}")
if [e["action"] for e in d] != [e["action"] for e in o]:
    bad.append(f"actions {[e['action'] for e in d]} vs {[e['action'] for e in o]}")
host = lambda v: re.sub(r"127\.0\.0\.1:\d+", "HOST", v) if isinstance(v, str) else v
for i, (a, b) in enumerate(zip(d, o)):
    where = f"event {i} ({a['action']})"
    for part in (None, "target", "request", "source", "actor"):
        ka = set(a if part is None else a[part]); kb = set(b if part is None else b[part])
        if ka != kb: bad.append(f"{where} {part or 'top'} keys {sorted(ka)} vs {sorted(kb)}")
    ta = {k: host(v) for k, v in a["target"].items()}; tb = {k: host(v) for k, v in b["target"].items()}
    if ta != tb: bad.append(f"{where} target {ta} vs {tb}")
    for k in ("method", "useragent"):
        if a["request"][k] != b["request"][k]: bad.append(f"{where} request.{k} {a['request'][k]} vs {b['request'][k]}")
for line in bad: print(line)
print(f"{len(d)} events compared, {len(bad)} differences")
sys.exit(1 if bad else 0)
PY
}
step "same content type, actions, keys and targets as distribution 2.8" compare
cat "$STEP_OUT"

stop_server ours
stop_server dist
stop_server recv-ours
stop_server recv-dist
e2e_finish
