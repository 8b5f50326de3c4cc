"""Declarative agents: ``[[pydantic_ai.agents]]`` in agentengine.toml, and bad tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentengine import ConfigError, RunStatus, UserExecutionContext, load_settings
from agentengine.testing import assert_run_invariants
from agentengine_pydantic_ai import PydanticAIPlugin
from agentengine_pydantic_ai.config import load_settings as load_table

from .helpers import Plugin, assert_bad_table, factory


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentengine.toml"
    path.write_text(text)
    return path


async def test_a_declared_agent_runs_with_its_tools_and_limits(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[pydantic_ai.agents]]
name = "declared"
model = "test"
instructions = "Use the forecast."
tools = ["forecast"]
request_limit = 5
""",
    )
    async with (
        factory(PydanticAIPlugin(), Plugin(), config=load_settings(path)) as f,
        f.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        assert f.agents.get("declared") is not None
        result = await engine.execute_agent("declared", {"message": "weather?"})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert_run_invariants(result.events)
    # pydantic-ai's TestModel calls every tool once, then answers with what they returned.
    calls = [(e.tool, e.status) for e in result.events if e.type == "tool_completed"]
    assert calls == [("forecast", "ok")]
    assert "forecast" in result.output


async def test_a_declared_agents_limits_apply(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[pydantic_ai.agents]]
name = "limited"
model = "test"
tools = ["forecast"]
request_limit = 1
""",
    )
    async with (
        factory(PydanticAIPlugin(), Plugin(), config=load_settings(path)) as f,
        f.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("limited", {"message": "weather?"})
    assert result.status is RunStatus.FAILED
    assert_run_invariants(result.events)
    assert next(e for e in result.events if e.type == "agent_error").error_type == (
        "UsageLimitExceeded"
    )


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('[[pydantic_ai.agents]]\nname = "a"\n', "pydantic_ai.agents.0.model"),
        (
            '[[pydantic_ai.agents]]\nname = "a"\nmodel = "test"\nrequest_limit = 0\n',
            "pydantic_ai.agents.0.request_limit",
        ),
        (
            '[[pydantic_ai.agents]]\nname = "a"\nmodel = "test"\ntools = "forecast"\n',
            "pydantic_ai.agents.0.tools",
        ),
        (
            '[[pydantic_ai.agents]]\nname = "a"\nmodel = "test"\ncolour = "red"\n',
            "pydantic_ai.agents.0.colour",
        ),
        ("[pydantic_ai]\nagent = []\n", "pydantic_ai.agent"),
    ],
)
def test_a_bad_table_names_the_file_the_table_and_the_key(
    tmp_path: Path, table: str, key: str
) -> None:
    assert_bad_table(tmp_path, table, "pydantic_ai", key, load_table)


async def test_a_bad_table_is_reported_against_the_plugin_and_strict_raises(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[[pydantic_ai.agents]]\nname = "a"\n')
    async with factory(PydanticAIPlugin(), config=load_settings(path)) as f:
        error = f.get_factory_metrics()["plugin_errors"]["pydantic_ai"]
        assert "pydantic_ai.agents.0.model" in error
    with pytest.raises(Exception, match=r"pydantic_ai\.agents\.0\.model"):
        async with factory(PydanticAIPlugin(), config=load_settings(path), strict_plugins=True):
            pass


def test_duplicate_declared_names_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[pydantic_ai.agents]]\nname = "a"\nmodel = "test"\n'
        '[[pydantic_ai.agents]]\nname = "a"\nmodel = "test"\n',
    )
    with pytest.raises(ConfigError, match="two agents are called 'a'"):
        load_table(load_settings(path))
