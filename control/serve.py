"""Serving's supervisor: hold serving's port, run the deployed release on it, switch releases
without dropping a request.

Owns: ``fraudlab serve``, the command that runs serving in both stacks (the embedded stack's
``serving`` process, the serving container's command) — a small supervisor that binds serving's
port once and runs BentoML's HTTP worker for the release ``<home>/releases/current.json`` names
(the image's code when none is deployed) on that socket; and the other side of that protocol,
for any process sharing the home (``fraudlab deploy``, the workstation and the lab runner, which
have no Docker socket): ``deploy`` points serving at a release and ``restart`` asks for a fresh
worker, each waiting until the new one answers.

**How a release is switched** (a deploy, or a restart asked for through the request file),
the way a model reload is — start the new one, switch, drain the old — and the way gunicorn and
nginx upgrade in place: the listening socket belongs to the supervisor, not to a worker.

1. The new release's worker starts on the same inherited socket beside the old one. uvicorn
   accepts only once the service's start-up (model load, feature store) has finished, so until
   then every connection is accepted, and answered, by the old worker.
2. It is ready when it has answered ``/readyz`` itself: probes go to the shared port, and the
   one that counts is a 200 on a connection the new worker's process holds (the kernel's socket
   table says which process accepted it).
3. The old worker gets SIGTERM: uvicorn stops accepting, finishes what it is answering, and the
   scorer's shutdown flushes the prediction log. Connections still queued on the socket are
   the new worker's to accept: nothing is refused, nothing is answered twice. Its Prometheus
   files of live gauges go with it (``mark_process_dead``); its counters stay, so /metrics keeps
   counting across releases as across the workers of one server.

A release whose worker exits or stays unready for ``READY_TIMEOUT_S`` is not switched to: the
old one keeps serving and the status file says why (``fraudlab deploy`` prints it). A worker
that dies while current is started again (after a pause that grows to ``MAX_BACKOFF_S``), as
BentoML's own supervisor would: a worker without a champion stops with a message and is
retried until one appears.

BentoML's worker is run directly (``_bentoml_impl.worker.service``, the module and arguments
``bentoml serve``'s circus arbiter uses for it): ``bentoml serve`` binds the port itself, so a
second release could not start beside the first on it. What the arbiter also did is done here:
empty ``$BENTOML_HOME/prometheus_multiproc_dir`` at start and point each worker at it.

Files (in ``<home>/run``): ``serving.json`` — what serving runs (release, worker pid, since
when; the last release that failed to start, and why); ``serving-restart.json`` — a pending
restart request, with variables for the new worker only (``ScenarioContext.restart_serving(**
overrides)``), consumed (deleted) as it is read.

Must not: build releases (``control.releases``), know about scenarios, or signal any process
but its own workers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from control import launch, releases
from foundation.settings import Settings

console = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_FILE = "serving.json"
REQUEST_FILE = "serving-restart.json"
POLL_S = 0.5
PROBE_EVERY_S = 0.1
STOP_GRACE_S = 25.0  # inside compose's 30 s stop_grace_period: the log is flushed on the way
READY_TIMEOUT_S = 180.0
MAX_BACKOFF_S = 10.0
BACKLOG = 2048  # BentoML's default


def _status_path(settings: Settings) -> Path:
    return settings.run_dir / STATUS_FILE


def _request_path(settings: Settings) -> Path:
    return settings.run_dir / REQUEST_FILE


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def status(settings: Settings) -> dict[str, Any] | None:
    """What serving runs: {"release": id or None, "started_at": epoch, "pid": worker pid,
    "failed": {"release", "at", "reason"} of the last release that did not start}."""
    try:
        return json.loads(_status_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _current_id(settings: Settings) -> str | None:
    release = releases.current(settings)
    return release.id if release else None


def _take_request(settings: Settings) -> dict[str, str] | None:
    """The pending restart request's variables ({} for a plain restart), removing it."""
    path = _request_path(settings)
    try:
        request = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        request = {}
    path.unlink(missing_ok=True)
    return {str(k): str(v) for k, v in (request.get("env") or {}).items()}


# --- the socket and who answers on it ----------------------------------------------------------


