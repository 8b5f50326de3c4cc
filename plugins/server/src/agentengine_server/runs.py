"""Runs started through the server: a thin layer on the core's ``factory.submit_run`` and
``factory.runs``.

Each run gets its own engine from the factory, cleaned up as soon as the run ends, so idle
users hold no engine at all. A user has at most ``[engine] max_concurrent_per_user`` runs in
flight (beyond it: 429). Runs are looked up by (user, run id): a run id of another user is
simply not found. The records, and their bounds, are the core's (``agentengine.RunRecord``,
``RunRegistry``); this module adds what only the server does: refusing runs while it shuts
down, and the JSON form of a record.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from agentengine import (
    ExecutionEngineFactory,
    RunRecord,
    RunRegistry,
    UnknownAgentError,
    UserExecutionContext,
)
from agentengine.ids import new_id

from agentengine_server.errors import ServerClosingError

__all__ = ["RUNNING", "RunManager", "RunRecord", "run_wire", "wire_status"]

#: ``status`` of a run that has not ended yet, as the API shows it (queued runs included).
RUNNING = "running"
_IN_FLIGHT = frozenset({"queued", "running"})


def wire_status(record: RunRecord) -> str:
    """The record's status as the API shows it: ``running`` until the run ended (the API has
    always shown a run waiting for its concurrency slot as running)."""
    return RUNNING if record.status in _IN_FLIGHT else record.status


def run_wire(record: RunRecord) -> dict[str, Any]:
    """The JSON form of a record (the body of ``GET /v1/runs/{run_id}``; the user id is left
    out: the caller is that user)."""
    return {
        "run_id": record.run_id,
        "agent": record.agent,
        "thread_id": record.thread_id,
        "status": wire_status(record),
        "output": record.output,
        "error": record.error,
        "error_type": record.error_type,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
    }


class RunManager:
    """Starts, finds and cancels runs for users through the factory's run API.

    The ``[server]`` keys ``finished_runs_kept``, ``max_finished_runs``,
    ``finished_runs_max_bytes`` and ``finished_runs_ttl`` are aliases of the ``[engine]``
    keys of the same names: those given (``overrides``) replace the engine's.
    """

    def __init__(self, factory: ExecutionEngineFactory, **overrides: Any) -> None:
        self.factory = factory
        self.registry: RunRegistry = factory.runs
        if overrides:
            self.registry.configure(**overrides)
        self.closing = False

    def validate(self, agent: str, run_input: Any) -> dict[str, Any]:
        """Check the agent exists and the input fits it, without starting anything.

        Raises ``UnknownAgentError`` or ``ToolArgumentError`` (a ValueError; also for an
        input that is not an object, ``Agent.validate_input``'s rule).
        """
        found = self.factory.agents.get(agent) if isinstance(agent, str) else None
        if found is None:
            raise UnknownAgentError(str(agent), self.factory.agents.names())
        return found.validate_input(run_input)

    async def start(
        self,
        user_id: str,
        agent: str,
        run_input: Mapping[str, Any] | None,
        *,
        thread_id: str | None = None,
    ) -> RunRecord:
        """Submit ``agent`` for ``user_id`` and return its record.

        Raises ``UnknownAgentError``, ``ToolArgumentError``, ``InvalidContextError`` (a bad
        thread id), ``EngineLimitError`` (too many runs in flight for the user) and
        ``ServerClosingError``/``EngineClosedError`` while shutting down.
        """
        if self.closing:
            raise ServerClosingError("the server is shutting down; retry on another instance")
        # The agent is checked before the thread id, as it always was.
        self.validate(agent, run_input)
        ctx_args: dict[str, Any] = {"user_id": user_id, "run_id": new_id("run")}
        if thread_id is not None:
            ctx_args["thread_id"] = thread_id
        ctx = UserExecutionContext(**ctx_args)
        handle = await self.factory.submit_run(ctx, agent, dict(run_input or {}))
        # get, not lookup: with runs queued for workers the record is not in this process.
        record = await self.registry.get(user_id, handle.run_id)
        assert record is not None  # submit_run recorded it
        return record

    async def get(self, user_id: str, run_id: str) -> RunRecord | None:
        """The user's run ``run_id``, or None (also for another user's run)."""
        return await self.registry.get(user_id, run_id)

    async def list(self, user_id: str) -> list[RunRecord]:
        """The user's known runs, oldest first."""
        return await self.registry.list(user_id)

    async def cancel(self, user_id: str, run_id: str) -> RunRecord | None:
        """Cancel the user's run and wait until it ended; None when it is not theirs."""
        return await self.registry.cancel(user_id, run_id)

    # -- what housekeeping, metrics and shutdown read -----------------------------------------

    def sweep(self) -> None:
        """Forget the users idle past the TTL (``RunRegistry.sweep``)."""
        self.registry.sweep()

    @property
    def sweep_interval(self) -> float:
        """How often an idle server should ``sweep``."""
        return self.registry.sweep_interval

    @property
    def finished_count(self) -> int:
        """Finished records held, over all users."""
        return self.registry.finished_count

    @property
    def finished_bytes(self) -> int:
        """Their counted size."""
        return self.registry.finished_bytes

    def user_ids(self) -> builtins.list[str]:
        """The users the run table holds, least recently active first."""
        return self.registry.user_ids()

    @property
    def active(self) -> int:
        """Runs in flight."""
        return self.registry.in_flight()

    async def wait_finished(self) -> None:
        """Wait until every run in flight ended and was recorded."""
        await self.registry.wait_finished()
