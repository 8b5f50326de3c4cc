"""Traces of the server: ``agentengine serve --otel`` exports to a real OTLP/HTTP receiver, the
client's ``traceparent`` is the parent of the run, and HTTP requests are spans of the ASGI
instrumentation."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
from otlp_receiver import ReceivedSpan, otel_env, otlp_receiver
from server_helpers import (
    dev_token,
    http,
    recv_until,
    running_server,
    serve_process,
    wait_run,
    ws_connect,
)
from tracing_helpers import by_name, parent_id, sdk_tracing

#: The client's own span: a trace id and span id it made (W3C traceparent, sampled).
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
USER = "user-zq71-traced"


def _wait_run(port: int, run_id: str, headers: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        body = httpx.get(f"http://127.0.0.1:{port}/v1/runs/{run_id}", headers=headers).json()
        if body["status"] != "running":
            return dict(body)
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_serve_otel_sends_spans_to_an_otlp_receiver(tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        env = otel_env(receiver, "api-under-test")
        with serve_process(tmp_path, "--dev", "--otel", env=env) as (_proc, port):
            headers = {"Authorization": f"Bearer {dev_token(port, USER)}"}
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/runs",
                json={"agent": "echo", "input": {"text": "hi"}},
                headers={**headers, "traceparent": TRACEPARENT},
            )
            assert r.status_code == 202, r.text
            run_id = r.json()["run_id"]
            assert _wait_run(port, run_id, headers)["status"] == "succeeded"

            def arrived(spans: list[ReceivedSpan]) -> bool:
                return any(s.name == "invoke_agent echo" for s in spans)

            spans = receiver.wait_for(arrived)
    run_span = next(s for s in spans if s.name == "invoke_agent echo")
    assert run_span.service == "api-under-test"
    assert run_span.attributes["agentengine.run_id"] == run_id
    assert run_span.attributes["agentengine.status"] == "succeeded"
    # The client's traceparent is honoured: the run is in the client's trace, under the
    # request's server span (the ASGI instrumentation's), under the client's span.
    assert run_span.trace_id == CLIENT_TRACE
    by_id = {s.span_id: s for s in spans}
    request_span = by_id[run_span.parent_span_id]
    assert request_span.name.startswith("POST")
    assert request_span.parent_span_id == CLIENT_SPAN
    everything = json.dumps([(s.name, s.attributes) for s in spans])
    assert USER not in everything


def test_otel_table_turns_tracing_on_and_buffered_spans_are_sent_at_exit(tmp_path: Path) -> None:
    """``[otel] enabled`` and ``service_name`` in agentengine.toml, no ``--otel``, no
    ``OTEL_SERVICE_NAME``; the batch delay is far longer than the test: the run's span is
    still in the buffer when the server stops, and arrives because the exit flushes it."""
    config = tmp_path / "agentengine.toml"
    config.write_text('[otel]\nenabled = true\nservice_name = "from-the-table"\n')
    with otlp_receiver() as receiver:
        env = {
            "AGENTENGINE_CONFIG": str(config),
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
        }
        with serve_process(tmp_path, "--dev", env=env) as (proc, port):
            headers = {"Authorization": f"Bearer {dev_token(port, USER)}"}
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/runs",
                json={"agent": "echo", "input": {"text": "hi"}},
                headers=headers,
            )
            assert r.status_code == 202, r.text
            run_id = r.json()["run_id"]
            assert _wait_run(port, run_id, headers)["status"] == "succeeded"
            assert receiver.spans == []  # buffered: nothing sent yet
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0]
            assert proc.returncode == 0, output
        spans = receiver.wait_for(lambda got: any(s.name == "invoke_agent echo" for s in got))
    run_span = next(s for s in spans if s.name == "invoke_agent echo")
    assert run_span.service == "from-the-table"
    assert run_span.attributes["agentengine.run_id"] == run_id


async def test_a_clients_traceparent_is_the_runs_parent_in_process() -> None:
    with sdk_tracing() as exporter, running_server() as srv:
        async with http(srv) as client:
            headers = srv.auth(USER)
            r = await client.post(
                "/v1/runs",
                json={"agent": "echo", "input": {"text": "x"}},
                headers={**headers, "traceparent": TRACEPARENT},
            )
            run_id = r.json()["run_id"]
            await wait_run(client, run_id, headers)
            untraced = await client.post(
                "/v1/runs", json={"agent": "echo", "input": {"text": "y"}}, headers=headers
            )
            await wait_run(client, untraced.json()["run_id"], headers)
            await client.get("/metrics")
            await client.get("/healthz")
        spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name == "invoke_agent echo"]
    traced = next(s for s in runs if s.attributes["agentengine.run_id"] == run_id)  # type: ignore[index]
    assert format(traced.context.trace_id, "032x") == CLIENT_TRACE
    ids = {s.context.span_id: s for s in spans}
    request_span = ids[parent_id(traced)]  # type: ignore[index]
    assert request_span.name.startswith("POST")
    assert format(parent_id(request_span) or 0, "016x") == CLIENT_SPAN
    # Without a traceparent the request starts a trace of its own.
    other = next(s for s in runs if s is not traced)
    assert format(other.context.trace_id, "032x") != CLIENT_TRACE
    # /metrics and /healthz make no spans.
    assert not [s for s in spans if "metrics" in s.name or "healthz" in s.name]
    for span in spans:
        assert USER not in json.dumps(dict(span.attributes or {}))
    assert by_name([traced])  # one span of that name among those of that run


async def test_websocket_streams_work_traced_with_one_span_per_connection() -> None:
    with sdk_tracing() as exporter, running_server() as srv:
        ws = await ws_connect(srv, USER)
        try:
            async with http(srv) as client:
                r = await client.post(
                    "/v1/runs",
                    json={"agent": "chatty", "input": {"count": 20}},
                    headers=srv.auth(USER),
                )
                run_id = r.json()["run_id"]
            frames = await recv_until(
                ws, lambda f: f.get("type") == "agent_completed" and f["run_id"] == run_id
            )
        finally:
            await ws.close()
        await wait_for_spans(exporter, lambda spans: any("/v1/ws" in s.name for s in spans))
        spans = exporter.get_finished_spans()
    assert (
        len([f for f in frames if f.get("run_id") == run_id]) == 22
    )  # started, 20 thinking, completed
    ws_spans = [s for s in spans if "/v1/ws" in s.name]
    assert len(ws_spans) == 1, [s.name for s in spans]  # no span per frame sent


async def wait_for_spans(exporter, predicate) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if predicate(exporter.get_finished_spans()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError([s.name for s in exporter.get_finished_spans()])
