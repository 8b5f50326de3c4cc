"""Declarative agents: ``[[openai_agents.agents]]`` in agentengine.toml, and bad tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agentengine import ConfigError, RunStatus, UserExecutionContext, load_settings
from agentengine.testing import assert_run_invariants
from agentengine_openai_agents import OpenAIAgentsPlugin
from agentengine_openai_agents.config import load_settings as load_table
from agents.models.multi_provider import MultiProvider
from framework_helpers import Plugin, assert_bad_table, factory

from .scripted import call, scripted, text

DECLARED = """
[[openai_agents.agents]]
name = "declared"
model = "gpt-test"
instructions = "Use the forecast."
tools = ["forecast"]
max_turns = 3
temperature = 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentengine.toml"
    path.write_text(text)
    return path


@pytest.fixture
def provided(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The SDK's model provider answers with a scripted model (the real one calls OpenAI)."""
    seen: dict[str, Any] = {"names": [], "model": None}

    def get_model(self: Any, name: str | None) -> Any:
        seen["names"].append(name)
        return seen["model"]

    monkeypatch.setattr(MultiProvider, "get_model", get_model)
    return seen


async def test_a_declared_agent_runs_with_its_model_tools_and_settings(
    tmp_path: Path, provided: dict[str, Any]
) -> None:
    model = scripted([call("forecast", {"city": "Paris"}, "c1")], [text("Sunny.")])
    provided["model"] = model
    path = write(tmp_path, DECLARED)
    async with (
        factory(OpenAIAgentsPlugin(), Plugin(), config=load_settings(path)) as f,
        f.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        assert f.agents.get("declared") is not None
        result = await engine.execute_agent("declared", {"message": "weather?"})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert_run_invariants(result.events)
    assert result.output == "Sunny."
    assert [(e.tool, e.status) for e in result.events if e.type == "tool_completed"] == [
        ("forecast", "ok")
    ]
    assert provided["names"][0] == "gpt-test"
    first = model.calls[0]
    assert first.system_instructions == "Use the forecast."
    assert first.model_settings.temperature == 0.5


async def test_a_declared_agents_max_turns_apply(tmp_path: Path, provided: dict[str, Any]) -> None:
    provided["model"] = scripted(*[[call("forecast", {"city": "Rome"}, f"c{i}")] for i in range(4)])
    path = write(tmp_path, DECLARED)
    async with (
        factory(OpenAIAgentsPlugin(), Plugin(), config=load_settings(path)) as f,
        f.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("declared", {"message": "weather?"})
    assert result.status is RunStatus.FAILED
    assert_run_invariants(result.events)
    error = next(e for e in result.events if e.type == "agent_error")
    assert error.error_type == "MaxTurnsExceeded"


async def test_a_missing_api_key_fails_the_run_not_the_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = write(tmp_path, DECLARED)
    async with (
        factory(OpenAIAgentsPlugin(), Plugin(), config=load_settings(path)) as f,
        f.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("declared", {"message": "weather?"})
    assert result.status is RunStatus.FAILED
    assert_run_invariants(result.events)
    assert "OPENAI_API_KEY" in (result.error or "")


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('[[openai_agents.agents]]\nname = "a"\n', "openai_agents.agents.0.model"),
        ('[[openai_agents.agents]]\nmodel = "m"\n', "openai_agents.agents.0.name"),
        (
            '[[openai_agents.agents]]\nname = "a"\nmodel = "m"\nmax_turns = 0\n',
            "openai_agents.agents.0.max_turns",
        ),
        (
            '[[openai_agents.agents]]\nname = "a"\nmodel = "m"\ntools = "forecast"\n',
            "openai_agents.agents.0.tools",
        ),
        (
            '[[openai_agents.agents]]\nname = "a"\nmodel = "m"\ntools = [" "]\n',
            "openai_agents.agents.0.tools",
        ),
        (
            '[[openai_agents.agents]]\nname = "a"\nmodel = "m"\ntemperature = 3\n',
            "openai_agents.agents.0.temperature",
        ),
        (
            '[[openai_agents.agents]]\nname = "a"\nmodel = "m"\nthinking_window = -1\n',
            "openai_agents.agents.0.thinking_window",
        ),
        (
            '[[openai_agents.agents]]\nname = " a"\nmodel = "m"\n',
            "openai_agents.agents.0.name",
        ),
        (
            '[[openai_agents.agents]]\nname = "a"\nmodel = "m"\ncolour = "red"\n',
            "openai_agents.agents.0.colour",
        ),
        ("[openai_agents]\nagent = []\n", "openai_agents.agent"),
    ],
)
def test_a_bad_table_names_the_file_the_table_and_the_key(
    tmp_path: Path, table: str, key: str
) -> None:
    assert_bad_table(tmp_path, table, "openai_agents", key, load_table)


async def test_a_bad_table_is_reported_against_the_plugin_and_strict_raises(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[[openai_agents.agents]]\nname = "a"\n')
    async with factory(OpenAIAgentsPlugin(), config=load_settings(path)) as f:
        error = f.get_factory_metrics()["plugin_errors"]["openai_agents"]
        assert "openai_agents.agents.0.model" in error
    with pytest.raises(Exception, match=r"openai_agents\.agents\.0\.model"):
        async with factory(OpenAIAgentsPlugin(), config=load_settings(path), strict_plugins=True):
            pass


def test_duplicate_declared_names_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[openai_agents.agents]]\nname = "a"\nmodel = "m"\n'
        '[[openai_agents.agents]]\nname = "a"\nmodel = "m"\n',
    )
    with pytest.raises(ConfigError, match="two agents are called 'a'"):
        load_table(load_settings(path))