def listen(settings: Settings) -> socket.socket:
    """Serving's listening socket on ``bind_host:serving_port``, inheritable by the workers."""
    family = socket.AF_INET6 if ":" in settings.bind_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.bind_host, settings.serving_port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def _probe_host(sock: socket.socket) -> str:
    host = sock.getsockname()[0]
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _server_side_inode(port: int, peer_port: int) -> int | None:
    """The inode of the accepted socket of a connection to ``port`` from ``peer_port`` on this
    machine (the kernel's socket tables; None when it is not there)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.rsplit(":", 1)[1], 16) == port
                and int(remote.rsplit(":", 1)[1], 16) == peer_port
            ):
                return int(fields[9])
    return None


def _holds_socket(pid: int, inode: int) -> bool:
    target = f"socket:[{inode}]"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def answered_ready(host: str, port: int, pid: int, timeout_s: float = 2.0) -> bool:
    """True when a ``/readyz`` probe to ``host:port`` got a 200 from the worker ``pid``.

    Several workers accept from one socket, so the answer alone does not say whose it is: the
    connection is kept open while the accepted end is looked up among ``pid``'s descriptors.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.sendall(f"GET /readyz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = conn.recv(64)
            if not head.startswith(b"HTTP/1.1 200"):
                return False
            inode = _server_side_inode(port, conn.getsockname()[1])
            return inode is not None and _holds_socket(pid, inode)
    except OSError:
        return False


# --- workers -------------------------------------------------------------------------------------


def prometheus_dir() -> Path:
    """Where BentoML's workers keep their Prometheus files (``$BENTOML_HOME``'s, as
    ``bentoml serve`` sets it)."""
    home = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    return home / "prometheus_multiproc_dir"


@dataclass
class Worker:
    release: releases.Release | None
    process: subprocess.Popen
    number: int
    started_at: float
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def release_id(self) -> str | None:
        return self.release.id if self.release else None

    def describe(self) -> str:
        what = self.release.describe() if self.release else "the image's code"
        return f"{what}, worker {self.number} (pid {self.process.pid})"


def _spawn(
    settings: Settings,
    listener: socket.socket,
    release: releases.Release | None,
    number: int,
    extra: dict[str, str],
) -> Worker:
    command, release_env, cwd = launch.serving_command(
        release, listener.fileno(), number, os.environ.get("PYTHONPATH")
    )
    env = {
        **launch.child_environment(settings),
        **release_env,
        "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir()),
        **extra,
    }
    process = subprocess.Popen(command, env=env, cwd=cwd, pass_fds=(listener.fileno(),))
    return Worker(release, process, number, time.time(), extra)


