"""The kit's fixtures and helpers, used directly (this suite runs with the kit loaded)."""

from __future__ import annotations

import asyncio
import keyword
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from agentengine import (
    AgentCompletedEvent,
    AgentStartedEvent,
    ExecutionEngineFactory,
    RunContext,
    RunStatus,
    ToolCompletedEvent,
    ToolExecutingEvent,
    ToolStatus,
    UserExecutionContext,
    agent,
    hookimpl,
    tool,
)
from agentengine.cli.scaffold import plugin_names
from agentengine.errors import AgentEngineError
from agentengine.testing import (
    AgentRun,
    ContextBuilder,
    EventRecorder,
    assert_event_sequence,
    assert_isolated,
    assert_run_invariants,
    capture_logs,
    run_agent,
)
from agentengine.testing.assertions import sequence_matches
from hypothesis import given, strategies as st


@tool
async def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@agent(name="shouter")
async def shouter(run: RunContext, text: str) -> str:
    """Shout the text."""
    await run.think("shouting")
    structlog.get_logger("shouter").info("about to shout", length=len(text))
    return str(await run.call_tool("shout", {"text": text}))


class ShoutPlugin:
    name = "shout"

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        registry.add(shout)

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(shouter)


FULL = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


@pytest.mark.agentengine(plugins=[ShoutPlugin()])
async def test_engine_factory_has_exactly_the_named_plugins_and_the_builtins(
    engine_factory: ExecutionEngineFactory,
) -> None:
    assert [(i.name, i.source) for i in engine_factory.plugin_infos] == [
        ("request_scope", "builtin"),
        ("shout", "explicit"),
    ]
    # The workspace has an entry-point plugin installed (testplugin): not loaded here.
    assert "reverser" not in engine_factory.agents


@pytest.mark.agentengine(plugins=[ShoutPlugin()], load_entrypoints=True)
async def test_the_marker_can_ask_for_entry_points(engine_factory) -> None:
    assert "reverser" in engine_factory.agents


@pytest.mark.agentengine(plugins=[ShoutPlugin()], run_timeout=3.5)
async def test_engine_factory_ignores_the_environment_and_config_files(
    engine_factory, monkeypatch, tmp_path
) -> None:
    assert engine_factory.engine_settings.run_timeout == 3.5
    assert engine_factory.settings.source == "<defaults>"


async def test_make_engine_factory_reads_no_environment(make_engine_factory, monkeypatch) -> None:
    monkeypatch.setenv("AGENTENGINE_ENGINE__RUN_TIMEOUT", "1.25")
    monkeypatch.setenv("AGENTENGINE_DISABLE_PLUGINS", "request_scope")
    factory = make_engine_factory(plugins=[ShoutPlugin()])
    assert factory.engine_settings.run_timeout == 300.0
    assert [i.name for i in factory.plugin_infos] == ["request_scope", "shout"]


@pytest.mark.agentengine(plugins=[ShoutPlugin()])
async def test_run_agent_returns_result_and_events(engine_factory) -> None:
    run = await run_agent(engine_factory, "shouter", {"text": "hey"}, user="alice")
    result, events = run
    assert isinstance(run, AgentRun)
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "HEY"
    assert run.types == FULL
    assert {e.user_id for e in events} == {"alice"}
    assert engine_factory.engines_for("alice") == []  # cleaned up


@pytest.mark.agentengine(plugins=[ShoutPlugin()])
async def test_event_recorder_collects_per_user_under_concurrency(
    engine_factory, event_recorder: EventRecorder, user_context: ContextBuilder
) -> None:
    users = user_context.many(5)
    await asyncio.gather(
        *(
            run_agent(engine_factory, "shouter", {"text": ctx.user_id}, user=ctx.user_id)
            for ctx in users
            for _ in range(3)
        )
    )
    assert sorted(event_recorder.by_user) == sorted(u.user_id for u in users)
    for ctx in users:
        assert len(event_recorder.for_user(ctx.user_id)) == 3 * len(FULL)
    assert len(event_recorder.by_run) == 15
    assert_isolated(event_recorder)
    assert len(event_recorder) == 75
    event_recorder.clear()
    assert event_recorder.types() == []


