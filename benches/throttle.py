#!/usr/bin/env python3
"""benches/throttle.py — a TCP relay that caps the bytes it sends back to clients, so a benchmark
can put a network-bound upstream (a remote registry at N MiB/s) in front of a cache on loopback,
and optionally delays them, so that a store on loopback answers as one a few milliseconds away.

Usage: benches/throttle.py LISTEN_PORT TARGET_HOST:TARGET_PORT MIB_PER_S [DELAY_MS]

Every accepted connection is relayed to the target; the target->client direction of *all*
connections together is paced by one token bucket of MIB_PER_S (a shared link, as a remote
upstream's bandwidth is; 0: no cap), client->target is not paced. DELAY_MS (default 0): every
target->client byte leaves DELAY_MS after it arrived (a delay line, not a rate: a request's answer
comes DELAY_MS later, whatever else is in flight), so each request/answer exchange costs one
DELAY_MS more, as a round trip to a store in another building would. Binds 127.0.0.1; runs until
killed.
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


async def delayed_pipe(reader, writer, delay, bucket=None):
    """`pipe` with every chunk written `delay` seconds after it was read."""
    queue = asyncio.Queue(maxsize=64)  # at most 16 MiB in the line

    async def read():
        try:
            while True:
                data = await reader.read(256 * 1024)
                await queue.put((time.monotonic() + delay, data))
                if not data:
                    break
        except (ConnectionError, asyncio.CancelledError):
            await queue.put((time.monotonic(), b""))

    reading = asyncio.ensure_future(read())
    try:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if bucket:
                await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        reading.cancel()
        try:
            writer.close()
        except Exception:
            pass


async def main() -> None:
    port = int(sys.argv[1])
    host, tport = sys.argv[2].rsplit(":", 1)
    rate = float(sys.argv[3])
    bucket = Bucket(rate * 1024 * 1024) if rate > 0 else None
    delay = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.0

    async def handle(creader, cwriter):
        try:
            treader, twriter = await asyncio.open_connection(host, int(tport))
        except OSError:
            cwriter.close()
            return
        back = delayed_pipe(treader, cwriter, delay, bucket) if delay else pipe(treader, cwriter, bucket)
        await asyncio.gather(pipe(creader, twriter), back)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
