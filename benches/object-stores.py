#!/usr/bin/env python3
"""Helpers of benches/object-stores.sh (run with the moto venv's python, which has boto3).

  put ENDPOINT BUCKET SIZE_MIB [PART_MIB] [IN_FLIGHT]
      The store's own multipart put throughput: one object of SIZE_MIB, parts of PART_MIB
      (default 16) with IN_FLIGHT (default 4) in flight, boto3 (same client machine, loopback).
      Prints one JSON line {"mib_s": ..., "seconds": ...}.
  get ENDPOINT BUCKET
      The store's own single-stream GET of the object `put` wrote: curl of a presigned URL to
      /dev/null (a C client, so the client is not what limits it). Same JSON line.
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
    elif cmd == "calls":
        calls(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
