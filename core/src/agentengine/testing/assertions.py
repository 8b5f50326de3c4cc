"""The kit's assertions: event sequences, run invariants, isolation, plugin conformance."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from agentengine.events import BaseEvent
from agentengine.runtime.engine import RunResult
from agentengine.testing.conformance import check_plugin
from agentengine.testing.helpers import AgentRun, EventRecorder

__all__ = [
    "ANY_EVENTS",
    "assert_event_sequence",
    "assert_isolated",
    "assert_plugin_conforms",
    "assert_run_invariants",
    "sequence_matches",
]

#: In an expected sequence: any number of events (even none).
ANY_EVENTS = "..."


def _event_types(events: Any) -> list[str]:
    if isinstance(events, RunResult | AgentRun):
        events = events.events
    types = []
    for event in events:
        if isinstance(event, str):
            types.append(event)
        elif isinstance(event, Mapping):
            types.append(str(event.get("type")))
        else:
            types.append(str(getattr(event, "type", event)))
    return types


def sequence_matches(actual: Sequence[str], expected: Sequence[str]) -> bool:
    """Whether the event types ``actual`` match ``expected``, where ``"..."`` matches any run
    of events (even none)."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if j == len(expected):
            return i == len(actual)
        if expected[j] == ANY_EVENTS:
            return match(i, j + 1) or (i < len(actual) and match(i + 1, j))
        return i < len(actual) and actual[i] == expected[j] and match(i + 1, j + 1)

    return match(0, 0)


def _describe_event(event: Any) -> str:
    if isinstance(event, BaseEvent):
        data = event.to_wire()
        detail = {k: v for k, v in data.items() if k not in {"type", "ts", "thread_id", "agent"}}
        return f"{event.type} {detail}"
    return repr(event)


def assert_event_sequence(events: Any, expected: Sequence[str]) -> None:
    """Assert the event types of ``events`` (events, wire dicts, a ``RunResult`` or an
    ``AgentRun``) are ``expected``; ``"..."`` stands for any number of events. On mismatch
    the error shows a diff of the types and the events themselves."""
    actual = _event_types(events)
    if sequence_matches(actual, list(expected)):
        return
    diff = "\n".join(
        difflib.ndiff([str(t) for t in expected], actual)  # "- expected", "+ actual"
    )
    raw = events.events if isinstance(events, RunResult | AgentRun) else events
    shown = "\n".join(f"  {i}. {_describe_event(e)}" for i, e in enumerate(raw, 1))
    raise AssertionError(
        f"event sequence differs (expected {len(expected)} entries, got {len(actual)} events); "
        f"'-' expected, '+' actual:\n{diff}\nactual events:\n{shown}"
    )


def _run_problems(run_id: str, events: Sequence[BaseEvent]) -> list[str]:
    problems = []
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(events) + 1)):
        problems.append(f"run {run_id}: seq is {seqs}, expected 1..{len(events)} with no gap")
    types = [e.type for e in events]
    if not types or types[0] != "agent_started" or types.count("agent_started") != 1:
        problems.append(f"run {run_id}: agent_started must come first, exactly once: {types}")
    if not types or types[-1] != "agent_completed" or types.count("agent_completed") != 1:
        problems.append(f"run {run_id}: agent_completed must come last, exactly once: {types}")
    if "agent_error" in types and (
        types.count("agent_error") != 1 or types.index("agent_error") != len(types) - 2
    ):
        problems.append(
            f"run {run_id}: agent_error may appear once, just before agent_completed: {types}"
        )
    executing: dict[str, int] = {}
    completed: dict[str, int] = {}
    for event in events:
        call_id = str(getattr(event, "tool_call_id", ""))
        if event.type == "tool_executing":
            executing[call_id] = executing.get(call_id, 0) + 1
        elif event.type == "tool_completed":
            if call_id not in executing:
                problems.append(f"run {run_id}: tool_completed {call_id} before its tool_executing")
            completed[call_id] = completed.get(call_id, 0) + 1
    problems.extend(
        f"run {run_id}: tool call {call_id} has {executing.get(call_id, 0)} "
        f"tool_executing and {completed.get(call_id, 0)} tool_completed (expected 1 each)"
        for call_id in sorted(set(executing) | set(completed))
        if executing.get(call_id) != 1 or completed.get(call_id) != 1
    )
    return problems


def assert_run_invariants(events: Sequence[BaseEvent]) -> None:
    """Assert the protocol guarantees of each run in ``events``: seq 1, 2, 3 ... without gap,
    one ``agent_started`` first, one ``agent_completed`` last, at most one ``agent_error``
    just before it, each ``tool_executing`` with exactly one later ``tool_completed`` of the
    same ``tool_call_id``."""
    runs: dict[str, list[BaseEvent]] = {}
    for event in events:
        runs.setdefault(event.run_id, []).append(event)
    problems = [p for run_id, run in runs.items() for p in _run_problems(run_id, run)]
    if problems:
        raise AssertionError("run invariants violated:\n  " + "\n  ".join(problems))


def assert_isolated(events_by_user: Mapping[str, Sequence[BaseEvent]] | EventRecorder) -> None:
    """Assert that each user's events are that user's only (``user_id`` matches, no run
    appears under two users) and that every run is whole (``assert_run_invariants``).

    ``events_by_user`` maps a user id to the events that user *received* (from a subscription,
    a recorder, results), or is an ``EventRecorder``."""
    if isinstance(events_by_user, EventRecorder):
        events_by_user = events_by_user.by_user
    problems = []
    owner: dict[str, str] = {}
    for user_id, events in events_by_user.items():
        foreign = [e for e in events if e.user_id != user_id]
        if foreign:
            others = sorted({e.user_id for e in foreign})
            problems.append(
                f"user {user_id!r} received {len(foreign)} event(s) of other user(s) {others}: "
                + "; ".join(_describe_event(e) for e in foreign[:3])
            )
        for event in events:
            seen = owner.setdefault(event.run_id, user_id)
            if seen != user_id:
                problems.append(f"run {event.run_id} appears under users {seen!r} and {user_id!r}")
                break
        runs: dict[str, list[BaseEvent]] = {}
        for event in events:
            runs.setdefault(event.run_id, []).append(event)
        for run_id, run in runs.items():
            problems.extend(f"user {user_id!r}: {p}" for p in _run_problems(run_id, run))
    if problems:
        raise AssertionError("isolation violated:\n  " + "\n  ".join(problems))


# -- conformance -------------------------------------------------------------------------------


def assert_plugin_conforms(plugin: Any) -> None:
    """``check_plugin`` as an assertion: fails listing every problem."""
    problems = check_plugin(plugin)
    if problems:
        listed = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
        raise AssertionError(f"plugin {plugin!r} does not conform:\n{listed}")
