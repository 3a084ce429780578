#!/usr/bin/env bash
# tests/e2e/conformance.sh — run the workspace's OCI distribution conformance runner
# (`oci-conformance`, crate in conformance/) against a fresh server under test.
#
#   tests/e2e/conformance.sh                          # against our server
#   E2E_SERVER=distribution tests/e2e/conformance.sh  # against distribution 2.8, for reference
#
# The runner is configured by OCI_ROOT_URL, OCI_NAMESPACE and OCI_CROSSMOUNT_NAMESPACE (set here;
# other OCI_* variables pass through), prints `N passed, M failed, K skipped` last, and its exit
# status is this script's. OCI_CONFORMANCE_BIN overrides the runner's path.
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
runner=${OCI_CONFORMANCE_BIN:-$(dirname "$(ours_bin)")/oci-conformance}
[ -x "$runner" ] || die "conformance runner $runner is missing: build it first (cargo build --workspace)"
start_sut sut "$E2E_TMP/data"

export OCI_ROOT_URL
OCI_ROOT_URL=$(server_url sut)
export OCI_NAMESPACE=${OCI_NAMESPACE:-conformance/repo}
export OCI_CROSSMOUNT_NAMESPACE=${OCI_CROSSMOUNT_NAMESPACE:-conformance/other}
log "running $runner: OCI_ROOT_URL=$OCI_ROOT_URL OCI_NAMESPACE=$OCI_NAMESPACE OCI_CROSSMOUNT_NAMESPACE=$OCI_CROSSMOUNT_NAMESPACE"
rc=0
timeout -k 10 "${E2E_CONFORMANCE_TIMEOUT:-600}" "$runner" || rc=$?
if [ "$rc" -ne 0 ]; then
  E2E_FAILED=1 # so the EXIT trap prints the server's log
  echo "conformance runner exited with status $rc"
fi
exit "$rc"
