"""``GET /metrics`` through prometheus-client: read back with the client library's own parser,
histograms with their documented labels, figures folded in, and never a user id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from agentengine import RunContext, ToolError, agent, hookimpl, tool
from agentengine_server.metrics import MAX_TOOL_LABELS, FiguresCollector, RunMetrics, exposition
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import (
    RunningServer,
    eventually,
    http,
    recv_until,
    running_server,
    sse_items,
    wait_run,
    ws_connect,
)

#: User ids distinctive enough that finding them anywhere in /metrics means they leaked.
USERS = ("user-zq81-metrics-alice", "user-zq82-metrics-bob")


@tool
async def add(a: int, b: int) -> int:
    """Add."""
    return a + b


@tool
async def explode() -> int:
    """Always fails."""
    raise ValueError("boom")


@agent(name="measured")
async def measured(run: RunContext, n: int) -> int:
    total = await run.call_tool("add", {"a": n, "b": 1})
    total = await run.call_tool("add", {"a": total, "b": 1})
    for name in ("explode", "no-such-tool-zq81"):
        with contextlib.suppress(ToolError):
            await run.call_tool(name, {})
    return int(total)


@agent(name="broken")
async def broken(run: RunContext) -> None:
    raise RuntimeError("agent bug")


class MeasuredPlugin:
    name = "measured"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(measured)
        registry.add(broken)

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        registry.add(add)
        registry.add(explode)


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def label_sets(family: Any, suffix: str = "_count") -> set[tuple[tuple[str, str], ...]]:
    return {tuple(sorted(s.labels.items())) for s in family.samples if s.name.endswith(suffix)}


def count_of(family: Any, **labels: str) -> float:
    for s in family.samples:
        if s.name.endswith("_count") and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {labels} in {family.name}")


async def _exercise(srv: RunningServer) -> str:
    async with http(srv) as client:
        ws = await ws_connect(srv, USERS[0])
        try:
            ids = []
            for user in USERS:
                headers = srv.auth(user)
                r = await client.post(
                    "/v1/runs", json={"agent": "measured", "input": {"n": 1}}, headers=headers
                )
                ids.append((r.json()["run_id"], headers))
            r = await client.post("/v1/runs", json={"agent": "broken"}, headers=srv.auth(USERS[1]))
            ids.append((r.json()["run_id"], srv.auth(USERS[1])))
            for run_id, headers in ids:
                await wait_run(client, run_id, headers)
            # alice's socket gets her run's events: the delivery lag is measured.
            await recv_until(ws, lambda f: f.get("type") == "agent_completed")
        finally:
            await ws.close()
        return (await client.get("/metrics")).text


async def test_metrics_parse_with_histograms_and_no_user_id() -> None:
    with running_server(plugins=[MeasuredPlugin()]) as srv:
        text = await _exercise(srv)
    found = families(text)  # the client library's parser reads all of it

    runs = found["agentengine_run_duration_seconds"]
    assert runs.type == "histogram"
    assert label_sets(runs) == {
        (("agent", "measured"), ("status", "succeeded")),
        (("agent", "broken"), ("status", "failed")),
    }
    assert count_of(runs, agent="measured", status="succeeded") == 2

    tools = found["agentengine_tool_duration_seconds"]
    assert tools.type == "histogram"
    assert label_sets(tools) == {
        (("status", "ok"), ("tool", "add")),
        (("status", "error"), ("tool", "explode")),
        # An unregistered name an agent asked for is not a label of its own.
        (("status", "error"), ("tool", "other")),
    }
    assert count_of(tools, tool="add", status="ok") == 4

    first = found["agentengine_run_first_event_seconds"]
    assert label_sets(first) == {(("agent", "measured"),), (("agent", "broken"),)}
    assert count_of(first, agent="measured") == 2
    lag = found["agentengine_event_delivery_lag_seconds"]
    assert count_of(lag, transport="ws") >= 1
    assert "agentengine_queue_wait_seconds" in found  # declared; no run was queued here

    # Today's names, as counters and gauges.
    runs_total = {s.labels["status"]: s.value for s in found["agentengine_runs"].samples}
    assert runs_total["succeeded"] == 2
    assert runs_total["failed"] == 1
    assert found["agentengine_server_runs_started"].samples[0].value == 3
    assert found["agentengine_engines_active"].type == "gauge"
    assert found["agentengine_events_lost"].type == "counter"
    assert found["agentengine_plugin_errors"].type == "counter"

    for user in USERS:
        assert user not in text
    assert "zq8" not in text  # nor any part of them, nor the unknown tool's name


def sample(found: dict[str, Any], family: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` of ``family`` with ``labels`` (0 when absent)."""
    for s in found[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


async def _read_run(srv: RunningServer, transport: str, user: str, after: str) -> list[Any]:
    """The events after ``after`` of ``user``, read over ``transport`` until a run ended."""
    if transport == "ws":
        ws = await ws_connect(srv, user, after=after)
        try:
            return await recv_until(ws, lambda f: f.get("type") == "agent_completed")
        finally:
            await ws.close()
    got: list[Any] = []
    headers = {**srv.auth(user), "Last-Event-ID": after}
    async with http(srv) as client, client.stream("GET", "/v1/events", headers=headers) as r:
        async with asyncio.timeout(20):
            async for item in sse_items(r):
                got.append(item["data"])
                if item["data"]["type"] == "agent_completed":
                    break
    return got


@pytest.mark.parametrize(("transport", "other"), [("ws", "sse"), ("sse", "ws")])
async def test_delivery_lag_is_observed_for_every_event_sent_over_each_transport(
    transport: str, other: str
) -> None:
    with running_server() as srv:
        user = "user-zq83-lag"
        async with http(srv) as client:
            headers = srv.auth(user)
            r = await client.post(
                "/v1/runs", json={"agent": "chatty", "input": {"count": 3}}, headers=headers
            )
            await wait_run(client, r.json()["run_id"], headers)
            epoch = srv.state.factory.events.epoch
            frames = await _read_run(srv, transport, user, f"{epoch}-0")
            assert [f["type"] for f in frames].count("agent_thinking") == 3

            async def scraped() -> dict[str, Any]:
                return families((await client.get("/metrics")).text)

            # A frame is counted once handed to the connection, right after the send.
            await eventually(lambda: srv.state.metrics.events_delivered[transport] == 5)
            found = await scraped()
    lag = "agentengine_event_delivery_lag_seconds"
    assert sample(found, lag, f"{lag}_count", transport=transport) == 5
    assert sample(found, lag, f"{lag}_count", transport=other) == 0
    assert sample(found, lag, f"{lag}_bucket", transport=transport, le="+Inf") == 5
    assert sample(found, lag, f"{lag}_sum", transport=transport) >= 0
    delivered = "agentengine_server_events_delivered"
    assert sample(found, delivered, f"{delivered}_total", transport=transport) == 5
    assert user not in str(found)


async def test_first_event_is_timed_for_a_run_sent_as_a_websocket_frame() -> None:
    with running_server() as srv:
        ws = await ws_connect(srv, "alice")
        try:
            await ws.send(json.dumps({"type": "run", "agent": "chatty", "input": {"count": 1}}))
            await recv_until(ws, lambda f: f.get("type") == "agent_completed")
        finally:
            await ws.close()
        async with http(srv) as client:
            found = families((await client.get("/metrics")).text)
    first = found["agentengine_run_first_event_seconds"]
    assert label_sets(first) == {(("agent", "chatty"),)}
    assert count_of(first, agent="chatty") == 1


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_events_lost_counts_the_events_a_resuming_client_missed(transport: str) -> None:
    with running_server(event_retention=5) as srv:
        async with http(srv) as client:
            headers = srv.auth("alice")
            r = await client.post(
                "/v1/runs", json={"agent": "chatty", "input": {"count": 18}}, headers=headers
            )
            await wait_run(client, r.json()["run_id"], headers)
            epoch = srv.state.factory.events.epoch
            frames = await _read_run(srv, transport, "alice", f"{epoch}-2")
            assert frames[0]["type"] == "events_lost" and frames[0]["missed"] == 13, frames[0]
            await eventually(lambda: srv.state.metrics.gaps_delivered == 1)
            found = families((await client.get("/metrics")).text)
    assert sample(found, "agentengine_events_lost", "agentengine_events_lost_total") == 13
    frames_name = "agentengine_server_events_lost_frames"
    assert sample(found, frames_name, f"{frames_name}_total") == 1


async def test_figures_of_the_run_registry_are_folded_in() -> None:
    with running_server() as srv:

        async def figures() -> dict[str, Any]:
            return {
                "queue_depth": 7,
                "runs_lost_total": 2,
                "runs_waiting": {"queued": 3, "running": 1},
            }

        srv.state.factory.runs.figures = figures
        async with http(srv) as client:
            text = (await client.get("/metrics")).text
    found = families(text)
    assert found["agentengine_queue_depth"].type == "gauge"
    assert found["agentengine_queue_depth"].samples[0].value == 7
    # The queue's figures have their documented names (QUEUE_FIGURES).
    assert found["agentengine_queue_runs_lost"].type == "counter"
    assert found["agentengine_queue_runs_lost"].samples[0].value == 2
    waiting = {s.labels["state"]: s.value for s in found["agentengine_runs_waiting"].samples}
    assert waiting == {"queued": 3, "running": 1}


#: Metric names in docs/observability.md (its tables and example queries); not the module
#: ``agentengine_server.metrics`` nor the pattern ``agentengine_<name>``.
_DOC_NAME = re.compile(r"\bagentengine_[a-z_]*[a-z]\b(?![.<])")


async def test_every_metric_the_docs_name_is_exposed() -> None:
    docs = Path(__file__).parents[2] / "docs" / "observability.md"
    named = set(_DOC_NAME.findall(docs.read_text(encoding="utf-8")))
    assert "agentengine_run_duration_seconds_bucket" in named  # the queries are read too
    with running_server(plugins=[MeasuredPlugin()]) as srv:

        async def figures() -> dict[str, Any]:
            names = ("queue_depth", "runs_queued", "runs_running", "workers_alive")
            return {**dict.fromkeys(names, 1), "runs_lost_total": 0}

        srv.state.factory.runs.figures = figures
        text = await _exercise(srv)
    # A family with no sample yet (no plugin error, no queued run) is still declared, with
    # its type: a counter's samples are <name>_total, a histogram's <name>_bucket ...
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    exposed: set[str] = set()
    for family in families(text).values():
        exposed.add(family.name)
        exposed.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        exposed.update(s.name for s in family.samples)
    assert sorted(named - exposed) == []


async def test_failing_figures_leave_the_other_metrics() -> None:
    with running_server() as srv:

        async def figures() -> dict[str, Any]:
            raise ConnectionError("redis is down")

        srv.state.factory.runs.figures = figures
        async with http(srv) as client:
            r = await client.get("/metrics")
    assert r.status_code == 200
    assert "agentengine_runs_total" in r.text


def test_apps_in_one_process_have_registries_of_their_own() -> None:
    # The global registry would refuse the second app's histogram names.
    with running_server() as one, running_server() as two:
        assert one.state.registry is not two.state.registry
        texts = [exposition(srv.state.registry).decode() for srv in (one, two)]
    for text in texts:
        assert "agentengine_run_duration_seconds" in text


def test_figures_collector_skips_what_is_not_a_number() -> None:
    registry = CollectorRegistry(auto_describe=False)
    figures = FiguresCollector()
    registry.register(figures)
    figures.update({"workers_alive": 2, "other": 1, "note": "text", "flag": True})
    found = families(exposition(registry).decode())
    assert set(found) == {"agentengine_queue_workers_alive", "agentengine_other"}


def test_tool_labels_are_bounded() -> None:
    """Registered tools and plugins' dotted names get labels of their own up to
    ``MAX_TOOL_LABELS``; names no registry knows, and any past the bound, count as other."""
    registry = CollectorRegistry(auto_describe=False)
    metrics = RunMetrics(registry, known_tools=lambda name: name == "add")
    metrics.tool_finished("add", "ok", 0.01)
    metrics.tool_finished("made-up", "error", 0.01)
    for i in range(MAX_TOOL_LABELS + 20):
        metrics.tool_finished(f"srv.tool{i}", "ok", 0.01)
    metrics.tool_finished("add", "ok", 0.01)  # already labelled: still its own
    tools = families(exposition(registry).decode())["agentengine_tool_duration_seconds"]
    labelled = {dict(labels)["tool"] for labels in label_sets(tools)}
    assert len(labelled) == MAX_TOOL_LABELS + 1  # the bound, and other
    assert {"add", "other", "srv.tool0"} <= labelled
    assert "made-up" not in labelled and f"srv.tool{MAX_TOOL_LABELS}" not in labelled
    assert count_of(tools, tool="add", status="ok") == 2
    assert count_of(tools, tool="other", status="ok") == 21
