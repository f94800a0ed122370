"""Serving's supervisor: the listening socket is its own and its workers inherit it, and a
/readyz answer counts for the worker that accepted the connection, not for whichever answered
first — the way a deploy tells the new release is ready while the old one still serves."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from control import serve
from tests.conftest import free_port, small_settings

# A stand-in worker: accepts on the inherited socket and answers /readyz with ``STATUS``,
# keeping each connection open as HTTP/1.1 keep-alive does.
WORKER = """
import socket, sys, time
listener = socket.socket(fileno=int(sys.argv[1]))
listener.setblocking(True)
print("accepting", flush=True)
kept = []
while True:
    conn, _ = listener.accept()
    conn.recv(1024)
    conn.sendall(b"HTTP/1.1 %s OK\\r\\ncontent-length: 0\\r\\n\\r\\n" % sys.argv[2].encode())
    kept.append(conn)
"""


def _worker(listener, status: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(listener.fileno()), status],
        pass_fds=(listener.fileno(),),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "accepting"
    return process


@pytest.fixture
def listener(tmp_path):
    sock = serve.listen(small_settings(tmp_path, serving_port=free_port()))
    yield sock
    sock.close()


def test_a_ready_answer_counts_for_the_worker_that_accepted_it(listener) -> None:
    host, port = serve._probe_host(listener), listener.getsockname()[1]
    worker = _worker(listener, "200")
    try:
        assert serve.answered_ready(host, port, worker.pid)
        # the same answer, but accepted by another process: not that process's readiness
        assert not serve.answered_ready(host, port, 1)
    finally:
        worker.kill()
        worker.wait()


def test_an_unready_answer_or_no_answer_is_not_ready(listener) -> None:
    host, port = serve._probe_host(listener), listener.getsockname()[1]
    worker = _worker(listener, "503")
    try:
        assert not serve.answered_ready(host, port, worker.pid)
    finally:
        worker.kill()
        worker.wait()
    assert not serve.answered_ready(host, free_port(), worker.pid, timeout_s=0.5)


def test_two_workers_share_the_socket_and_each_is_found(listener) -> None:
    """While the old worker still serves, probes reach the new one too, and only its own
    answers count for it."""
    host, port = serve._probe_host(listener), listener.getsockname()[1]
    old, new = _worker(listener, "200"), _worker(listener, "200")
    try:
        found = {old.pid: 0, new.pid: 0}
        deadline = time.monotonic() + 10
        while min(found.values()) == 0 and time.monotonic() < deadline:
            for pid in found:
                found[pid] += serve.answered_ready(host, port, pid)
        assert min(found.values()) > 0, found
    finally:
        for process in (old, new):
            process.kill()
            process.wait()
