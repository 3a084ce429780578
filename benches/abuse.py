#!/usr/bin/env python3
"""Bounded memory under abuse (issue 14, item 4), measured against the real server binary.

Run through benches/abuse.sh, which builds the binary and starts it; this file drives it. For each
scenario it resets the server's peak RSS (/proc/PID/clear_refs), runs the abuse while a sampler
thread reads VmRSS every 50 ms and times a normal request (a fresh connection, then GET /v2/ and
GET of a small manifest by tag) every 200 ms, and prints one line per scenario:

  scenario | peak RSS (VmHWM) | normal request p50 / p99 / max | samples | what the abuse saw

Goals (read off, no assertion): peak RSS <= 256 MiB, normal request <= 100 ms throughout. The exit
status is 1 when a goal is missed or a normal request failed, so a run can be scripted.

Stdlib only (sockets, threads, http.client): no third-party packages.
"""
import argparse
import hashlib
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time

RSS_GOAL_MIB = 256
LATENCY_GOAL_MS = 100


def log(*a):
    print(*a, flush=True)


class Server:
    def __init__(self, addr, pid, root):
        host, port = addr.rsplit(":", 1)
        self.host, self.port, self.pid, self.root = host, int(port), pid, root

    def conn(self, timeout=30):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def status_kib(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"{key} missing")

    def reset_peak(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))


def request(srv, method, path, body=None, headers=None, conn=None):
    c = conn or srv.conn()
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, r.headers, data


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def push_blob(srv, repo, data, conn=None):
    d = sha256(data)
    st, h, _ = request(srv, "POST", f"/v2/{repo}/blobs/uploads/", conn=conn)
    assert st == 202, st
    loc = h["Location"]
    sep = "&" if "?" in loc else "?"
    st, _, body = request(srv, "PUT", f"{loc}{sep}digest={d}", body=data,
                          headers={"Content-Type": "application/octet-stream"}, conn=conn)
    assert st == 201, (st, body)
    return d