def _reap(worker: Worker, prometheus: Path) -> None:
    """After a worker exited: drop its live gauges from /metrics (prometheus_client's rule)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.process.pid, str(prometheus))


def _stop(worker: Worker, prometheus: Path) -> int:
    if worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)  # uvicorn drains; the log is flushed
        try:
            worker.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
    _reap(worker, prometheus)
    return worker.process.returncode


class Supervisor:
    """One serving port, the current worker, and the workers draining after a switch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.listener = listen(settings)
        self.host, self.port = _probe_host(self.listener), self.listener.getsockname()[1]
        self.prometheus = prometheus_dir()
        # as `bentoml serve` does at start: no file of an earlier server may count on /metrics
        shutil.rmtree(self.prometheus, ignore_errors=True)
        self.prometheus.mkdir(parents=True, exist_ok=True)
        self.number = 0
        self.current: Worker | None = None
        self.draining: list[tuple[Worker, float]] = []  # and when each was told to stop
        self.failed: dict[str, Any] | None = None
        self.stopping: list[int] = []

    def spawn(self, release: releases.Release | None, extra: dict[str, str]) -> Worker:
        self.number += 1
        fresh = self.settings.reloaded()  # live overrides as they are now
        worker = _spawn(fresh, self.listener, release, self.number, extra)
        console.print(f"→ serving {worker.describe()} on {self.host}:{self.port}")
        return worker

    def publish(self) -> None:
        worker = self.current
        _write_json(
            _status_path(self.settings),
            {
                "release": worker.release_id if worker else None,
                "started_at": worker.started_at if worker else None,
                "pid": worker.process.pid if worker else None,
                "failed": self.failed,
            },
        )

    def start(self) -> None:
        self.current = self.spawn(releases.current(self.settings.reloaded()), {})
        self.publish()

    def ready(self, worker: Worker, timeout_s: float = READY_TIMEOUT_S) -> str | None:
        """Wait until ``worker`` answers /readyz itself; None when it does, else why not."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.stopping:
                return "serving is stopping"
            if worker.process.poll() is not None:
                return f"its worker exited ({worker.process.returncode}) before it was ready"
            if answered_ready(self.host, self.port, worker.process.pid):
                return None
            self.collect()
            time.sleep(PROBE_EVERY_S)
        return f"not ready within {timeout_s:.0f}s"

    def switch(self, release: releases.Release | None, extra: dict[str, str], reason: str) -> bool:
        """Start ``release`` beside the current worker, switch when it is ready, drain the old."""
        old = self.current
        started = time.monotonic()
        new = self.spawn(release, extra)
        why = self.ready(new)
        if why is not None:
            _stop(new, self.prometheus)
            if self.stopping:
                return False
            what = release.id if release else None
            self.failed = {"release": what, "at": time.time(), "reason": why}
            self.publish()
            kept = old.describe() if old else "nothing"
            console.print(f"✗ {reason}: {new.describe()} {why}; still serving {kept}")
            return False
        self.current, self.failed = new, None
        self.publish()
        if old is not None:
            old.process.send_signal(signal.SIGTERM)
            self.draining.append((old, time.monotonic()))
        console.print(
            f"✓ {reason}: switched to {new.describe()} in {time.monotonic() - started:.1f}s;"
            f" draining {old.describe() if old else 'nothing'}"
        )
        return True

    def collect(self) -> None:
        """Reap drained workers; kill one that outlives the grace period."""
        for worker, since in list(self.draining):
            if worker.process.poll() is None:
                if time.monotonic() - since > STOP_GRACE_S:
                    worker.process.kill()
                continue
            self.draining.remove((worker, since))
            _reap(worker, self.prometheus)
            console.print(f"  drained {worker.describe()} ({worker.process.returncode})")

    def stop(self) -> int:
        for worker, _ in self.draining:
            _stop(worker, self.prometheus)
        code = _stop(self.current, self.prometheus) if self.current else 0
        self.listener.close()
        return code

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda signum, frame: self.stopping.append(signum))
        signal.signal(signal.SIGINT, lambda signum, frame: self.stopping.append(signum))
        # a request left over from before this supervisor started is moot: it starts afresh
        _take_request(self.settings)
        self.start()
        backoff = 1.0
        while not self.stopping:
            time.sleep(POLL_S)
            self.collect()
            if self.stopping:
                break
            current = self.current
            assert current is not None
            if current.process.poll() is not None:
                console.print(
                    f"✗ {current.describe()} exited ({current.process.returncode}); starting it"
                    f" again in {backoff:.0f}s"
                )
                _reap(current, self.prometheus)
                time.sleep(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF_S)
                self.current = self.spawn(current.release, current.extra)
                self.publish()
                continue
            if time.time() - current.started_at > MAX_BACKOFF_S:
                backoff = 1.0
            request = _take_request(self.settings)
            wanted = releases.current(self.settings)
            wanted_id = wanted.id if wanted else None
            moved = wanted_id != current.release_id
            if moved and self.failed and self.failed["release"] == wanted_id and request is None:
                continue  # it failed to start: wait for another deploy or a restart request
            if request is not None or moved:
                reason = f"deploy of {wanted_id}" if moved else "restart asked for"
                self.switch(wanted, request or {}, reason)
        return self.stop()


def run(settings: Settings) -> int:
    """The supervisor (``fraudlab serve``): serve, follow the pointer, stop on SIGTERM."""
    try:
        supervisor = Supervisor(settings)
    except OSError as exc:
        console.print(
            f"✗ cannot listen on {settings.bind_host}:{settings.serving_port} ({exc}): another"
            " server holds the port; set FRAUDLAB_SERVING_PORT to a free one"
        )
        return 1
    return supervisor.run()


# --- the other side: any process sharing the home ------------------------------------------


class DeployFailed(RuntimeError):
    """The release was started and did not become ready; the previous one still serves."""


def wait_serving(
    settings: Settings, since: float, release: str | None, timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Until serving switched at or after ``since`` to ``release`` and answers; raises
    ``DeployFailed`` as soon as the supervisor gave that release up."""
    from control.launch import serving_ready

    deadline = time.monotonic() + timeout_s + 30.0  # the supervisor's own timeout comes first
    while True:
        found = status(settings) or {}
        if (
            float(found.get("started_at") or 0) >= since
            and found.get("release") == release
            and serving_ready(settings)
        ):
            return
        failed = found.get("failed") or {}
        if failed.get("release") == release and float(failed.get("at", 0)) >= since:
            raise DeployFailed(
                f"{release or 'the image code'} did not start: {failed.get('reason')};"
                f" serving still runs {found.get('release') or 'the image code'}"
                " (its log says why: `fraudlab logs serving`)"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"serving did not come back on {release or 'the image code'} within "
                f"{timeout_s:.0f}s (its log says why: `fraudlab logs serving`)"
            )
        time.sleep(POLL_S)


def restart(settings: Settings, env: dict[str, str] | None = None) -> None:
    """Ask serving for a fresh worker (``env``: variables for that worker only) and wait."""
    since = time.time()
    _write_json(_request_path(settings), {"requested_at": since, "env": env or {}})
    wait_serving(settings, since, _current_id(settings))


def deploy(settings: Settings, release: releases.Release | None) -> None:
    """Point serving at ``release`` (None: the image's code) and wait until it runs it."""
    from control.launch import serving_ready

    wanted = release.id if release else None
    since = time.time()
    if release is None:
        releases.clear_current(settings)
    else:
        releases.set_current(settings, release)
    running = status(settings)
    if running is not None and running.get("release") == wanted and serving_ready(settings):
        return  # it runs that already: the pointer did not move, nothing restarts
    wait_serving(settings, since, wanted)
