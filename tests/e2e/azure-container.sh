#!/usr/bin/env bash
# tests/e2e/azure-container.sh ENDPOINT ACCOUNT KEY CONTAINER — creates a blob container with a
# SharedKey-signed `PUT ?restype=container` (object_store, our Azure client, cannot create
# containers). ENDPOINT is the account's blob endpoint (Azurite: http://127.0.0.1:PORT/ACCOUNT), KEY
# the base64 account key.
#
# The one implementation of this signing for tests and loadgen: tests/e2e/storage-emulators.sh
# calls it before starting the registry on Azurite, the Rust driver suite
# (src/storage/cloud_tests.rs) before its Azure tests, and benches/loadgen for its containers. (The
# benchmark's own-put client, benches/object-stores.py, signs its Put Block calls itself, in
# Python, so that the store's own speed is measured by a client independent of ours.) A script rather than Rust because the e2e side needs it without
# building anything, and the driver suite only runs where that script already runs (next to the
# emulators, with curl and openssl installed).
#
# Exit status: 0 created, 2 the container already exists (HTTP 409), 1 any other failure (the
# answer is printed on stderr).
set -euo pipefail

[ $# -eq 4 ] || {
  echo "usage: $0 ENDPOINT ACCOUNT KEY CONTAINER" >&2
  exit 1
}
endpoint=${1%/} account=$2 key=$3 container=$4
version=2021-08-06

# The canonicalized resource is /ACCOUNT followed by the URL's path (Azurite's path starts with
# the account too: /ACCOUNT/ACCOUNT/CONTAINER).
rest=${endpoint#*://}
path=
[[ "$rest" != */* ]] || path=/${rest#*/}
date=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
hexkey=$(printf '%s' "$key" | base64 -d | od -An -vtx1 | tr -d ' \n')
sig=$(printf 'PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:%s\nx-ms-version:%s\n/%s%s/%s\nrestype:container' \
  "$date" "$version" "$account" "$path" "$container" |
  openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64 -w0)

body=$(mktemp)
trap 'rm -f "$body"' EXIT
code=$(curl -sS -o "$body" -w '%{http_code}' -X PUT \
  -H "x-ms-date: $date" -H "x-ms-version: $version" -H 'Content-Length: 0' \
  -H "Authorization: SharedKey $account:$sig" \
  "$endpoint/$container?restype=container") || code=000
case "$code" in
201) exit 0 ;;
409) exit 2 ;;
*)
  echo "create container $container at $endpoint: HTTP $code $(head -c 2000 "$body")" >&2
  exit 1
  ;;
esac
