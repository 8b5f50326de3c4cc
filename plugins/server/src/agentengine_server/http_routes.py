"""The JSON HTTP API: agents, runs, health, metrics and the OpenAPI document.

Each ``/v1`` route authenticates its caller and only ever sees that user's runs: another
user's run is answered exactly like a missing one. Errors are raised as ``ApiError`` and
answered by the app's handler (``app.py``).
"""

from __future__ import annotations

import structlog
from agentengine.telemetry import attached_trace_context
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentengine_server.errors import ApiError
from agentengine_server.metrics import exposition
from agentengine_server.openapi import openapi_document
from agentengine_server.requests import read_json, run_request
from agentengine_server.runs import RunRecord, run_wire, wire_status
from agentengine_server.state import ServerState, server_state

__all__ = ["api_routes"]

_log = structlog.get_logger("agentengine_server")
#: The W3C trace context headers a client may send with a run.
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


async def healthz(request: Request) -> Response:
    """Liveness and readiness: 200 while serving; 503 once shutting down, or ``degraded``
    while a plugin reports a dependency it needs as not ready (e.g. Redis unreachable)."""
    state = server_state(request)
    if state.closing:
        return JSONResponse({"status": "shutting_down", "dev": state.dev}, status_code=503)
    unready = state.unready_dependencies()
    if unready:
        return JSONResponse(
            {"status": "degraded", "dev": state.dev, "unready": unready}, status_code=503
        )
    return JSONResponse({"status": "ok", "dev": state.dev})


async def metrics(request: Request) -> Response:
    """Prometheus text (see ``metrics``): the factory's and the server's figures, the run
    registry's ``figures()`` (a run queue's; none in memory), and the histograms."""
    state = server_state(request)
    try:
        state.figures.update(await state.factory.runs.figures())
    except Exception as exc:  # the other metrics still answer
        _log.warning("run registry figures unavailable for /metrics", error=str(exc))
    return Response(
        exposition(state.registry), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


async def openapi(request: Request) -> Response:
    """The OpenAPI document of this API."""
    return JSONResponse(openapi_document(dev=server_state(request).dev))


async def list_agents(request: Request) -> Response:
    """The agents a user can run: each one's ``Agent.describe()`` (name, description, input
    schema), by name."""
    state = server_state(request)
    state.request_user(request)
    agents = [a.describe() for a in sorted(state.factory.agents, key=lambda a: a.name)]
    return JSONResponse({"agents": agents})


async def start_run(request: Request) -> Response:
    """``POST /v1/runs``: start a run for the caller; 202 with its id."""
    state = server_state(request)
    user = state.request_user(request)
    data, sizes = await read_json(request, state.settings)
    # The client's traceparent is the run's parent: through the ASGI instrumentation's span
    # when it is installed, else directly.
    carrier = {k: v for k, v in request.headers.items() if k in _TRACE_HEADERS}
    with attached_trace_context(carrier, unless_active=True):
        record = await state.start_run(user, run_request(data, sizes, state.settings))
    return JSONResponse(
        {"run_id": record.run_id, "thread_id": record.thread_id, "status": wire_status(record)},
        status_code=202,
        headers={"Location": f"/v1/runs/{record.run_id}"},
    )


async def _own_run(state: ServerState, user: str, run_id: str) -> RunRecord:
    record = await state.runs.get(user, run_id)
    if record is None:
        # Another user's run is answered exactly like a missing one.
        raise ApiError(404, "run_not_found", f"no run {run_id!r}")
    return record


async def list_runs(request: Request) -> Response:
    """The caller's runs (in flight and recently finished), oldest first."""
    state = server_state(request)
    user = state.request_user(request)
    return JSONResponse({"runs": [run_wire(r) for r in await state.runs.list(user)]})


async def get_run(request: Request) -> Response:
    """Status, output and error of one of the caller's runs."""
    state = server_state(request)
    user = state.request_user(request)
    return JSONResponse(run_wire(await _own_run(state, user, request.path_params["run_id"])))


async def cancel_run(request: Request) -> Response:
    """Cancel one of the caller's runs; answers its final state (409 if it had already
    ended)."""
    state = server_state(request)
    user = state.request_user(request)
    run_id = request.path_params["run_id"]
    record = await _own_run(state, user, run_id)
    if record.finished_at is not None:
        raise ApiError(
            409,
            "run_finished",
            f"run {run_id!r} already ended with status {record.status!r}",
            status=record.status,
        )
    # The answer is the record cancel returns: with run records shared by several processes
    # (Redis) the one looked up above is a copy.
    record = await state.runs.cancel(user, run_id) or record
    return JSONResponse(run_wire(record))


def api_routes() -> list[Route]:
    """The routes of the JSON API."""
    return [
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi),
        Route("/v1/agents", list_agents),
        Route("/v1/runs", start_run, methods=["POST"]),
        Route("/v1/runs", list_runs, methods=["GET"]),
        Route("/v1/runs/{run_id}", get_run),
        Route("/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    ]
