"""The old ``websocket_bridge``: an object with ``notify_*`` coroutine methods (or a callable
taking each event's wire dict) that receives every event of an engine, in order."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

import structlog

from agentengine.events import BaseEvent
from agentengine.plugins.hooks import hookimpl

__all__ = ["BridgeForwarder", "LegacyBridgePlugin", "check_bridge"]

_log = structlog.get_logger("agentengine.legacy")


_NOTIFY = (
    "notify_agent_started",
    "notify_agent_thinking",
    "notify_tool_executing",
    "notify_tool_completed",
    "notify_agent_completed",
)


def check_bridge(bridge: Any) -> None:
    """Refuse a bridge that has neither the ``notify_*`` methods nor is callable."""
    if all(callable(getattr(bridge, name, None)) for name in _NOTIFY) or callable(bridge):
        return
    missing = [name for name in _NOTIFY if not callable(getattr(bridge, name, None))]
    raise TypeError(
        f"websocket_bridge {type(bridge).__name__} is not usable: it needs the methods "
        f"{', '.join(_NOTIFY)} (missing: {', '.join(missing)}), or must be a callable receiving "
        "each event's wire dict; pass None to use the factory's event sink"
    )


def bridge_call(bridge: Any, event: BaseEvent) -> Any:
    """Call the old bridge method for ``event`` (or the callable with its wire dict)."""
    data = event.to_wire()
    kind = data["type"]
    if not callable(getattr(bridge, "notify_agent_started", None)):
        return bridge(data)
    run_id, agent_name = data["run_id"], data["agent"]
    if kind == "agent_started":
        context = {"user_id": data["user_id"], "thread_id": data["thread_id"]}
        return bridge.notify_agent_started(run_id, agent_name, {**context, "input": data["input"]})
    if kind == "agent_thinking":
        return bridge.notify_agent_thinking(run_id, agent_name, data["text"], data["step"])
    if kind == "tool_executing":
        return bridge.notify_tool_executing(run_id, agent_name, data["tool"], data["args"])
    if kind == "tool_completed":
        outcome = {k: data[k] for k in ("tool_call_id", "status", "result", "error")}
        return bridge.notify_tool_completed(
            run_id, agent_name, data["tool"], outcome, data["duration_ms"]
        )
    if kind == "agent_error":
        notify_error = getattr(bridge, "notify_agent_error", None)
        if notify_error is None:
            return None
        return notify_error(run_id, agent_name, data["error"], {"error_type": data["error_type"]})
    outcome = {k: data[k] for k in ("status", "output", "error")}
    return bridge.notify_agent_completed(run_id, agent_name, outcome, data["duration_ms"])


class BridgeForwarder:
    """Extension forwarding every event of one engine to an old-style bridge, in order.

    ``on_event`` must not block, so events are queued and one task per engine awaits the
    bridge's coroutines in order. A bridge that raises is logged; the run is not affected.
    """

    plugin_name: str | None = "legacy_bridge"

    def __init__(self, bridge: Any, drain_timeout: float = 5.0) -> None:
        self._bridge = bridge
        self._drain_timeout = drain_timeout
        self._queue: asyncio.Queue[BaseEvent] | None = None
        self._worker: asyncio.Task[None] | None = None

    def on_event(self, event: BaseEvent) -> None:
        """Queue the event for the bridge."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(
                self._forward(self._queue), name="agentengine-legacy-bridge"
            )
        self._queue.put_nowait(event)

    async def _forward(self, queue: asyncio.Queue[BaseEvent]) -> None:
        while True:
            event = await queue.get()
            try:
                outcome = bridge_call(self._bridge, event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                _log.error(
                    "websocket bridge failed to take an event; skipped",
                    event_type=event.type,
                    run_id=event.run_id,
                    error=f"{type(exc).__name__}: {exc}",
                )
            finally:
                queue.task_done()

    async def close(self) -> None:
        """Deliver what is queued (for up to ``drain_timeout`` seconds), then stop."""
        if self._queue is None or self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._drain_timeout):
                await self._queue.join()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker


class LegacyBridgePlugin:
    """A plugin forwarding the events of every engine of a factory to an old-style bridge
    (what the legacy factory names do with their ``websocket_bridge`` argument)."""

    name = "legacy_bridge"

    def __init__(self, bridge: Any) -> None:
        check_bridge(bridge)
        self.bridge = bridge

    @hookimpl
    def agentengine_engine_extensions(self) -> BridgeForwarder:
        """One forwarder per engine."""
        return BridgeForwarder(self.bridge)
