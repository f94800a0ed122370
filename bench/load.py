"""A lean HTTP/1.1 load generator on raw asyncio streams, for measurement only.

Locust (``make loadtest``) is the tool people use; it costs a noticeable share of a core on
this 2-core machine, and that share is taken from the server being measured. This client
pre-encodes every request and parses only the status line and Content-Length, so the latency
it reports is the server's, not the client's. Loopback targets only; bounded in time.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Result:
    latencies_s: list[float]
    errors: int
    seconds: float

    @property
    def n(self) -> int:
        return len(self.latencies_s)

    @property
    def rps(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0

    def pct_ms(self, q: float) -> float:
        return (
            float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")
        )


def encode(url: str, path: str, bodies: list[bytes]) -> list[bytes]:
    host = urlsplit(url).netloc
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"benchmarks only target this machine, not {parts.hostname}")
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def _closed_loop(
    url: str, requests: list[bytes], concurrency: int, seconds: float
) -> Result:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        conn = await Connection.open(url)
        i = k
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status = await conn.request(requests[i % len(requests)])
                latencies.append(time.perf_counter() - started)
                errors += status >= 400
                i += concurrency
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return Result(latencies, errors, time.perf_counter() - started)


async def _open_loop(
    url: str, requests: list[bytes], rps: float, seconds: float, connections: int
) -> Result:
    """Requests start on a fixed schedule whether or not earlier ones finished."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(url))
    latencies: list[float] = []
    errors = 0
    n = int(rps * seconds)

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await conn.request(requests[i % len(requests)])
            # latency from the scheduled start: waiting for a connection counts (no coordinated
            # omission)
            latencies.append(time.perf_counter() - scheduled)
            errors += status >= 400
        finally:
            pool.put_nowait(conn)

    tasks = []
    start = time.perf_counter()
    for i in range(n):
        scheduled = start + i / rps
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return Result(latencies, errors, elapsed)


def closed_loop(
    url: str, path: str, bodies: list[bytes], concurrency: int, seconds: float
) -> Result:
    return asyncio.run(_closed_loop(url, encode(url, path, bodies), concurrency, seconds))


def open_loop(
    url: str, path: str, bodies: list[bytes], rps: float, seconds: float, connections: int = 16
) -> Result:
    return asyncio.run(_open_loop(url, encode(url, path, bodies), rps, seconds, connections))
