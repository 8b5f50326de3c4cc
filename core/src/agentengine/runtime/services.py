"""``EngineServices``: the one interface between the factory and the engines it makes.

The factory builds one ``EngineServices`` when it starts and hands it to every engine it
creates; an engine reaches the factory through it and nothing else (the registries, the
deadline scheduler, the concurrency limiter, the event sink's ``publish``, and the accounting
callbacks). The factory, in turn, uses only the engine's public methods. An engine binds what
its run path needs from here once, when it is made, so the interface costs a run nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentengine.config import EngineSettings
    from agentengine.definitions.agents import AgentRegistry
    from agentengine.definitions.resources import ResourceRegistry
    from agentengine.definitions.tools import ToolRegistry
    from agentengine.events import BaseEvent, RunStatus
    from agentengine.runtime.deadlines import DeadlineScheduler
    from agentengine.runtime.limits import ConcurrencyLimiter
    from agentengine.telemetry import RunTimings

__all__ = ["EngineServices"]


@dataclass(frozen=True, slots=True)
class EngineServices:
    """What every engine of one factory shares with it."""

    #: The ``[engine]`` settings.
    settings: EngineSettings
    agents: AgentRegistry
    tools: ToolRegistry
    resources: ResourceRegistry
    deadlines: DeadlineScheduler
    limiter: ConcurrencyLimiter
    #: The event sink's ``publish``: every event of every run goes through it.
    publish: Callable[[BaseEvent], None]
    #: Count one error of a plugin (by name) or of the sink (``"sink"``).
    count_error: Callable[[str], None]
    #: ``claim_run_id(user_id, run_id)``: True the first time a context's run id is used.
    claim_run_id: Callable[[str, str], bool]
    #: ``record_run(status, duration_ms)``: one finished run, for the factory's metrics.
    record_run: Callable[[RunStatus, float], None]
    #: ``release(engine)``: the engine was cleaned up; the factory forgets it.
    release: Callable[[Any], None]
    #: ``factory.timings``: the listeners of run and tool timings (metrics).
    timings: RunTimings
