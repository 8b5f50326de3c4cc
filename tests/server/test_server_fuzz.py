"""Fuzzing a real server: the HTTP API from its own OpenAPI document (schemathesis), and
WebSocket frames (hypothesis).

HTTP: every operation of ``/openapi.json`` gets generated requests, valid and invalid, with and
without a token; any 5xx, or an answer the document does not describe (status code, content
type, body schema, headers), fails. WebSocket: arbitrary text frames, hostile JSON (deep
nesting, huge integers, lone surrogates, wrong types, unknown ``type``s) each get one
well-formed answer frame, the connection stays open, and a run started afterwards on the same
socket still works. Examples are bounded so each test stays well under 20 seconds; the
``slow`` variants run more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from server_helpers import RunningServer, make_token, recv_until, running_server, ws_connect
from websockets.asyncio.client import ClientConnection

# -- HTTP, from the OpenAPI document ---------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[RunningServer]:
    with running_server() as server:
        yield server


_HTTP_EXAMPLES = 15


def _fuzz_http(srv: RunningServer, max_examples: int) -> None:
    """Every operation of the served document, with valid (positive) and invalid (negative)
    generated requests."""
    api = schemathesis.openapi.from_url(f"{srv.base_url}/openapi.json")
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=max_examples,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def check(case: Any) -> None:
                _check_case(case, srv)

            # Unsatisfiable: nothing invalid to send to this operation (no parameters, no body).
            with contextlib.suppress(Unsatisfiable):
                check()


def _check_case(case: Any, srv: RunningServer) -> None:
    headers = srv.auth("fuzzer")
    if case.path == "/v1/events":
        _check_event_stream(case, srv, headers)
        return
    case.call_and_validate(base_url=srv.base_url, headers=headers, timeout=30)


def _check_event_stream(case: Any, srv: RunningServer, headers: dict[str, str]) -> None:
    """The event stream never ends by itself: read the status and the start, then hang up
    (a non-200 answer has a finite body, validated as usual)."""
    kwargs = case.as_transport_kwargs(base_url=srv.base_url, headers=headers)
    kwargs.pop("cookies", None)
    with httpx.stream(
        kwargs.pop("method"), kwargs.pop("url"), timeout=30, **_httpx_kwargs(kwargs)
    ) as resp:
        if resp.status_code == 200:
            assert resp.headers["content-type"].startswith("text/event-stream")
            first = next(resp.iter_text())
            assert first.startswith("retry: 1000"), first
            return
        resp.read()
    assert resp.status_code < 500, resp.text
    case.validate_response(resp)


def _httpx_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    allowed = {"params", "headers", "content", "data", "json"}
    return {k: v for k, v in kwargs.items() if k in allowed and v is not None}


def test_http_api_matches_its_openapi_document(fuzz_server: RunningServer) -> None:
    _fuzz_http(fuzz_server, _HTTP_EXAMPLES)


# -- WebSocket frames -------------------------------------------------------------------------

_json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_frame_types = st.sampled_from(["run", "cancel", "resume", "bogus", "", "RUN"]) | st.text(
    max_size=6
)
_agents = st.sampled_from(["echo", "researcher", "nope"]) | st.text(max_size=8)


@st.composite
def _object_frames(draw: st.DrawFn) -> str:
    """A JSON object frame with a known or unknown ``type`` and fields of any type."""
    frame: dict[str, Any] = {"type": draw(_frame_types | _json)}
    for key, values in (
        ("agent", _agents | _json),
        ("input", st.dictionaries(st.text(max_size=8), _json, max_size=3) | _json),
        ("thread_id", st.text(max_size=10) | _json),
        ("run_id", st.text(max_size=10) | _json),
        ("after", st.text(max_size=10) | st.integers() | _json),
        ("id", _json),
    ):
        if draw(st.booleans()):
            frame[key] = draw(values)
    if frame.get("type") == "run" and frame.get("agent") == "researcher":
        frame["agent"] = "echo"  # keep each example short: echo answers at once
    return json.dumps(frame)


def _hostile_text(draw: st.DrawFn) -> str:
    depth = draw(st.integers(min_value=60, max_value=30_000))
    kind = draw(st.sampled_from(["array", "object", "run_input", "bigint", "surrogate", "nan"]))
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        n = min(depth, 6000)
        return '{"a":' * n + "1" + "}" * n
    if kind == "run_input":
        return '{"type":"run","agent":"echo","input":{"x":' + "[" * depth + "]" * depth + "}}"
    if kind == "bigint":
        digits = draw(st.integers(min_value=4200, max_value=20_000))
        return '{"type":"resume","after":' + "7" * digits + "}"
    if kind == "surrogate":
        code = draw(st.integers(min_value=0xD800, max_value=0xDFFF))
        return '{"type":"run","agent":"echo","input":{"text":"\\u' + f"{code:04x}" + '"}}'
    return '{"type":"run","agent":"echo","input":{"text":NaN}}'


_frames = (
    st.text(max_size=200) | _object_frames() | _json.map(json.dumps) | st.composite(_hostile_text)()
)


class _WsSession:
    """One WebSocket kept open across examples, on a loop in its own thread (hypothesis
    examples are synchronous)."""

    def __init__(self, srv: RunningServer) -> None:
        self.srv = srv
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ws: ClientConnection = self.run(ws_connect(srv, "fuzzer", max_size=None))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.run(self.ws.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _answer(ws: ClientConnection, text: str) -> list[dict[str, Any]]:
    """Send one frame; return what came back up to its answer (event frames of runs the fuzzer
    started may come first). Every frame must be a JSON object with a ``type``."""
    await ws.send(text)
    frames: list[dict[str, Any]] = []
    answers = {"error", "run_accepted", "cancel_done", "resumed"}
    async with asyncio.timeout(20):
        while True:
            frame = json.loads(await ws.recv())
            assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
            frames.append(frame)
            if frame["type"] in answers:
                if frame["type"] == "resumed":
                    # A refused cursor follows its acknowledgement; anything else just flows.
                    await _drain_resume(ws, frames)
                return frames


async def _drain_resume(ws: ClientConnection, frames: list[dict[str, Any]]) -> None:
    try:
        async with asyncio.timeout(0.3):
            while True:
                frames.append(json.loads(await ws.recv()))
    except TimeoutError:
        pass


async def _run_still_works(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "after fuzz"}}))
    frames = await recv_until(ws, lambda f: f.get("output") == "after fuzz", timeout=30)
    assert frames[-1]["type"] == "agent_completed"
    assert frames[-1]["status"] == "succeeded"


def _fuzz_frames(srv: RunningServer, max_examples: int) -> None:
    session = _WsSession(srv)
    try:

        @given(text=_frames)
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))
        def check(text: str) -> None:
            frames = session.run(_answer(session.ws, text))
            for frame in frames:
                if frame["type"] == "error":
                    assert isinstance(frame.get("error"), str) and frame["error"], frame
                    assert isinstance(frame.get("message"), str) and frame["message"], frame
                    assert frame["error"] != "internal_error", (text[:200], frame)

        check()
        session.run(_run_still_works(session.ws))
    finally:
        session.close()


def test_websocket_frames_fuzzed_each_get_a_well_formed_answer(fuzz_server: RunningServer) -> None:
    _fuzz_frames(fuzz_server, max_examples=300)


@pytest.mark.slow
def test_websocket_frames_fuzzed_long(fuzz_server: RunningServer) -> None:
    _fuzz_frames(fuzz_server, max_examples=1000)


@pytest.mark.slow
def test_http_api_matches_its_openapi_document_long(fuzz_server: RunningServer) -> None:
    _fuzz_http(fuzz_server, 60)


def test_fuzz_token_is_accepted(fuzz_server: RunningServer) -> None:
    """The fuzzers' token works, so the generated requests reach past authentication."""
    r = httpx.get(
        f"{fuzz_server.base_url}/v1/runs",
        headers={"Authorization": f"Bearer {make_token('fuzzer')}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
