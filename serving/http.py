"""HTTP details BentoML decides differently from our contract.

Owns: ``InvalidRequestStatus``, the ASGI middleware that answers request validation failures on
the scoring routes with 422 Unprocessable Entity, and counts them
(``fraudlab_rejected_requests{reason="invalid_request"}``). Must not: change bodies, or touch any
response other than a 400 from a route it was given.

BentoML answers a request body that fails its pydantic model with 400 and a body listing every
error (``{"error": ..., "detail": [...]}``). Our contract, like FastAPI's and like the 422 we
return for unknown users and merchants, says 422: the request was well-formed HTTP whose
content cannot be processed. Only the status line changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.metrics import serving_metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class InvalidRequestStatus:
    def __init__(self, app: ASGIApp, paths: tuple[str, ...] = ("/score",)) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return

        async def send_422_for_400(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 400:
                message["status"] = 422
                serving_metrics().rejected.labels(reason="invalid_request").inc()
            await send(message)

        await self.app(scope, receive, send_422_for_400)
