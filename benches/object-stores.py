#!/usr/bin/env python3
"""Helpers of benches/object-stores.sh (run with the moto venv's python, which has boto3).

  put ENDPOINT BUCKET SIZE_MIB [PART_MIB] [IN_FLIGHT]
      The store's own multipart put throughput: one object of SIZE_MIB, parts of PART_MIB
      (default 16) with IN_FLIGHT (default 4) in flight, boto3 (same client machine, loopback).
      Prints one JSON line {"mib_s": ..., "seconds": ...}.
  get ENDPOINT BUCKET
      The store's own single-stream GET of the object `put` wrote: curl of a presigned URL to
      /dev/null (a C client, so the client is not what limits it). Same JSON line.
  az-put ENDPOINT CONTAINER SIZE_MIB [BLOCK_MIB] [IN_FLIGHT]
      The same on Azure Blob (Azurite at ENDPOINT = http://HOST:PORT/devstoreaccount1, its
      development account): creates CONTAINER, then Put Block of BLOCK_MIB (default 16) with
      IN_FLIGHT (default 4) in flight and one Put Block List. Standard library only (SharedKey
      signing below), so the client is independent of the registry's.
  az-append ENDPOINT CONTAINER SIZE_MIB [CHUNK_MIB] [BLOCK_MIB] [IN_FLIGHT]
      The ceiling of a chunked push on Azure Blob: the object grows chunk by chunk (CHUNK_MIB,
      default 16), each chunk durable before the next is sent, as a client's PATCH must be
      before its 202: Put Block of BLOCK_MIB (default 10) with IN_FLIGHT (default 3) in flight,
      then Put Block List of every block so far. Same JSON line.
  gcs-put ENDPOINT BUCKET SIZE_MIB [CHUNK_MIB]
      The same on GCS (fake-gcs-server, no credentials): creates BUCKET, then one resumable
      upload in chunks of CHUNK_MIB (default 16; the protocol sends them one after another).
  calls LOG FROM_LINE
      Classifies the S3 requests of moto's request log (werkzeug lines) after line FROM_LINE:
      prints one JSON object {"total": n, "by_call": {...}}.
"""
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def client(endpoint, in_flight=4):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(max_pool_connections=in_flight + 2, retries={"max_attempts": 1}),
    )


def put(endpoint, bucket, size_mib, part_mib=16, in_flight=4):
    s3 = client(endpoint, in_flight)
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    part = part_mib << 20
    # Distinct part bodies (moto hashes each part for its ETag, as a real store does).
    body = bytes(range(256)) * (part // 256)
    n = (size_mib << 20) // part
    t0 = time.monotonic()
    up = s3.create_multipart_upload(Bucket=bucket, Key="own-put")
    uid = up["UploadId"]

    def one(i):
        r = s3.upload_part(Bucket=bucket, Key="own-put", UploadId=uid, PartNumber=i + 1, Body=body)
        return {"PartNumber": i + 1, "ETag": r["ETag"]}

    with ThreadPoolExecutor(in_flight) as ex:
        parts = list(ex.map(one, range(n)))
    s3.complete_multipart_upload(
        Bucket=bucket, Key="own-put", UploadId=uid, MultipartUpload={"Parts": parts}
    )
    dt = time.monotonic() - t0
    print(json.dumps({"mib_s": round(size_mib / dt, 1), "seconds": round(dt, 2)}))


def get(endpoint, bucket):
    import subprocess

    s3 = client(endpoint)
    size = s3.head_object(Bucket=bucket, Key="own-put")["ContentLength"]
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "own-put"}, ExpiresIn=600)
    t0 = time.monotonic()
    out = subprocess.run(["curl", "-fsS", "-o", "/dev/null", "-w", "%{size_download}", url],
                         check=True, capture_output=True, text=True).stdout
    dt = time.monotonic() - t0
    if int(out) != size:
        sys.exit(f"GET own-put: {out} bytes, wanted {size}")
    print(json.dumps({"mib_s": round(size / (1 << 20) / dt, 1), "seconds": round(dt, 2)}))