def push_image(srv, repo, tag):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(1024)
    cd, ld = push_blob(srv, repo, cfg), push_blob(srv, repo, layer)
    m = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(layer)}],
    }).encode()
    st, _, body = request(srv, "PUT", f"/v2/{repo}/manifests/{tag}", body=m,
                          headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 201, (st, body)
    return sha256(m), cd


class Sampler(threading.Thread):
    """RSS every 50 ms; a normal request (new connection, GET /v2/ + manifest GET) every 200 ms."""

    def __init__(self, srv, probe_path):
        super().__init__(daemon=True)
        self.srv, self.probe_path = srv, probe_path
        self.stop_ev = threading.Event()
        self.lat, self.failures, self.rss_max = [], [], 0
        self.slow = []  # (seconds into the scenario, ms) of samples over the goal
        self.t0 = time.monotonic()

    def run(self):
        next_probe = 0.0
        while not self.stop_ev.is_set():
            self.rss_max = max(self.rss_max, self.srv.status_kib("VmRSS"))
            now = time.monotonic()
            if now >= next_probe:
                next_probe = now + 0.2
                t0 = time.monotonic()
                try:
                    c = self.srv.conn(timeout=10)
                    for path, accept in (("/v2/", None), (self.probe_path, "application/vnd.oci.image.manifest.v1+json")):
                        c.request("GET", path, headers={"Accept": accept} if accept else {})
                        r = c.getresponse()
                        r.read()
                        if r.status != 200:
                            self.failures.append(f"{path}: {r.status}")
                    c.close()
                    ms = (time.monotonic() - t0) * 1000
                    self.lat.append(ms)
                    if ms > LATENCY_GOAL_MS:
                        self.slow.append((round(t0 - self.t0, 1), round(ms)))
                except Exception as e:  # a refused or timed-out normal request is a finding
                    self.failures.append(f"{type(e).__name__} at +{t0 - self.t0:.1f}s: {e}")
            time.sleep(0.05)

    def stop(self):
        self.stop_ev.set()
        self.join()


RESULTS = []
TABLE_HEAD = ("| scenario | RSS before | peak RSS | normal request p50 / p99 / max | samples | goal | what the abuse saw |\n"
              "|---|---|---|---|---|---|---|")


def scenario(srv, probe, name, fn):
    log(f"== {name}")
    srv.reset_peak()
    before = srv.status_kib("VmRSS")
    s = Sampler(srv, probe)
    s.start()
    t0 = time.monotonic()
    try:
        note = fn()
    except Exception as e:
        note = f"ERROR {type(e).__name__}: {e}"
    took = time.monotonic() - t0
    time.sleep(0.5)
    s.stop()
    peak = max(srv.status_kib("VmHWM"), s.rss_max) / 1024
    after = srv.status_kib("VmRSS") / 1024
    lat = sorted(s.lat) or [float("nan")]
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    ok = peak <= RSS_GOAL_MIB and lat[-1] <= LATENCY_GOAL_MS and not s.failures and not str(note).startswith("ERROR")
    row = dict(slow=len(s.slow), name=name, before=before / 1024, peak=peak, after=after, p50=p50, p99=p99, max=lat[-1],
               samples=len(s.lat), failures=s.failures[:3], nfail=len(s.failures), note=note, secs=took, ok=ok)
    RESULTS.append(row)
    log(f"   RSS {row['before']:.0f} -> peak {peak:.0f} MiB (after {after:.0f}); normal request p50 {p50:.1f} "
        f"p99 {p99:.1f} max {lat[-1]:.1f} ms over {len(s.lat)} samples; {took:.1f}s; "
        f"{'OK' if ok else 'MISSED'}; {note}"
        + (f"; {len(s.failures)} failed normal requests, e.g. {s.failures[:3]}" if s.failures else "")
        + (f"; over {LATENCY_GOAL_MS} ms: {len(s.slow)} samples (s into the run, ms) {s.slow[:8]}" if s.slow else ""))


# ---------------------------------------------------------------------------------------- scenarios

def idle_connections(srv, count, hold):
    socks = []
    for i in range(count):
        s = socket.create_connection((srv.host, srv.port))
        if i % 2:
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Half: ")  # half a head, then nothing
        socks.append(s)
    held = srv.fds()
    time.sleep(hold)
    for s in socks:
        s.close()
    return f"{count} connections open (server fds {held}), held {hold}s"


def slow_uploads(srv, repo, count, secs, chunk):
    c = srv.conn()
    locs = []
    for _ in range(count):
        st, h, _ = request(srv, "POST", f"/v2/{repo}/blobs/uploads/", conn=c)
        assert st == 202, st
        locs.append(h["Location"])
    c.close()
    socks = []
    for loc in locs:
        s = socket.create_connection((srv.host, srv.port))
        s.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: {srv.host}\r\nContent-Type: application/octet-stream\r\n"
                   f"Content-Length: {64 << 20}\r\n\r\n").encode())
        socks.append(s)
    block = os.urandom(chunk)
    sent = 0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        t0 = time.monotonic()
        for s in socks:
            s.sendall(block)
            sent += chunk
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))  # each upload sends `chunk` bytes a second
    for s in socks:
        s.close()
    time.sleep(1)
    # The uploads keep what arrived (body ended early: the server stores it and stays resumable).
    c = srv.conn()
    kept = 0
    for loc in locs[:20]:
        st, h, _ = request(srv, "GET", loc, conn=c)
        if st == 204 and h.get("Range", "0-0") != "0-0":
            kept += 1
    c.close()
    return f"{count} uploads x {chunk} B/s for {secs}s ({sent >> 20} MiB total); {kept}/20 checked kept their bytes"


def many_tags(srv, repo, count, manifest_digest):
    # Written straight into distribution's layout (as `docker-registry` would have left it).
    base = f"{srv.root}/docker/registry/v2/repositories/{repo}/_manifests/tags"
    alg, hexd = manifest_digest.split(":")
    t0 = time.monotonic()
    for i in range(count):
        d = f"{base}/t{i:06d}"
        os.makedirs(f"{d}/current", exist_ok=True)
        os.makedirs(f"{d}/index/{alg}/{hexd}", exist_ok=True)
        with open(f"{d}/current/link", "w") as f:
            f.write(manifest_digest)
        with open(f"{d}/index/{alg}/{hexd}/link", "w") as f:
            f.write(manifest_digest)
    gen = time.monotonic() - t0
    return gen


