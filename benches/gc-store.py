#!/usr/bin/env python3
"""benches/gc-store.py — helpers of benches/gc.sh (not a test).

  gen DIR MANIFESTS LAYERS REPOS GARBAGE_PCT
      writes a store in distribution 2.8's filesystem layout under DIR/docker/registry/v2:
      MANIFESTS schema2 manifests spread over REPOS repositories, each with its own config and
      LAYERS small layers (so blobs = MANIFESTS * (LAYERS + 2) with the manifest blobs);
      GARBAGE_PCT percent (in steps of 10) of each repository's manifests are untagged (garbage for --delete-untagged, with their
      blobs). Every file is dated two days back. Prints progress lines and a JSON summary.
  tags DIR REPO N
      adds tags x00000..x(N-1) to REPO of a store `gen` wrote, each naming the manifest of its tag
      t0 (for the listing bench, benches/listings.sh).
  upload DIR ENDPOINT BUCKET...  copies DIR's files into each S3 bucket (created) in parallel.
  push URL SECONDS THREADS       monolithic blob pushes (POST ?digest=) for SECONDS; prints pushes/s.
"""
import hashlib
import json
import os
import sys
import threading
import time
import urllib.request


def sha(b):
    return hashlib.sha256(b).hexdigest()


def gen(root, manifests, layers, repos, garbage):
    v2 = os.path.join(root, "docker", "registry", "v2")
    blobs = os.path.join(v2, "blobs", "sha256")
    old = time.time() - 2 * 86400
    made_dirs = set()

    def write(path, data):
        d = os.path.dirname(path)
        if d not in made_dirs:
            os.makedirs(d, exist_ok=True)
            made_dirs.add(d)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (old, old))

    def blob(data):
        h = sha(data)
        write(os.path.join(blobs, h[:2], h, "data"), data)
        return h

    def link(repo, rel, h):
        write(os.path.join(v2, "repositories", repo, rel, "link"), b"sha256:" + h.encode())

    n_blobs = 0
    garbage_m = 0
    start = time.time()
    for i in range(manifests):
        repo = f"bench/r{i % repos:04d}"
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode()
        ch = blob(cfg)
        link(repo, f"_layers/sha256/{ch}", ch)
        descs = []
        for j in range(layers):
            data = f"layer {i}.{j} ".encode() * 4
            lh = blob(data)
            link(repo, f"_layers/sha256/{lh}", lh)
            descs.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                          "size": len(data), "digest": "sha256:" + lh})
        m = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": len(cfg), "digest": "sha256:" + ch},
            "layers": descs,
        }, indent=3).encode()
        mh = blob(m)
        n_blobs += layers + 2
        link(repo, f"_manifests/revisions/sha256/{mh}", mh)
        if (i // repos) % 10 < garbage // 10:
            garbage_m += 1
        else:
            tag = f"t{i // repos}"
            link(repo, f"_manifests/tags/{tag}/current", mh)
            link(repo, f"_manifests/tags/{tag}/index/sha256/{mh}", mh)
        if (i + 1) % 2000 == 0 or i + 1 == manifests:
            el = time.time() - start
            print(f"gen: {i + 1}/{manifests} manifests, {n_blobs} blobs, {el:.0f}s", flush=True)
    print(json.dumps({"manifests": manifests, "blobs": n_blobs, "garbage_manifests": garbage_m,
                      "garbage_blobs": garbage_m * (layers + 2), "repositories": repos}))


def tags(root, repo, n):
    base = os.path.join(root, "docker", "registry", "v2", "repositories", repo, "_manifests", "tags")
    with open(os.path.join(base, "t0", "current", "link"), "rb") as f:
        link = f.read()
    h = link.decode().split(":", 1)[1]
    for i in range(n):
        for rel in ("current", f"index/sha256/{h}"):
            d = os.path.join(base, f"x{i:05d}", rel)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "link"), "wb") as f:
                f.write(link)
    print(json.dumps({"repository": repo, "tags_added": n}))


def upload(root, endpoint, buckets):
    import boto3  # from moto's venv
    from concurrent.futures import ThreadPoolExecutor
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    for b in buckets:
        s3.create_bucket(Bucket=b)
    files = []
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            files.append((p, os.path.relpath(p, root)))
    done = [0]
    lock = threading.Lock()
    start = time.time()

    def put(item):
        p, key = item
        with open(p, "rb") as f:
            data = f.read()
        for b in buckets:
            s3.put_object(Bucket=b, Key=key, Body=data)
        with lock:
            done[0] += 1
            if done[0] % 10000 == 0:
                print(f"upload: {done[0]}/{len(files)} objects x {len(buckets)} buckets, "
                      f"{time.time() - start:.0f}s", flush=True)

    with ThreadPoolExecutor(16) as ex:
        list(ex.map(put, files))
    print(f"upload: {len(files)} objects x {len(buckets)} buckets in {time.time() - start:.0f}s")


def push(url, seconds, threads):
    stop = time.time() + seconds
    counts = [0] * threads
    errors = [0] * threads

    def run(t):
        n = 0
        while time.time() < stop:
            data = f"pushed {t} {n} {time.time()}".encode() * 64
            req = urllib.request.Request(
                f"{url}/v2/bench/push{t}/blobs/uploads/?digest=sha256:{sha(data)}",
                data=data, method="POST",
                headers={"Content-Type": "application/octet-stream"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    if r.status == 201:
                        counts[t] += 1
            except Exception:
                errors[t] += 1
            n += 1

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    start = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    el = time.time() - start
    print(json.dumps({"pushes": sum(counts), "errors": sum(errors), "seconds": round(el, 2),
                      "per_second": round(sum(counts) / el, 1)}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(sys.argv[2], *map(int, sys.argv[3:7]))
    elif cmd == "tags":
        tags(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "upload":
        upload(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == "push":
        push(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
