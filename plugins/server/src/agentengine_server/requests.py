"""What a client asks for, read and checked before anything is started.

``read_json`` reads an HTTP request's JSON body within ``max_body_bytes`` (the WebSocket reads
its frames with ``inputs.load_json``); ``check_fields`` checks the fields of a body or frame.

A run is asked for the same way over HTTP (``POST /v1/runs``) and WebSocket (a ``run`` frame),
and ``run_request`` is the one check of it for both: the same fields (``agent``, ``input``,
``thread_id``), the same errors with the same codes (``invalid_request`` for missing, unknown
or mistyped fields, ``invalid_input`` for an input that is not an object, ``input_too_large``).
Whether the agent exists and the input fits its signature is checked when the run starts
(``RunManager.start``, answered through ``errors.run_error``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from agentengine import ToolArgumentError, check_run_input as core_check_run_input
from starlette.requests import Request

from agentengine_server.errors import ApiError
from agentengine_server.inputs import load_json
from agentengine_server.settings import ServerSettings

__all__ = [
    "RUN_FIELDS",
    "RunRequest",
    "check_fields",
    "check_input_size",
    "check_run_input",
    "read_json",
    "run_request",
]

_TYPE_NAMES: dict[type, str] = {str: "a string", dict: "an object"}


async def read_json(request: Request, settings: ServerSettings) -> tuple[Any, dict[str, int]]:
    """The request's JSON body and the compact JSON size of each of its top-level members.

    Answers 413 over ``max_body_bytes``, 400 for what is not JSON, 422 for nesting past
    ``max_json_depth`` or a string that is not valid Unicode (``inputs.check_json``).
    """
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    # isascii: str.isdigit() also accepts digits int() refuses ("²"); the length check keeps
    # int() under its 4,300-digit limit.
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > limit)
    ):
        raise ApiError(413, "body_too_large", f"the request body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the request body is over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
    return load_json(raw, what="the request body", max_depth=settings.max_json_depth)


def check_fields(
    data: Any,
    fields: Mapping[str, type | None],
    required: Collection[str],
    *,
    envelope: Collection[str] = (),
) -> None:
    """422 ``invalid_request`` unless ``data`` is an object with the ``required`` keys, no
    keys but ``fields`` and ``envelope`` (a frame's ``type`` and ``id``), and each field of the
    type ``fields`` gives (None: any; checked by the caller)."""
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", f"expected a JSON object, got {type(data).__name__}")
    allowed = [*fields, *envelope]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(map(repr, allowed))}",
        )
    missing = sorted(set(required) - set(data))
    if missing:
        raise ApiError(422, "invalid_request", f"missing field(s): {', '.join(map(repr, missing))}")
    for key, kind in fields.items():
        value = data.get(key)
        if kind is not None and value is not None and not isinstance(value, kind):
            raise ApiError(
                422,
                "invalid_request",
                f"field {key!r} must be {_TYPE_NAMES[kind]}, got {type(value).__name__}",
            )


def check_input_size(sizes: Mapping[str, int], settings: ServerSettings) -> None:
    """413 ``input_too_large`` when the run input (its size among ``sizes``, as measured by
    ``inputs.check_json``) is over ``max_input_bytes``."""
    size = sizes.get("input", 0)
    limit = settings.max_input_bytes
    if size > limit:
        raise ApiError(
            413,
            "input_too_large",
            f"the run input is {size} bytes as JSON, over the limit of {limit} bytes "
            "(max_input_bytes); send less, or pass large data by reference",
            limit=limit,
        )


def check_run_input(value: Any) -> dict[str, Any] | None:
    """A run's input must be an object (the agent's keyword arguments) or absent: the core's
    rule (``agentengine.check_run_input``), answered 422 ``invalid_input``. The server's one
    check of it, for HTTP and WebSocket alike."""
    try:
        checked = core_check_run_input(value, "field 'input'")
    except ToolArgumentError as exc:
        raise ApiError(422, "invalid_input", str(exc)) from None
    return None if checked is None else dict(checked)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A checked request to start a run."""

    agent: str
    input: dict[str, Any] | None
    thread_id: str | None


#: The fields of a run request (``input`` is checked by ``check_run_input``).
RUN_FIELDS: Mapping[str, type | None] = {"agent": str, "input": None, "thread_id": str}


def run_request(
    data: Any,
    sizes: Mapping[str, int],
    settings: ServerSettings,
    *,
    envelope: Collection[str] = (),
) -> RunRequest:
    """The run ``data`` asks for (a ``POST /v1/runs`` body, or a ``run`` frame with its
    ``envelope`` fields), checked: fields (``check_fields``), the input (``check_run_input``)
    and its size (``check_input_size``); raises ``ApiError``."""
    check_fields(data, RUN_FIELDS, {"agent"}, envelope=envelope)
    run_input = check_run_input(data.get("input"))
    check_input_size(sizes, settings)
    return RunRequest(agent=data["agent"], input=run_input, thread_id=data.get("thread_id"))
