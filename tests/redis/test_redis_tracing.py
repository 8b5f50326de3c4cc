"""One trace across processes: a run accepted by ``agentengine serve`` and executed by an
``agentengine worker`` (the Redis queue) is one trace, read back from a real OTLP/HTTP
receiver both processes export to; the worker's own ``/metrics`` times the queue."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest
from otlp_receiver import ReceivedSpan, otel_env, otlp_receiver
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisProcess, unique_prefix, worker_process
from server_helpers import (
    CHATTER,
    SECRET,
    free_port,
    make_token,
    serve_process,
)

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
USER = "user-zq61-queued"


@pytest.mark.slow
def test_a_queued_run_is_one_trace_from_the_api_to_the_worker(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    base = {
        "AGENTENGINE_REDIS__URL": redis_process.url,
        "AGENTENGINE_REDIS__KEY_PREFIX": unique_prefix(),
        "AGENTENGINE_REDIS__QUEUE": "true",
        "AGENTENGINE_JWT_SECRET": SECRET,
    }
    (tmp_path / "api").mkdir()
    (tmp_path / "w").mkdir()
    metrics_port = free_port()
    headers = {"Authorization": f"Bearer {make_token(USER)}"}
    with otlp_receiver() as receiver:
        with (
            serve_process(
                tmp_path / "api",
                "--otel",
                plugins={"chatplug": CHATTER},
                env={**base, **otel_env(receiver, "api-under-test")},
            ) as (_, port),
            worker_process(
                tmp_path / "w",
                {**base, "AGENTENGINE_OTEL__ENABLED": "true", **otel_env(receiver, "worker-x")},
                "--metrics-port",
                str(metrics_port),
            ) as proc,
        ):
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/runs",
                json={"agent": "chatter", "input": {"count": 2}},
                headers={**headers, "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
            )
            assert r.status_code == 202, r.text
            run_id = r.json()["run_id"]
            deadline = time.monotonic() + 30
            while True:
                body = httpx.get(f"http://127.0.0.1:{port}/v1/runs/{run_id}", headers=headers)
                if body.json()["status"] != "running":
                    break
                assert time.monotonic() < deadline, body.text
                time.sleep(0.05)
            assert body.json()["status"] == "succeeded", body.text
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text

            def arrived(spans: list[ReceivedSpan]) -> bool:
                names = {(s.service, s.name) for s in spans}
                return ("worker-x", "invoke_agent chatter") in names and any(
                    s.service == "api-under-test" and s.name.startswith("POST") for s in spans
                )

            spans = receiver.wait_for(arrived)
            proc.send_signal(signal.SIGTERM)
            log = proc.communicate(timeout=30)[0]
            assert proc.returncode == 0, log

    run_span = next(s for s in spans if s.name == "invoke_agent chatter")
    # The API's server span of the request: the ASGI instrumentation's, under the client's.
    (request_span,) = [
        s for s in spans if s.service == "api-under-test" and s.parent_span_id == CLIENT_SPAN
    ]
    assert request_span.name == "POST /v1/runs"
    # One trace: the client's; the worker's run span is a child of the API's request span.
    assert run_span.service == "worker-x"
    assert run_span.trace_id == request_span.trace_id == CLIENT_TRACE
    assert run_span.parent_span_id == request_span.span_id
    assert run_span.attributes["agentengine.run_id"] == run_id
    assert run_span.attributes["agentengine.event_count"] == 4  # started, 2 thinking, completed

    found = {f.name: f for f in text_string_to_metric_families(metrics)}
    for name in (
        "agentengine_queue_wait_seconds",
        "agentengine_run_first_event_seconds",
        "agentengine_run_duration_seconds",
    ):
        counts = [s for s in found[name].samples if s.name.endswith("_count")]
        assert [(s.labels["agent"], s.value) for s in counts] == [("chatter", 1.0)], name
    # The queue's figures, on the worker's own /metrics too, with their documented types.
    assert found["agentengine_queue_workers_alive"].type == "gauge"
    assert found["agentengine_queue_workers_alive"].samples[0].value == 1  # this worker
    assert found["agentengine_queue_runs_lost"].type == "counter"
    assert {s.labels["state"] for s in found["agentengine_queue_runs"].samples} == {
        "queued",
        "running",
    }
    # No user id anywhere: the worker's /metrics, nor any span's attributes of either process
    # (user ids on spans are opt-in, [engine] trace_user_ids).
    assert USER not in metrics
    assert "zq61" not in metrics
    for span in spans:
        assert "zq61" not in json.dumps(span.attributes), (span.service, span.name)
        assert "enduser.id" not in span.attributes, (span.service, span.name)
