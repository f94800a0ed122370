"""The reference server: the same scoring core as serving, behind a bare uvicorn + Starlette app.

It does the same work per request as the BentoML service (pydantic validation, feature lookup,
transform, onnxruntime, prediction log record and velocity push) through the very same
``serving.scorer.Scorer`` object, so the difference in throughput is the framework's cost.
Its prediction log is its own: ``bench.run`` starts it in a scratch home (``scratch_home``).

Run by ``bench.run`` as ``uvicorn bench.reference_app:app --host 127.0.0.1 --port N``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from foundation.settings import get_settings
from serving.schemas import Transaction
from serving.scorer import Rejection, Scorer

state: dict[str, Scorer] = {}


async def score(request: Request) -> Response:
    try:
        txn = Transaction.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse({"detail": exc.errors(include_url=False)}, status_code=422)
    result = await state["scorer"].score(txn)
    if isinstance(result, Rejection):
        return JSONResponse(result.body(), status_code=422)
    return Response(result.model_dump_json(), media_type="application/json")


async def ready(_: Request) -> Response:
    return Response("\n", status_code=200 if "scorer" in state else 503)


@asynccontextmanager
async def lifespan(_app: Starlette):
    state["scorer"] = Scorer(get_settings())
    yield
    state.pop("scorer").close()


app = Starlette(
    routes=[Route("/score", score, methods=["POST"]), Route("/readyz", ready)], lifespan=lifespan
)
