#!/usr/bin/env python3
"""The soak (issue 14, item 5): a bounded run of mixed traffic against the real binary with kill -9
restarts and online `image-registry gc` runs. Started by benches/soak.sh (which builds the binary).

Workers (threads), each with its own repository soak/wN, loop over: monolithic pushes, chunked
pushes (PATCH with Content-Range, then an empty PUT), cross-repository mounts from another worker's
repository (then a manifest naming the mounted blob), image indexes over two of the worker's
manifests, pulls (manifest by tag + one blob, both checked against their digests) and deletes
(manifest by digest; an image only once no tracked index names it). With
--max-tracked (default 2,000 per worker) the store reaches a steady state: at the cap a push turns
into a delete, so what each request costs stops growing with the store and RSS says whether the
server leaks. What the server acknowledged (201 for a manifest PUT) is tracked until the
worker deletes it. A restarter kill -9s the server every --restart-every seconds and starts it again
at once; a collector runs `image-registry gc --delay 30s` every --gc-every seconds while traffic
goes on.

At the end (after one last kill -9 and restart) every tracked manifest is fetched by tag and by
digest and every blob it names is fetched and hashed; then every blob file in the storage layout is
hashed against its path. Reported: acknowledged writes lost (goal 0), visible corrupt blobs (0),
5xx outside restart windows (0), RSS at 5 min vs at the end and before every kill (flat within
10 %). Exit status 1 when a goal is missed.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

T0 = time.monotonic()  # reset when the workers start; times in the report count from it
MT_IMAGE = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = f"{MT_IMAGE}, {MT_INDEX}"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Server:
    """The real binary; restartable; knows when it was down."""

    def __init__(self, binary, config, logpath, port):
        self.binary, self.config, self.logpath, self.port = binary, config, logpath, port
        self.proc = None
        self.lock = threading.Lock()
        self.windows = []  # (start, end) of each restart, end None while down
        self.started = None

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        lf = open(self.logpath, "ab")
        self.proc = subprocess.Popen([self.binary, "serve", "--config", self.config], stdout=lf, stderr=lf, env=env)
        self.started = time.monotonic()
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/v2/")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None

    def kill9_and_restart(self):
        with self.lock:
            self.windows.append([time.monotonic(), None])
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.start()
        with self.lock:
            self.windows[-1][1] = time.monotonic() + 2.0  # in-flight answers may trail the restart

    def in_restart(self, t0, t1):
        with self.lock:
            for a, b in self.windows:
                if t1 >= a and (b is None or t0 <= b):
                    return True
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = {}
        self.http5xx_out, self.http5xx_in, self.conn_err_out, self.conn_err_in = [], 0, [], 0
        self.unexpected = []  # wrong statuses outside restarts (4xx where success was due)
        self.pull_lost, self.pull_corrupt = [], []

    def op(self, kind):
        with self.lock:
            self.ops[kind] = self.ops.get(kind, 0) + 1


class Failed(Exception):
    pass


class Worker(threading.Thread):
    def __init__(self, i, srv, stats, stop, rng_seed, all_workers, max_tracked):
        super().__init__(daemon=True)
        self.i, self.srv, self.stats, self.stop_ev = i, srv, stats, stop
        self.repo = f"soak/w{i}"
        self.rng = random.Random(rng_seed)
        self.tracked = {}  # tag -> (manifest digest, body, media type, [(blob digest, size)])
        self.pushed_at = {}  # tag -> seconds since the start when its PUT was acknowledged
        self.pinned = {}  # tag -> how many tracked indexes name it (deleted only when none)
        self.kids = {}  # index tag -> the two tags it names
        self.blobs = []  # (digest, size) of blobs in manifests this worker acknowledged
        self.all = all_workers
        self.max_tracked = max_tracked
        self.n = 0
        self.conn = None

    # -- HTTP with error accounting -----------------------------------------------------------------
    def req(self, method, path, body=None, headers=None, ok=(200,), what=""):
        t0 = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
            self.conn.request(method, path, body=body, headers=headers or {})
            r = self.conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn = None
            t1 = time.monotonic()
            if self.srv.in_restart(t0, t1):
                with self.stats.lock:
                    self.stats.conn_err_in += 1
            else:
                with self.stats.lock:
                    self.stats.conn_err_out.append(f"{method} {path[:80]}: {type(e).__name__} {e}")
            raise Failed()
        t1 = time.monotonic()
        if r.status >= 500:
            if self.srv.in_restart(t0, t1):
                with self.stats.lock:
                    self.stats.http5xx_in += 1
            else:
                with self.stats.lock:
                    self.stats.http5xx_out.append(f"{method} {path[:80]}: {r.status} {data[:200]!r}")
            raise Failed()
        if r.status not in ok:
            if not self.srv.in_restart(t0, t1):
                with self.stats.lock:
                    self.stats.unexpected.append(f"{what or method} {path[:80]}: {r.status} {data[:200]!r}")
            raise Failed()
        return r, data

    # -- operations ---------------------------------------------------------------------------------
    def blob_bytes(self):
        return os.urandom(self.rng.choice([512, 4096, 65536, 300_000, 1_200_000]))

    def push_mono(self, data):
        r, _ = self.req("POST", f"/v2/{self.repo}/blobs/uploads/", ok=(202,))
        loc = r.headers["Location"]
        sep = "&" if "?" in loc else "?"
        self.req("PUT", f"{loc}{sep}digest={sha(data)}", body=data,
                 headers={"Content-Type": "application/octet-stream"}, ok=(201,))
        return (sha(data), len(data))

    def push_chunked(self, data):
        r, _ = self.req("POST", f"/v2/{self.repo}/blobs/uploads/", ok=(202,))
        loc = r.headers["Location"]
        cut = len(data) // 2
        for a, b in ((0, cut), (cut, len(data))):
            if a == b:
                continue
            r, _ = self.req("PATCH", loc, body=data[a:b], ok=(202,),
                            headers={"Content-Type": "application/octet-stream", "Content-Range": f"{a}-{b - 1}"})
            loc = r.headers["Location"]
        sep = "&" if "?" in loc else "?"
        self.req("PUT", f"{loc}{sep}digest={sha(data)}", body=b"", ok=(201,))
        return (sha(data), len(data))

    def mount(self):
        others = [w for w in self.all if w is not self and w.blobs]
        if not others:
            return None
        src = self.rng.choice(others)
        d, size = self.rng.choice(list(src.blobs))
        r, _ = self.req("POST", f"/v2/{self.repo}/blobs/uploads/?mount={d}&from={src.repo}", ok=(201, 202))
        if r.status == 202:  # not mountable (deleted and collected meanwhile): cancel it
            self.req("DELETE", r.headers["Location"], ok=(204, 404))
            return None
        return (d, size)

    def put_manifest(self, tag, body, mt, blobs):
        self.req("PUT", f"/v2/{self.repo}/manifests/{tag}", body=body, headers={"Content-Type": mt}, ok=(201,))
        self.tracked[tag] = (sha(body), body, mt, blobs)
        self.pushed_at[tag] = time.monotonic() - T0
        self.blobs.extend(blobs)

    def image(self, layer):
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "soak": [self.i, self.n]}).encode()
        c = self.push_mono(cfg)
        body = json.dumps({
            "schemaVersion": 2, "mediaType": MT_IMAGE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c[0], "size": c[1]},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer[0], "size": layer[1]}],
        }).encode()
        self.n += 1
        self.put_manifest(f"t{self.n}", body, MT_IMAGE, [c, layer])

    def index(self):
        images = [t for t, v in self.tracked.items() if v[2] == MT_IMAGE]
        if len(images) < 2:
            return
        kids = self.rng.sample(images, 2)
        body = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
            {"mediaType": MT_IMAGE, "digest": self.tracked[k][0], "size": len(self.tracked[k][1]),
             "platform": {"architecture": arch, "os": "linux"}} for k, arch in zip(kids, ("amd64", "arm64"))],
            "annotations": {"soak": f"{self.i}-{self.n + 1}"}}).encode()
        self.n += 1
        # An annotation makes every index distinct: two indexes over the same two images would
        # otherwise be one manifest, and deleting one tag's digest would take the other tag too.
        self.put_manifest(f"t{self.n}", body, MT_INDEX, [])
        self.kids[f"t{self.n}"] = kids
        for k in kids:
            self.pinned[k] = self.pinned.get(k, 0) + 1

    def pull(self):
        if not self.tracked:
            return
        tag = self.rng.choice(list(self.tracked))
        d, body, mt, blobs = self.tracked[tag]
        r, data = self.req("GET", f"/v2/{self.repo}/manifests/{tag}", headers={"Accept": ACCEPT}, ok=(200, 404))
        if r.status == 404:
            self.stats.pull_lost.append(f"{self.repo}:{tag} manifest 404")
            return
        if sha(data) != d:
            self.stats.pull_corrupt.append(f"{self.repo}:{tag} manifest {sha(data)} != {d}")
        if blobs:
            bd, _ = self.rng.choice(blobs)
            r, data = self.req("GET", f"/v2/{self.repo}/blobs/{bd}", ok=(200, 404))
            if r.status == 404:
                self.stats.pull_lost.append(f"{self.repo}@{bd} blob 404 (of {tag})")
            elif sha(data) != bd:
                self.stats.pull_corrupt.append(f"{self.repo}@{bd} blob bytes hash to {sha(data)}")

    def delete(self):
        cands = [t for t in self.tracked if not self.pinned.get(t)]
        if len(cands) < 5:
            return
        tag = self.rng.choice(cands)
        d = self.tracked.pop(tag)[0]
        self.pushed_at.pop(tag, None)
        for k in self.kids.pop(tag, ()):
            self.pinned[k] -= 1
        self.req("DELETE", f"/v2/{self.repo}/manifests/{d}", ok=(202,))

    def run(self):
        while not self.stop_ev.is_set():
            kind = self.rng.choices(["mono", "chunked", "mount", "index", "pull", "delete"], [4, 3, 2, 1, 6, 2])[0]
            if kind in ("mono", "chunked", "mount", "index") and self.max_tracked and len(self.tracked) >= self.max_tracked:
                kind = "delete"  # steady state: the store stops growing
            try:
                if kind == "mono":
                    self.image(self.push_mono(self.blob_bytes()))
                elif kind == "chunked":
                    self.image(self.push_chunked(self.blob_bytes()))
                elif kind == "mount":
                    b = self.mount()
                    if b is None:
                        continue
                    self.image(b)
                elif kind == "index":
                    self.index()
                elif kind == "pull":
                    self.pull()
                else:
                    self.delete()
                self.stats.op(kind)
            except Failed:
                self.stats.op(kind + "-failed")
                time.sleep(0.05)


def last_line(path):
    with open(path, "rb") as f:
        lines = f.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def verify_all(workers, port):
    """Every tracked manifest by tag and digest, every blob it names; counts losses and corruption."""
    lost, corrupt, checked_m, checked_b = [], [], 0, 0
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(path, accept=None):
        c.request("GET", path, headers={"Accept": accept} if accept else {})
        r = c.getresponse()
        return r.status, r.read()
    for w in workers:
        for tag, (d, body, mt, blobs) in w.tracked.items():
            for ref in (tag, d):
                st, data = get(f"/v2/{w.repo}/manifests/{ref}", ACCEPT)
                checked_m += 1
                if st != 200:
                    kind = "index" if mt == MT_INDEX else "image"
                    lost.append(f"{w.repo}:{ref} -> {st} ({kind} {d}, acknowledged at {w.pushed_at.get(tag, -1):.1f} s)")
                elif sha(data) != d:
                    corrupt.append(f"{w.repo}:{ref} manifest bytes hash to {sha(data)}")
            for bd, size in blobs:
                st, data = get(f"/v2/{w.repo}/blobs/{bd}")
                checked_b += 1
                if st != 200:
                    lost.append(f"{w.repo}@{bd} -> {st}")
                elif sha(data) != bd or len(data) != size:
                    corrupt.append(f"{w.repo}@{bd} bytes hash to {sha(data)} ({len(data)} B)")
    return lost, corrupt, checked_m, checked_b


def verify_layout(root):
    """Every blob file in the layout hashes to the digest its path names."""
    base = f"{root}/docker/registry/v2/blobs/sha256"
    n, bad = 0, []
    if not os.path.isdir(base):
        return 0, []
    for pre in os.listdir(base):
        for hexd in os.listdir(f"{base}/{pre}"):
            p = f"{base}/{pre}/{hexd}/data"
            if not os.path.exists(p):
                continue
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            n += 1
            if h.hexdigest() != hexd:
                bad.append(p)
    return n, bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--restart-every", type=float, default=180, help="seconds between kill -9 restarts")
    ap.add_argument("--gc-every", type=float, default=120, help="seconds between online gc runs")
    ap.add_argument("--gc-delay", default="30s")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--max-tracked", type=int, default=2000,
                    help="manifests per worker at most; at the cap pushes turn into deletes (0: no cap)")
    a = ap.parse_args()

    srv = Server(a.bin, a.config, a.log, a.port)
    srv.start()
    stats, stop = Stats(), threading.Event()
    global T0
    T0 = time.monotonic()
    workers = []
    for i in range(a.workers):
        workers.append(Worker(i, srv, stats, stop, a.seed * 100 + i, workers, a.max_tracked))
    for w in workers:
        w.start()
    t_start = time.monotonic()
    end = t_start + a.minutes * 60
    next_restart, next_gc, next_progress = t_start + a.restart_every, t_start + a.gc_every, t_start + 30
    rss_samples, rss_before_kill, restarts, gcs = [], [], 0, []
    rss_5min, age_5min = None, None
    gc_proc, gc_out = None, None
    while time.monotonic() < end:
        now = time.monotonic()
        rss = srv.rss_mib()
        if rss is not None:
            rss_samples.append((now - t_start, rss))
            if rss_5min is None and now - t_start >= 300:
                rss_5min = rss
                age_5min = now - srv.started
        if gc_proc is not None and gc_proc.poll() is not None:
            last = last_line(gc_out)
            gcs.append((gc_proc.returncode, last))
            log(f"gc exit {gc_proc.returncode}: {last}")
            log(f"gc #{len(gcs)} ended at {now - T0:.1f} s")
            gc_proc = None
        if now >= next_gc and gc_proc is None:
            log(f"gc #{len(gcs) + 1} starts at {now - T0:.1f} s")
            next_gc = now + a.gc_every
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            # Into a file: gc prints a line per deletion, more than a pipe holds.
            gc_out = f"{a.log}.gc{len(gcs) + 1}"
            with open(gc_out, "wb") as f:
                gc_proc = subprocess.Popen([a.bin, "gc", "--config", a.config, "--delay", a.gc_delay],
                                           stdout=f, stderr=subprocess.STDOUT, env=env)
        if now >= next_restart:
            next_restart = now + a.restart_every
            rss_before_kill.append((round(now - t_start), rss))
            srv.kill9_and_restart()
            restarts += 1
            log(f"kill -9 + restart #{restarts} at {now - T0:.1f} s (RSS before {rss:.1f} MiB)")
        if now >= next_progress:
            next_progress = now + 30
            with stats.lock:
                ops = dict(stats.ops)
            log(f"{(now - t_start) / 60:5.1f} min: ops {sum(v for k, v in ops.items() if not k.endswith('failed'))} "
                f"({', '.join(f'{k} {v}' for k, v in sorted(ops.items()))}); tracked {sum(len(w.tracked) for w in workers)}; "
                f"RSS {rss:.1f} MiB; restarts {restarts}; gc runs {len(gcs)}; 5xx outside restarts {len(stats.http5xx_out)}; "
                f"lost on pull {len(stats.pull_lost)}; corrupt on pull {len(stats.pull_corrupt)}")
        time.sleep(1)
    stop.set()
    for w in workers:
        w.join()
    if gc_proc is not None:
        gc_proc.wait()
        gcs.append((gc_proc.returncode, last_line(gc_out)))
    rss_end = srv.rss_mib()
    age_end = time.monotonic() - srv.started
    # A last gc, then a last crash: what was acknowledged must survive both.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    gc_out = f"{a.log}.gc-last"
    with open(gc_out, "wb") as f:
        g = subprocess.run([a.bin, "gc", "--config", a.config, "--delay", a.gc_delay], stdout=f, stderr=subprocess.STDOUT, env=env)
    gcs.append((g.returncode, last_line(gc_out)))
    log(f"last gc exit {g.returncode}: {last_line(gc_out)}")
    srv.kill9_and_restart()
    restarts += 1
    lost, corrupt, nm, nb = verify_all(workers, a.port)
    nfiles, badfiles = verify_layout(a.root)
    srv.stop()

    with stats.lock:
        ops = dict(stats.ops)
    acked = sum(len(w.tracked) for w in workers)
    flat = None
    if rss_5min and rss_end:
        flat = (rss_end - rss_5min) / rss_5min * 100
    gc_fail = [g for g in gcs if g[0] != 0]
    print()
    print(f"## soak summary ({a.minutes:g} min, {a.workers} workers, kill -9 every {a.restart_every:g}s, gc every {a.gc_every:g}s --delay {a.gc_delay}, at most {a.max_tracked or 'unlimited'} manifests per worker)")
    print(f"- operations: {', '.join(f'{k} {v}' for k, v in sorted(ops.items()))}")
    print(f"- acknowledged manifests still tracked at the end: {acked} (checked {nm} manifest GETs, {nb} blob GETs)")
    print(f"- acknowledged writes lost: {len(lost) + len(stats.pull_lost)} (goal 0) {(lost + stats.pull_lost)[:5]}")
    print(f"- corrupt blobs visible: {len(corrupt) + len(stats.pull_corrupt)} via the API, {len(badfiles)} of {nfiles} blob files in the layout (goal 0) {(corrupt + stats.pull_corrupt + badfiles)[:5]}")
    print(f"- 5xx outside restart windows: {len(stats.http5xx_out)} (goal 0) {stats.http5xx_out[:5]}; 5xx inside: {stats.http5xx_in}")
    print(f"- connection errors outside restart windows: {len(stats.conn_err_out)} {stats.conn_err_out[:5]}; inside: {stats.conn_err_in}")
    print(f"- other unexpected statuses outside restarts: {len(stats.unexpected)} {stats.unexpected[:5]}")
    print(f"- restarts (kill -9): {restarts}; gc runs: {len(gcs)}, failed: {len(gc_fail)} {gc_fail[:3]}")
    print(f"- RSS at 5 min: {rss_5min and round(rss_5min, 1)} MiB (process {age_5min and round(age_5min)}s old), "
          f"at the end: {rss_end and round(rss_end, 1)} MiB (process {round(age_end)}s old)"
          + (f" ({flat:+.1f} %; goal within 10 %)" if flat is not None else "")
          + f"; before each kill (s, MiB): {[(t, round(r, 1)) for t, r in rss_before_kill if r]}")
    ok = (not lost and not stats.pull_lost and not corrupt and not stats.pull_corrupt and not badfiles
          and not stats.http5xx_out and not gc_fail and (flat is None or abs(flat) <= 10))
    print(f"- goals: {'met' if ok else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
