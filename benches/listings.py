#!/usr/bin/env python3
"""benches/listings.py — the timed part of benches/listings.sh (not a test).

  measure URL REPOS TAGS SAMPLES SECONDS [TIMEOUT]
      against a registry serving the store benches/listings.sh made (REPOS repositories
      bench/r0000.., each with tag t0; bench/r0000 also with TAGS tags x00000..), times, one
      request after another on one keep-alive connection:
        catalog   GET /v2/_catalog?n=100&last=<a random repository>
        tags      GET /v2/bench/r0000/tags/list?n=100&last=<a random tag>
        manifest  GET /v2/bench/r<random>/manifests/t0
      each SAMPLES times or for SECONDS, whichever ends first (at least 5), after one untimed
      warm-up request. A request that takes longer than TIMEOUT seconds (default 600) ends that
      kind: it is reported as `timeout` (distribution's catalog walks the whole bucket). Checks every answer (200, 100 names after `last` in order, the manifest's
      digest header) and prints one JSON object: per kind n, p50, p99, max (ms), errors and
      `whole` (tag lists that came back whole, unpaged, as distribution 2.8 answers).
  store ENDPOINT BUCKET REPOS TAGS SAMPLES
      the store alone (run with moto's venv: boto3): SAMPLES ListObjectsV2 calls of the windows a
      page needs (100 names after a random one, delimiter `/`) under the repositories folder and
      under bench/r0000's tags; one JSON object with p50/p99/max ms of each.
"""
import hashlib
import http.client
import json
import random
import sys
import time
import urllib.parse


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def measure(url, repos, tags, samples, seconds, timeout=600.0):
    u = urllib.parse.urlparse(url)
    conn = [http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)]
    rnd = random.Random(42)

    def get(path, headers=None):
        for attempt in range(2):
            try:
                conn[0].request("GET", path, headers=headers or {})
                r = conn[0].getresponse()
                return r.status, r.getheaders(), r.read()
            except TimeoutError:
                conn[0].close()
                conn[0] = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
                raise
            except (http.client.HTTPException, OSError):
                if attempt:
                    raise
                conn[0].close()
                conn[0] = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        raise AssertionError("unreachable")

    def catalog():
        last = f"bench/r{rnd.randrange(repos - 100):04d}"
        st, _, body = get(f"/v2/_catalog?n=100&last={urllib.parse.quote(last)}")
        names = json.loads(body).get("repositories", []) if st == 200 else []
        return st == 200 and len(names) == 100 and names[0] > last and names == sorted(names)

    def tag_page():
        last = f"x{rnd.randrange(tags - 100):05d}"
        st, _, body = get(f"/v2/bench/r0000/tags/list?n=100&last={last}")
        names = json.loads(body).get("tags", []) if st == 200 else []
        if st == 200 and len(names) == tags + 1:
            return "whole"  # no paging: every tag, whatever n and last say
        return st == 200 and len(names) == 100 and names[0] > last and names == sorted(names)

    accept = ", ".join([
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ])

    def manifest():
        st, hs, body = get(f"/v2/bench/r{rnd.randrange(repos):04d}/manifests/t0", {"Accept": accept})
        digest = dict((k.lower(), v) for k, v in hs).get("docker-content-digest", "")
        return st == 200 and digest == "sha256:" + hashlib.sha256(body).hexdigest()

    out = {}
    for kind, f in (("catalog", catalog), ("tags", tag_page), ("manifest", manifest)):
        times, errors, whole, timeouts = [], 0, 0, 0
        try:
            f()
            stop = time.monotonic() + seconds
            while len(times) < samples and (time.monotonic() < stop or len(times) < 5):
                t = time.monotonic()
                ok = f()
                times.append((time.monotonic() - t) * 1000)
                if ok == "whole":
                    whole += 1
                elif not ok:
                    errors += 1
        except TimeoutError:
            timeouts = 1
        out[kind] = {"n": len(times), "errors": errors, "whole": whole, "timeouts": timeouts,
                     "timeout_s": timeout}
        if times:
            out[kind].update({"p50": round(pct(times, 50), 1), "p99": round(pct(times, 99), 1),
                              "max": round(max(times), 1)})
        print(f"  {kind}: {out[kind]}", file=sys.stderr, flush=True)
    print(json.dumps(out))


def store(endpoint, bucket, repos, tags, samples):
    import boto3  # from moto's venv
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    rnd = random.Random(7)
    v2 = "docker/registry/v2/repositories/bench/"
    out = {}
    for kind, prefix, name in (("catalog", v2, lambda: f"r{rnd.randrange(max(1, repos - 100)):04d}"),
                               ("tags", v2 + "r0000/_manifests/tags/",
                                lambda: f"x{rnd.randrange(max(1, tags - 100)):05d}")):
        times = []
        for _ in range(samples):
            t = time.monotonic()
            s3.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/", MaxKeys=100,
                               StartAfter=prefix + name())
            times.append((time.monotonic() - t) * 1000)
        out[kind] = {"n": len(times), "p50": round(pct(times, 50), 1),
                     "p99": round(pct(times, 99), 1), "max": round(max(times), 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "store":
        store(sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7]))
    elif sys.argv[1] == "measure":
        measure(sys.argv[2], *map(int, sys.argv[3:6]), *map(float, sys.argv[6:8]))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