def test_user_context_builds_distinct_valid_contexts(user_context) -> None:
    first, second = user_context(), user_context()
    assert first.user_id != second.user_id
    named = user_context("alice", metadata={"plan": "pro"})
    assert named.user_id == "alice"
    assert named.metadata["plan"] == "pro"
    assert len({c.user_id for c in user_context.many(4)}) == 4


@pytest.mark.agentengine(plugins=[ShoutPlugin()])
async def test_captured_logs_include_the_run_context(engine_factory, captured_logs) -> None:
    result, _ = await run_agent(engine_factory, "shouter", {"text": "hey"}, user="alice")
    entry = next(e for e in captured_logs if e["event"] == "about to shout")
    assert entry["user_id"] == "alice"
    assert entry["run_id"] == result.run_id
    assert entry["log_level"] == "info"
    assert entry["length"] == 3


def test_capture_logs_restores_the_configuration() -> None:
    before = structlog.get_config()["processors"]
    with capture_logs() as logs:
        structlog.get_logger().warning("inside", token="x")
    assert logs == [{"event": "inside", "token": "x", "log_level": "warning"}]
    assert structlog.get_config()["processors"] == before


@pytest.mark.parametrize("text", ["a", "bc"])
@pytest.mark.agentengine(plugins=[ShoutPlugin()])
async def test_parametrized_async_tests_keep_their_parameters(engine_factory, text) -> None:
    result, _ = await run_agent(engine_factory, "shouter", {"text": text})
    assert result.output == text.upper()


# -- assertion helpers --------------------------------------------------------------------


def ev(cls: Any, seq: int, user: str = "alice", run: str = "r1", **data: Any) -> Any:
    return cls.model_construct(
        run_id=run,
        user_id=user,
        thread_id="t",
        agent="a",
        seq=seq,
        ts=datetime.now(UTC),
        **data,
    )


def whole_run(user: str = "alice", run: str = "r1") -> list[Any]:
    return [
        ev(AgentStartedEvent, 1, user, run, input={}),
        ev(ToolExecutingEvent, 2, user, run, tool="t", tool_call_id="c1", args={}),
        ev(
            ToolCompletedEvent,
            3,
            user,
            run,
            tool="t",
            tool_call_id="c1",
            status=ToolStatus.OK,
            result=1,
            error=None,
            duration_ms=1.0,
        ),
        ev(
            AgentCompletedEvent,
            4,
            user,
            run,
            status=RunStatus.SUCCEEDED,
            output=1,
            error=None,
            duration_ms=2.0,
        ),
    ]


def test_assert_event_sequence_shows_a_readable_diff() -> None:
    events = whole_run()
    assert_event_sequence(events, ["agent_started", "...", "agent_completed"])
    assert_event_sequence([e.to_wire() for e in events], ["agent_started", "..."])
    with pytest.raises(AssertionError) as caught:
        assert_event_sequence(events, ["agent_started", "agent_thinking", "agent_completed"])
    text = str(caught.value)
    assert "expected 3 entries, got 4 events" in text
    assert "- agent_thinking" in text
    assert "+ tool_executing" in text
    assert "+ tool_completed" in text
    assert "4. agent_completed" in text  # the events themselves are listed


def test_assert_event_sequence_wildcards() -> None:
    events = whole_run()
    assert_event_sequence(events, ["...", "tool_completed", "..."])
    assert_event_sequence(events, ["...", "agent_started", "...", "agent_completed", "..."])
    with pytest.raises(AssertionError):
        assert_event_sequence(events, ["...", "agent_error", "..."])
    with pytest.raises(AssertionError):
        assert_event_sequence([], ["agent_started", "..."])
    assert_event_sequence([], ["..."])


