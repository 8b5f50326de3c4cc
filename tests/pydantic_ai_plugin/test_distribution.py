"""A third-party distribution shipping a pydantic-ai agent through an entry point works with
``agentengine run`` and ``agentengine serve`` (real subprocesses, real sockets)."""

from __future__ import annotations

from pathlib import Path

from agentengine import parse_event
from agentengine.testing import assert_run_invariants
from framework_helpers import agentengine_run, installed, serve_one_run

FIXTURE = Path(__file__).parents[1] / "fixtures" / "pydanticai_dist"
SECRET = "p" * 40


def test_agentengine_run_runs_the_framework_agent(tmp_path: Path) -> None:
    events = agentengine_run(installed(FIXTURE, tmp_path), tmp_path, "speller", "hello")
    assert [(e.type, getattr(e, "tool", None)) for e in events] == [
        ("agent_started", None),
        ("tool_executing", "shout"),
        ("tool_completed", "shout"),
        ("tool_executing", "count_letters"),
        ("tool_completed", "count_letters"),
        ("agent_thinking", None),
        ("agent_completed", None),
    ]
    assert events[-1].output == "HELLO! has 5 letters."  # type: ignore[union-attr]


def test_agentengine_serve_runs_the_framework_agent_over_http(tmp_path: Path) -> None:
    site = installed(FIXTURE, tmp_path)
    speller, record, events = serve_one_run(site, "speller", "serve", secret=SECRET)
    assert speller["input_schema"]["required"] == ["message"]  # what the page's form shows
    assert record["status"] == "succeeded", record
    assert record["output"] == "SERVE! has 5 letters."
    parsed = [parse_event(e) for e in events]
    assert_run_invariants(parsed)
    assert {e.user_id for e in parsed} == {"ann"}
    assert [e["tool"] for e in events if e["type"] == "tool_completed"] == [
        "shout",
        "count_letters",
    ]
