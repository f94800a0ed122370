"""The containerised stack's services, acted on from inside the stack: the Docker Engine API.

Owns: finding this compose project's service containers by compose's labels, and stopping,
starting and restarting them through the Engine API on its unix socket (httpx; no docker CLI
in the image). The scenario lab's runner (docker-compose.yml's ``lab-stack`` service, the one
container with the socket) uses it where the embedded stack stops and starts local processes:
``ScenarioContext`` and the baseline restore.

Must not: act on a container of another compose project, or on a one-off container (``compose
run``, the lab runner itself): every lookup filters by ``com.docker.compose.project``,
``com.docker.compose.service`` and ``com.docker.compose.oneoff=False``. Must not create,
remove or reconfigure containers (compose owns their definition) or hold pipeline logic.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from foundation.settings import Settings

# A stop waits for the container's own grace period (serving flushes its prediction log);
# the HTTP call must outlast it.
API_TIMEOUT_S = 90.0
SERVING_READY_TIMEOUT_S = 180.0
TRAFFIC_SENDING_TIMEOUT_S = 60.0


class EngineError(RuntimeError):
    """The Engine API refused or is unreachable; the message says what to check."""


@dataclass(frozen=True)
class Container:
    id: str
    service: str
    status: str  # created, running, paused, restarting, exited, dead
    health: str | None  # starting, healthy, unhealthy; None without a healthcheck
    exit_code: int | None
    started_at: str

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting")


class Engine:
    """This project's service containers, through the Engine API socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.project = settings.compose_project
        socket = settings.docker_socket
        if not socket.exists():
            raise EngineError(
                f"no Docker Engine socket at {socket}: the lab's stack verbs run in the "
                "`lab-stack` service, which mounts it (`make break|reset STACK=compose`)"
            )
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket)),
            base_url="http://docker",
            timeout=API_TIMEOUT_S,
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise EngineError(f"Docker Engine API {method} {path}: {exc}") from None
        # 304: already in the state asked for (start a running container, stop a stopped one)
        if response.status_code >= 400:
            raise EngineError(
                f"Docker Engine API {method} {path} → {response.status_code}: "
                f"{response.text.strip()[:300]}"
            )
        return response

    def find(self, service: str) -> Container | None:
        """The service's container in this project (None when compose has not created it)."""
        labels = [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service={service}",
            "com.docker.compose.oneoff=False",
        ]
        found = self._call(
            "GET",
            "/containers/json",
            params={"all": "true", "filters": json.dumps({"label": labels})},
        ).json()
        if not found:
            return None
        info = self._call("GET", f"/containers/{found[0]['Id']}/json").json()
        state = info["State"]
        return Container(
            id=info["Id"],
            service=service,
            status=state["Status"],
            health=(state.get("Health") or {}).get("Status"),
            exit_code=state.get("ExitCode"),
            started_at=state.get("StartedAt", ""),
        )

    def _require(self, service: str) -> Container:
        container = self.find(service)
        if container is None:
            raise EngineError(
                f"project {self.project} has no {service} container: `make up STACK=compose`"
            )
        return container

    def running(self, service: str) -> bool:
        container = self.find(service)
        return container is not None and container.running

    def stop(self, service: str) -> bool:
        """Stop the service's container (its own grace period applies); True if it ran."""
        container = self.find(service)
        if container is None or not container.running:
            return False
        self._call("POST", f"/containers/{container.id}/stop")
        return True

    def start(self, service: str) -> None:
        self._call("POST", f"/containers/{self._require(service).id}/start")

    def restart(self, service: str) -> None:
        """Stop (grace period) and start the same container: the process starts afresh with the
        stack's configuration as it is now (live overrides included)."""
        self._call("POST", f"/containers/{self._require(service).id}/restart")


# --- what the lab asks for ------------------------------------------------------------------


def wait_serving_ready(settings: Settings, timeout_s: float = SERVING_READY_TIMEOUT_S) -> None:
    from control.launch import serving_ready

    deadline = time.monotonic() + timeout_s
    while not serving_ready(settings):
        if time.monotonic() > deadline:
            raise RuntimeError(f"serving not ready {timeout_s:.0f}s after its restart")
        time.sleep(0.5)


def restart_serving(settings: Settings) -> None:
    """Restart the serving container and wait until it is ready again."""
    Engine(settings).restart("serving")
    wait_serving_ready(settings)


def stop(settings: Settings, service: str) -> bool:
    return Engine(settings).stop(service)


def traffic_running(settings: Settings) -> bool:
    return Engine(settings).running("traffic")


def start_traffic(settings: Settings, timeout_s: float = TRAFFIC_SENDING_TIMEOUT_S) -> None:
    """Start the simulator's container and wait until it reports progress (or has nothing
    left to replay), as the embedded stack waits for its simulator."""
    from control.stack import replay_finished, traffic_state

    engine = Engine(settings)
    started = time.time()
    engine.start("traffic")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = traffic_state(settings) or {}
        if float(state.get("updated_at", 0)) >= started:
            return
        container = engine.find("traffic")
        if container is not None and not container.running:
            if container.exit_code == 0 and replay_finished(settings):
                return  # the replay had already reached the end of the generated future
            raise RuntimeError(f"the traffic container exited ({container.exit_code})")
        time.sleep(1.0)
    raise RuntimeError(f"the traffic simulator reported no progress within {timeout_s:.0f}s")