AZ_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (no secret).
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def az_request(endpoint, method, path, query, body=b""):
    """One SharedKey-signed request to the account at ENDPOINT; returns (status, body)."""
    import base64
    import hashlib
    import hmac
    import http.client
    from email.utils import formatdate
    from urllib.parse import quote, urlsplit

    u = urlsplit(endpoint)
    full = u.path.rstrip("/") + path
    date = formatdate(usegmt=True)
    version = "2021-08-06"
    length = str(len(body)) if body else ""
    resource = f"/{AZ_ACCOUNT}{full}" + "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    to_sign = "\n".join([method, "", "", length, "", "", "", "", "", "", "", "",
                         f"x-ms-date:{date}\nx-ms-version:{version}", resource])
    sig = base64.b64encode(hmac.new(base64.b64decode(AZ_KEY), to_sign.encode(), hashlib.sha256).digest())
    qs = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    conn.request(method, f"{full}?{qs}", body=body, headers={
        "x-ms-date": date, "x-ms-version": version, "Content-Length": str(len(body)),
        "Authorization": f"SharedKey {AZ_ACCOUNT}:{sig.decode()}"})
    r = conn.getresponse()
    out = r.read()
    conn.close()
    return r.status, out


def az_container(endpoint, container):
    st, out = az_request(endpoint, "PUT", f"/{container}", {"restype": "container"})
    if st not in (201, 409):
        sys.exit(f"create container: HTTP {st} {out[:300]!r}")


def az_commit(endpoint, blob, ids):
    """Put Block List of the blocks `ids` (base64 names, latest versions) on `blob`."""
    xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>" + "".join(
        f"<Latest>{i}</Latest>" for i in ids) + "</BlockList>"
    st, out = az_request(endpoint, "PUT", blob, {"comp": "blocklist"}, xml.encode())
    if st != 201:
        sys.exit(f"put block list: HTTP {st} {out[:300]!r}")