def test_assert_run_invariants_finds_gaps_and_unpaired_tools() -> None:
    assert_run_invariants(whole_run())
    gap = whole_run()
    del gap[1]
    with pytest.raises(AssertionError) as caught:
        assert_run_invariants(gap)
    assert "seq is [1, 3, 4]" in str(caught.value)
    assert "tool_completed c1 before its tool_executing" in str(caught.value)
    no_end = whole_run()[:-1]
    with pytest.raises(AssertionError, match="agent_completed must come last"):
        assert_run_invariants(no_end)


def test_assert_isolated_names_the_leak() -> None:
    assert_isolated({"alice": whole_run("alice", "r1"), "bob": whole_run("bob", "r2")})
    with pytest.raises(AssertionError) as caught:
        assert_isolated({"alice": whole_run("alice", "r1"), "bob": whole_run("alice", "r1")})
    text = str(caught.value)
    assert "user 'bob' received 4 event(s) of other user(s) ['alice']" in text
    assert "run r1 appears under users 'alice' and 'bob'" in text


def test_assert_isolated_checks_each_run_is_whole() -> None:
    with pytest.raises(AssertionError, match="user 'alice': run r1: agent_completed"):
        assert_isolated({"alice": whole_run()[:-1]})


async def test_kit_fixtures_work_with_a_factory_made_by_hand(event_recorder) -> None:
    async with ExecutionEngineFactory(
        plugins=[ShoutPlugin(), event_recorder], load_entrypoints=False
    ) as factory:
        ctx = UserExecutionContext.for_user("carol")
        result, _ = await run_agent(factory, "shouter", {"text": "x"}, user=ctx)
    assert result.succeeded
    assert event_recorder.types("carol") == FULL


def test_the_wildcard_matcher_agrees_with_a_regular_expression() -> None:
    kinds = st.sampled_from(["agent_started", "tool_executing", "agent_completed"])

    @given(st.lists(kinds, max_size=6), st.lists(st.one_of(kinds, st.just("...")), max_size=6))
    def agree(actual: list[str], expected: list[str]) -> None:
        pattern = "".join("(?:[a-z_]+;)*" if e == "..." else re.escape(e + ";") for e in expected)
        oracle = re.fullmatch(pattern, "".join(a + ";" for a in actual)) is not None
        assert sequence_matches(actual, expected) is oracle

    agree()


def test_plugin_names_are_always_usable_identifiers() -> None:
    @given(st.from_regex(r"[a-z][a-z0-9]{0,6}([-_][a-z0-9]{1,4}){0,2}", fullmatch=True))
    def usable(name: str) -> None:
        try:
            names = plugin_names(name)
        except AgentEngineError as exc:
            refusal = str(exc)
        else:
            refusal = ""
        if refusal:
            assert "reserved" in refusal or "short name" in refusal
            return
        for key in ("package", "agent_name", "tool_name"):
            assert names[key].isidentifier()
            assert not keyword.iskeyword(names[key])
        assert names["class_name"].isidentifier()
        assert names["distribution"] == "agentengine-" + name.replace("_", "-")

    usable()


def test_run_invariants_reject_a_misplaced_agent_error() -> None:
    from datetime import UTC, datetime

    from agentengine import parse_event
    from agentengine.testing import assert_run_invariants

    def ev(seq: int, kind: str, **extra: object):  # type: ignore[no-untyped-def]
        return parse_event(
            {
                "type": kind,
                "run_id": "r",
                "user_id": "u",
                "thread_id": "t",
                "agent": "a",
                "seq": seq,
                "ts": datetime.now(UTC).isoformat(),
                **extra,
            }
        )

    good = [
        ev(1, "agent_started"),
        ev(2, "agent_error", error="x", error_type="E"),
        ev(3, "agent_completed", status="failed"),
    ]
    assert_run_invariants(good)
    bad = [
        ev(1, "agent_started"),
        ev(2, "agent_error", error="x", error_type="E"),
        ev(3, "agent_thinking", text="late", step=1),
        ev(4, "agent_completed", status="failed"),
    ]
    with pytest.raises(AssertionError, match="agent_error may appear once, just before"):
        assert_run_invariants(bad)
