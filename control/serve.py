"""Serving in the containerised stack: run the deployed release, and follow the release pointer.

Owns: ``fraudlab serve``, the serving container's command — a small supervisor that runs
BentoML on the release ``<home>/releases/current.json`` names (the image's code when none is
deployed), the way the embedded stack starts serving (``launch.serving_command``), and restarts
it in place when the pointer moves or a restart is asked for; and the other side of that
protocol, for any container sharing the home volume (the candidate's workstation and the lab
runner have no Docker socket): ``deploy`` points serving at a release and ``restart`` asks for a
fresh process, each waiting until serving answers again.

Files (in ``<home>/run``): ``serving.json`` — what the supervisor runs (release, since when);
``serving-restart.json`` — a pending restart request, with variables for the new process only
(``ScenarioContext.restart_serving(**overrides)``), consumed (deleted) as it is read.

Must not: build releases (``control.releases``), know about scenarios, or restart anything
but its own child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from control import releases
from foundation.settings import Settings

console = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_FILE = "serving.json"
REQUEST_FILE = "serving-restart.json"
POLL_S = 0.5
STOP_GRACE_S = 25.0  # inside compose's 30 s stop_grace_period: the log is flushed on the way
READY_TIMEOUT_S = 180.0


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
    """What the containerised serving runs: {"release": id or None, "started_at": epoch}."""
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


def _stop(child: subprocess.Popen) -> int:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)  # BentoML stops its workers; the log is flushed
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return child.returncode


def run(settings: Settings) -> int:
    """The supervisor (``fraudlab serve``): serve, follow the pointer, stop on SIGTERM."""
    from control import launch

    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    # a request left over from before this container started is moot: it starts afresh
    _take_request(settings)
    extra: dict[str, str] = {}
    while True:
        fresh = settings.reloaded()  # live overrides as they are now
        release = releases.current(fresh)
        command, release_env, cwd = launch.serving_command(
            fresh, release, os.environ.get("PYTHONPATH")
        )
        env = {**launch.child_environment(fresh), **release_env, **extra}
        child = subprocess.Popen(command, env=env, cwd=cwd)
        what = release.describe() if release else "the image's code"
        console.print(f"→ serving {what} (pid {child.pid})")
        _write_json(
            _status_path(fresh),
            {"release": release.id if release else None, "started_at": time.time()},
        )
        while True:
            time.sleep(POLL_S)
            if stopping:
                return _stop(child)
            code = child.poll()
            if code is not None:
                console.print(f"✗ serving exited ({code})")
                return code or 1  # the container's restart policy takes over
            request = _take_request(fresh)
            moved = _current_id(fresh) != (release.id if release else None)
            if request is not None or moved:
                reason = "deployed release changed" if moved else "restart asked for"
                console.print(f"→ {reason}: restarting serving")
                _stop(child)
                extra = request or {}
                break


# --- the other side: any container sharing the home volume ---------------------------------


def wait_serving(
    settings: Settings, since: float, release: str | None, timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Until serving was (re)started at or after ``since`` on ``release`` and is ready."""
    from control.launch import serving_ready

    deadline = time.monotonic() + timeout_s
    while True:
        found = status(settings) or {}
        if (
            float(found.get("started_at", 0)) >= since
            and found.get("release") == release
            and serving_ready(settings)
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"serving did not come back on {release or 'the image code'} within "
                f"{timeout_s:.0f}s (its container's log says why)"
            )
        time.sleep(POLL_S)


def restart(settings: Settings, env: dict[str, str] | None = None) -> None:
    """Ask serving for a fresh process (``env``: variables for that process only) and wait."""
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