def az_put(endpoint, container, size_mib, block_mib=16, in_flight=4):
    import base64

    az_container(endpoint, container)
    block = block_mib << 20
    body = bytes(range(256)) * (block // 256)
    n = (size_mib << 20) // block
    ids = [base64.b64encode(f"{i:08d}".encode()).decode() for i in range(n)]
    t0 = time.monotonic()

    def one(i):
        st, out = az_request(endpoint, "PUT", f"/{container}/own-put",
                             {"blockid": ids[i], "comp": "block"}, body)
        if st != 201:
            raise RuntimeError(f"put block: HTTP {st} {out[:300]!r}")

    with ThreadPoolExecutor(in_flight) as ex:
        list(ex.map(one, range(n)))
    az_commit(endpoint, f"/{container}/own-put", ids)
    dt = time.monotonic() - t0
    print(json.dumps({"mib_s": round(size_mib / dt, 1), "seconds": round(dt, 2)}))


def az_append(endpoint, container, size_mib, chunk_mib=16, block_mib=10, in_flight=3):
    import base64

    az_container(endpoint, container)
    chunk, block = chunk_mib << 20, block_mib << 20
    data = bytes(range(256)) * (chunk // 256)
    ids = []
    t0 = time.monotonic()
    with ThreadPoolExecutor(in_flight) as ex:
        for _ in range((size_mib << 20) // chunk):
            new = [(base64.b64encode(f"{len(ids) + j:08d}".encode()).decode(), off)
                   for j, off in enumerate(range(0, chunk, block))]

            def one(item):
                bid, off = item
                st, out = az_request(endpoint, "PUT", f"/{container}/own-append",
                                     {"blockid": bid, "comp": "block"}, data[off:off + block])
                if st != 201:
                    raise RuntimeError(f"put block: HTTP {st} {out[:300]!r}")

            list(ex.map(one, new))
            ids += [bid for bid, _ in new]
            az_commit(endpoint, f"/{container}/own-append", ids)
    dt = time.monotonic() - t0
    print(json.dumps({"mib_s": round(size_mib / dt, 1), "seconds": round(dt, 2)}))


def gcs_put(endpoint, bucket, size_mib, chunk_mib=16):
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)

    def call(method, target, body=b"", headers=None):
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        return r, r.read()

    r, out = call("POST", "/storage/v1/b?project=bench", json.dumps({"name": bucket}).encode(),
                  {"Content-Type": "application/json"})
    if r.status not in (200, 409):
        sys.exit(f"create bucket: HTTP {r.status} {out[:300]!r}")
    chunk = chunk_mib << 20
    body = bytes(range(256)) * (chunk // 256)
    total = size_mib << 20
    t0 = time.monotonic()
    r, out = call("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=resumable&name=own-put",
                  b"{}", {"Content-Type": "application/json"})
    loc = urlsplit(r.getheader("Location") or "")
    if r.status != 200 or not loc.path:
        sys.exit(f"start resumable upload: HTTP {r.status} {out[:300]!r}")
    target = loc.path + ("?" + loc.query if loc.query else "")
    for a in range(0, total, chunk):
        b = min(a + chunk, total)
        last = b == total
        r, out = call("PUT", target, body[: b - a],
                      {"Content-Range": f"bytes {a}-{b - 1}/{total if last else '*'}"})
        if r.status not in ((200, 201) if last else (308,)):
            sys.exit(f"upload chunk at {a}: HTTP {r.status} {out[:300]!r}")
    dt = time.monotonic() - t0
    print(json.dumps({"mib_s": round(size_mib / dt, 1), "seconds": round(dt, 2)}))


LINE = re.compile(r'"(GET|PUT|POST|DELETE|HEAD) (\S+) HTTP/[\d.]+" (\d{3})')


def classify(method, target):
    path, _, query = target.partition("?")
    keys = {kv.split("=", 1)[0] for kv in query.split("&") if kv}
    parts = path.lstrip("/").split("/", 1)
    key = parts[1] if len(parts) > 1 else ""
    area = (
        "upload" if "/_uploads/" in key else "blob" if "/blobs/" in key or key.startswith("blobs/")
        else "repo" if "/repositories/" in key else "other"
    )
    if "partNumber" in keys and method == "PUT":
        call = "UploadPart(Copy)"
    elif "uploads" in keys and method == "POST":
        call = "CreateMultipartUpload"
    elif "uploads" in keys and method == "GET":
        call = "ListMultipartUploads"
    elif "uploadId" in keys and method == "POST":
        call = "CompleteMultipartUpload"
    elif "uploadId" in keys and method == "DELETE":
        call = "AbortMultipartUpload"
    elif "delete" in keys and method == "POST":
        call = "DeleteObjects"
    elif "list-type" in keys or (method == "GET" and key == "" and "prefix" in keys):
        call = "ListObjects"
        area = "list"
    elif key == "":
        call = {"HEAD": "HeadBucket", "PUT": "CreateBucket"}.get(method, f"{method} bucket")
        area = "start-up"
    else:
        call = {"GET": "GetObject", "PUT": "PutObject/CopyObject", "HEAD": "HeadObject",
                "DELETE": "DeleteObject", "POST": "POST"}[method]
    return f"{call} {area}"


def calls(log, from_line):
    by = {}
    total = 0
    with open(log, errors="replace") as f:
        for i, line in enumerate(f):
            if i < from_line:
                continue
            m = LINE.search(line)
            if not m or "/moto-api/" in m.group(2):
                continue
            total += 1
            c = classify(m.group(1), m.group(2))
            by[c] = by.get(c, 0) + 1
    print(json.dumps({"total": total, "by_call": dict(sorted(by.items()))}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "put":
        put(sys.argv[2], sys.argv[3], int(sys.argv[4]), *map(int, sys.argv[5:7]))
    elif cmd == "get":
        get(sys.argv[2], sys.argv[3])
    elif cmd == "az-put":
        az_put(sys.argv[2], sys.argv[3], int(sys.argv[4]), *map(int, sys.argv[5:7]))
    elif cmd == "az-append":
        az_append(sys.argv[2], sys.argv[3], int(sys.argv[4]), *map(int, sys.argv[5:8]))
    elif cmd == "gcs-put":
        gcs_put(sys.argv[2], sys.argv[3], int(sys.argv[4]), *map(int, sys.argv[5:6]))
    elif cmd == "calls":
        calls(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
