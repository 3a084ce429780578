#!/usr/bin/env bash
# tests/e2e/ops.sh — operating the registry with real tools:
#   1. metrics: /extensions/v2/metrics refuses scrapes without the metrics secret, `promtool check
#      metrics` accepts the exposition, and a real Prometheus (Debian `prometheus`) scraping with the
#      secret reports up == 1 and stores imageregistry_* series;
#   2. readOnly: skopeo push to a read-only registry fails with a readable "read-only" message, while
#      inspect and pull keep working; skopeo delete fails the same way.
#
#   tests/e2e/ops.sh        # against our server (target/$TEST_PROFILE/image-registry)
#
# Needs: skopeo, curl, jq, openssl (scripts/install-test-deps) and prometheus + promtool
# (`apt-get install -y prometheus`). Prints PASS/FAIL per check and "ops: N passed, M failed".
# Everything it starts (our servers, Prometheus) is stopped by pid on exit.
# shellcheck disable=SC2317 # functions called through `step` look unreachable to shellcheck
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
for tool in prometheus promtool skopeo; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (apt-get install -y prometheus skopeo)"
done

# ---------------------------------------------------------------------------------------------
section "metrics: secret, promtool, a real Prometheus scrape"
METRICS_SECRET=$(openssl rand -hex 16)
printf '%s' "$METRICS_SECRET" >"$E2E_TMP/metrics-secret"
E2E_OURS_ENV=(REGISTRY_METRICS_ENABLED=true "REGISTRY_METRICS_SECRET=$METRICS_SECRET")
start_ours metrics "$E2E_TMP/data-metrics"
A=$(server_addr metrics)
E2E_OURS_ENV=()
M="http://$A/extensions/v2/metrics"

# Some traffic to count.
curl -sS -o /dev/null "http://$A/v2/" || :
curl -sS -o /dev/null "http://$A/v2/ns/app/manifests/missing" || :
curl -sS -o /dev/null -X POST "http://$A/v2/ns/app/blobs/uploads/" || :

assert_http "metrics without credentials: 401" 401 "$M" || :
assert_http "metrics with a wrong secret: 401" 401 -u "anyuser:wrong" "$M" || :
assert_http "metrics with the secret as a Bearer token: 200" 200 -H "Authorization: Bearer $METRICS_SECRET" "$M" || :
if assert_http "metrics with the secret as a Basic password: 200" 200 -u "anyuser:$METRICS_SECRET" "$M"; then
  cp "$HTTP_BODY" "$E2E_TMP/scrape.txt"
  log "a few lines of the scrape:"
  grep -E '^imageregistry_(build_info|http_requests_total|request_duration_seconds_count|storage_duration_seconds_count\{operation="stat"|http_limiter_running)' \
    "$E2E_TMP/scrape.txt" | head -n 12 | sed 's/^/      /'
  # imageregistry_build_info keeps the OpenShift registry's label names (gitCommit, gitVersion):
  # that one lint finding is expected, nothing else is allowed.
  lint=$(promtool check metrics <"$E2E_TMP/scrape.txt" 2>&1 |
    grep -v "^imageregistry_build_info label names should be written in 'snake_case' not 'camelCase'$" |
    grep -v '^$' || true)
  assert_eq "promtool check metrics: no findings (besides build_info's OpenShift label names)" "" "$lint" || :
fi

PPORT=$(free_port) || die "no free port"
cat >"$E2E_TMP/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: image-registry
    metrics_path: /extensions/v2/metrics
    basic_auth:
      username: prometheus
      password_file: $E2E_TMP/metrics-secret
    static_configs:
      - targets: ["$A"]
YAML
step "promtool check config" promtool check config "$E2E_TMP/prometheus.yml" || :
server_env_cmd
start_process prometheus "${SERVER_ENV[@]}" \
  prometheus --config.file="$E2E_TMP/prometheus.yml" --storage.tsdb.path="$E2E_TMP/tsdb" \
  --web.listen-address="127.0.0.1:$PPORT" --log.level=warn
wait_port 127.0.0.1 "$PPORT" 60 || die "prometheus did not start (log: $E2E_TMP/prometheus.log)"
log "started prometheus (pid ${SRV_PID[prometheus]}) at 127.0.0.1:$PPORT"

# prom_query EXPR: the first value of an instant query, or empty.
prom_query() {
  curl -sS --max-time 5 -G "http://127.0.0.1:$PPORT/api/v1/query" --data-urlencode "query=$1" |
    jq -r '.data.result[0].value[1] // empty' 2>/dev/null || true
}
up=''
for _ in $(seq 1 120); do
  up=$(prom_query 'up{job="image-registry"}')
  [ "$up" = 1 ] && break
  sleep 0.5
done
assert_eq "Prometheus scrapes the registry with the secret: up == 1" 1 "$up" || {
  curl -sS "http://127.0.0.1:$PPORT/api/v1/targets" | jq -c '.data.activeTargets[] | {health, lastError}' || :
}
target=$(curl -sS "http://127.0.0.1:$PPORT/api/v1/targets" | jq -r '.data.activeTargets[0].health // empty')
assert_eq "target health in /api/v1/targets" up "$target" || :
n=$(prom_query 'count({__name__=~"imageregistry_.*"})')
assert_ne "Prometheus stored imageregistry_* series" "" "$n" || :
log "Prometheus holds $n imageregistry_* series; sum(imageregistry_http_requests_total) = $(prom_query 'sum(imageregistry_http_requests_total)')"
stop_server prometheus
stop_server metrics

# ---------------------------------------------------------------------------------------------
section "readOnly: skopeo push refused with a readable message, reads work"
ctr_sandbox_init
L=$E2E_TMP/layout
oci_make_image "$L" v1 amd64 ro 1 32
V1=$OCI_MANIFEST_DIGEST
start_ours rw "$E2E_TMP/data-ro"
RW=$(server_addr rw)
step "push ns/app:v1 while writable" \
  ctr skopeo copy --dest-tls-verify=false "oci:$L:v1" "docker://$RW/ns/app:v1" || :
stop_server rw

E2E_OURS_ENV=(REGISTRY_READONLY=true)
start_ours ro "$E2E_TMP/data-ro"
E2E_OURS_ENV=()
RO=$(server_addr ro)
oci_make_image "$L" v2 amd64 ro-v2 1 32
if step "skopeo push to the read-only registry fails" \
  expect_fail ctr skopeo copy --dest-tls-verify=false "oci:$L:v2" "docker://$RO/ns/app:v2"; then
  err=$(cat "$STEP_ERR" "$STEP_OUT")
  assert_contains "skopeo's message says the registry is read-only" "$err" "read-only mode" || :
  log "skopeo said: $(tail -n 1 "$STEP_ERR")"
fi
assert_eq "skopeo inspect works in read-only mode" "$V1" "$(registry_digest "$RO" ns/app v1)" || :
step "skopeo copy (pull) works in read-only mode" \
  ctr skopeo copy --src-tls-verify=false "docker://$RO/ns/app:v1" "oci:$E2E_TMP/pulled:v1" || :
if step "skopeo delete fails in read-only mode" \
  expect_fail ctr skopeo delete --tls-verify=false "docker://$RO/ns/app:v1"; then
  assert_contains "delete's message says read-only" "$(cat "$STEP_ERR" "$STEP_OUT")" "read-only" || :
fi
assert_http "a blob upload is refused with 405" 405 -X POST "http://$RO/v2/ns/app/blobs/uploads/" || :
assert_contains "the 405 body is UNSUPPORTED" "$(cat "$HTTP_BODY")" '"code":"UNSUPPORTED"' || :

e2e_finish
