"""Tests of {{distribution}}, written with agentengine's pytest kit (agentengine.testing)."""

import pytest
from agentengine.testing import assert_event_sequence, assert_plugin_conforms, run_agent

from {{package}} import {{class_name}}


def test_plugin_conforms_to_the_hooks() -> None:
    assert_plugin_conforms({{class_name}}())  # fails listing every problem


@pytest.mark.agentengine(plugins=[{{class_name}}()])
async def test_agent_greets_with_the_tool(engine_factory) -> None:
    result, events = await run_agent(
        engine_factory, "{{agent_name}}", {"name": "Ada"}, user="ada"
    )
    assert result.output == "Hello, Ada!"
    assert_event_sequence(
        events,
        ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"],
    )


@pytest.mark.agentengine(plugins=[{{class_name}}()])
async def test_bad_input_fails_the_run_with_a_clear_error(engine_factory) -> None:
    result, _ = await run_agent(engine_factory, "{{agent_name}}", {"name": 42}, user="ada")
    assert result.status == "failed"
    assert "name" in (result.error or "")