def list_tags(srv, repo, query, rounds, parallel):
    times, sizes, errors = [], [], []

    def one():
        for _ in range(rounds):
            t0 = time.monotonic()
            st, _, body = request(srv, "GET", f"/v2/{repo}/tags/list{query}")
            times.append((time.monotonic() - t0) * 1000)
            sizes.append(len(body))
            if st != 200:
                errors.append(st)
    ts = [threading.Thread(target=one) for _ in range(parallel)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    n = len(json.loads(request(srv, "GET", f"/v2/{repo}/tags/list{query}")[2])["tags"])
    return (f"{parallel}x{rounds} listings '{query or '(all)'}': {n} tags, {max(sizes)} B, "
            f"{statistics.median(times):.0f} ms median, {max(times):.0f} ms max" + (f", errors {errors[:3]}" if errors else ""))


def big_manifest(srv, repo, layers, target_size, gets, parallel):
    # The layers: 10,000 distinct small blobs, written straight into the layout (blob data + the
    # repository's layer links), then one manifest naming them all, padded to target_size.
    v2 = f"{srv.root}/docker/registry/v2"
    descs = []
    for i in range(layers):
        data = f"layer {i}\n".encode()
        hexd = hashlib.sha256(data).hexdigest()
        os.makedirs(f"{v2}/blobs/sha256/{hexd[:2]}/{hexd}", exist_ok=True)
        with open(f"{v2}/blobs/sha256/{hexd[:2]}/{hexd}/data", "wb") as f:
            f.write(data)
        os.makedirs(f"{v2}/repositories/{repo}/_layers/sha256/{hexd}", exist_ok=True)
        with open(f"{v2}/repositories/{repo}/_layers/sha256/{hexd}/link", "w") as f:
            f.write("sha256:" + hexd)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + hexd, "size": len(data)})
    cfg = b'{"architecture":"amd64","os":"linux"}'
    cd = push_blob(srv, repo, cfg)

    def body(pad):
        for d in descs:
            d["annotations"] = {"pad": "x" * pad}
        return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
                           "layers": descs}).encode()
    base = len(body(0))
    m = body(max(0, (target_size - base) // layers))
    t0 = time.monotonic()
    st, _, resp = request(srv, "PUT", f"/v2/{repo}/manifests/big", body=m,
                          headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    put_ms = (time.monotonic() - t0) * 1000
    assert st == 201, (st, resp[:300])
    times, bad = [], []

    def one():
        for _ in range(gets):
            t0 = time.monotonic()
            st, _, b = request(srv, "GET", f"/v2/{repo}/manifests/big",
                               headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            times.append((time.monotonic() - t0) * 1000)
            if st != 200 or sha256(b) != sha256(m):
                bad.append(st)
    ts = [threading.Thread(target=one) for _ in range(parallel)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return (f"{len(m)} B manifest, {layers} layers: PUT 201 in {put_ms:.0f} ms; {parallel}x{gets} GETs "
            f"median {statistics.median(times):.0f} ms max {max(times):.0f} ms, {len(bad)} wrong")


def nested_json(srv, repo, depth, rounds, parallel):
    bodies = {
        "arrays": b"[" * depth + b"]" * depth,
        "objects": b'{"a":' * depth + b"1" + b"}" * depth,
        "in-layers": b'{"schemaVersion":2,"layers":' + b"[" * depth + b"]" * depth + b"}",
    }
    seen = {}

    def one():
        c = srv.conn()
        for _ in range(rounds):
            for k, b in bodies.items():
                st, _, resp = request(srv, "PUT", f"/v2/{repo}/manifests/nested", body=b,
                                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, conn=c)
                code = json.loads(resp)["errors"][0]["code"] if resp.startswith(b"{") else "-"
                seen[(k, st, code)] = seen.get((k, st, code), 0) + 1
        c.close()
    ts = [threading.Thread(target=one) for _ in range(parallel)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return f"depth {depth} ({len(bodies['arrays'])} B): " + ", ".join(f"{k} {st} {code} x{n}" for (k, st, code), n in sorted(seen.items()))


def long_names(srv, rounds, parallel):
    name = "/".join(["a" * 60] * 120)  # 7,319 chars
    cases = {
        "long name": f"/v2/{name}/tags/list",
        "long tag": f"/v2/x/manifests/{'t' * 5000}",
        "long query": "/v2/x/tags/list?n=10&last=" + "z" * 7000,
        "many params": "/v2/x/tags/list?" + "&".join(f"p{i}=v" for i in range(1500)),
        "huge target": "/v2/x/tags/list?q=" + "q" * 200_000,
    }
    seen = {}

    def one():
        for _ in range(rounds):
            for k, path in cases.items():
                try:
                    st, _, _ = request(srv, "GET", path)
                except Exception as e:
                    st = type(e).__name__
                seen[(k, st)] = seen.get((k, st), 0) + 1
            # A 60 KiB header value and a 200 KiB header block.
            for k, hv in (("60 KiB header", "h" * 60_000), ("200 KiB header", "h" * 200_000)):
                try:
                    st, _, _ = request(srv, "GET", "/v2/", headers={"X-Long": hv})
                except Exception as e:
                    st = type(e).__name__
                seen[(k, st)] = seen.get((k, st), 0) + 1
    ts = [threading.Thread(target=one) for _ in range(parallel)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return ", ".join(f"{k}: {st} x{n}" for (k, st), n in sorted(seen.items(), key=str))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--only", default="", help="comma-separated scenario prefixes")
    ap.add_argument("--scale", type=float, default=1.0, help="shrink every count (quick runs)")
    ap.add_argument("--table", help="append the table rows to this file too")
    a = ap.parse_args()
    srv = Server(a.addr, a.pid, a.root)
    k = lambda n: max(1, int(n * a.scale))
    want = lambda n: not a.only or any(n.startswith(p) for p in a.only.split(","))

    push_image(srv, "probe/small", "latest")
    probe = "/v2/probe/small/manifests/latest"
    log(f"server pid {srv.pid}, RSS at start {srv.status_kib('VmRSS') / 1024:.0f} MiB")

    if want("idle"):
        scenario(srv, probe, f"idle-{k(10000)}", lambda: idle_connections(srv, k(10000), 10))
    if want("slow"):
        scenario(srv, probe, f"slow-uploads-{k(1000)}", lambda: slow_uploads(srv, "abuse/slow", k(1000), 20, 4096))
    if want("tags"):
        md, _ = push_image(srv, "abuse/tags", "base")
        gen = many_tags(srv, "abuse/tags", k(100000), md)
        log(f"   (wrote {k(100000)} tags into the layout in {gen:.0f}s)")
        scenario(srv, probe, f"tags-{k(100000)}-all", lambda: list_tags(srv, "abuse/tags", "", 3, 4))
        scenario(srv, probe, f"tags-{k(100000)}-n100", lambda: list_tags(srv, "abuse/tags", "?n=100", 25, 4))
        scenario(srv, probe, f"tags-{k(100000)}-n100-last",
                 lambda: list_tags(srv, "abuse/tags", f"?n=100&last=t{k(100000) // 2:06d}", 25, 4))
    if want("manifest"):
        scenario(srv, probe, f"manifest-4MiB-{k(10000)}-layers",
                 lambda: big_manifest(srv, "abuse/big", k(10000), int((4 << 20) * a.scale) - 4096, 5, 4))
    if want("nested"):
        scenario(srv, probe, "nested-json", lambda: nested_json(srv, "abuse/nested", k(600_000), 5, 4))
    if want("long"):
        scenario(srv, probe, "long-names-queries", lambda: long_names(srv, 50, 8))

    rows = []
    for r in RESULTS:
        rows.append(f"| {r['name']} | {r['before']:.0f} MiB | {r['peak']:.0f} MiB | {r['p50']:.1f} / {r['p99']:.1f} / {r['max']:.1f} ms "
            f"| {r['samples']}{' (' + str(r['nfail']) + ' failed)' if r['nfail'] else ''} | {'met' if r['ok'] else 'MISSED'} | {r['note']} |")
    log("")
    log(TABLE_HEAD)
    for row in rows:
        log(row)
    if a.table:
        with open(a.table, "a") as f:
            f.write("".join(row + "\n" for row in rows))
    sys.exit(0 if all(r["ok"] for r in RESULTS) else 1)


if __name__ == "__main__":
    main()
