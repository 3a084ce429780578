#!/usr/bin/env python3
"""benches/throttle.py — a TCP relay that caps the bytes it sends back to clients, so a benchmark
can put a network-bound upstream (a remote registry at N MiB/s) in front of a cache on loopback.

Usage: benches/throttle.py LISTEN_PORT TARGET_HOST:TARGET_PORT MIB_PER_S

Every accepted connection is relayed to the target; the target->client direction of *all*
connections together is paced by one token bucket of MIB_PER_S (a shared link, as a remote
upstream's bandwidth is), client->target is not paced. Binds 127.0.0.1; runs until killed.
"""
import asyncio
import sys
import time


class Bucket:
    """A token bucket shared by every connection: `take(n)` returns once n bytes may be sent."""

    def __init__(self, rate: float):
        self.rate = rate
        self.tokens = 0.0
        self.last = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                # at most 50 ms of burst
                self.tokens = min(self.rate * 0.05, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= n or self.tokens >= self.rate * 0.05:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)


async def pipe(reader, writer, bucket=None):
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            if bucket:
                await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main() -> None:
    port = int(sys.argv[1])
    host, tport = sys.argv[2].rsplit(":", 1)
    bucket = Bucket(float(sys.argv[3]) * 1024 * 1024)

    async def handle(creader, cwriter):
        try:
            treader, twriter = await asyncio.open_connection(host, int(tport))
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(pipe(creader, twriter), pipe(treader, cwriter, bucket))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
