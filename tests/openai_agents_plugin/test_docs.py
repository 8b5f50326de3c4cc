"""The openai-agents examples of docs/agent-frameworks.md run as written (every ```python block
of its section, in order, in one namespace; the ```toml block as a configuration file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agentengine import (
    ExecutionEngineFactory,
    RunStatus,
    UserExecutionContext,
    load_settings,
)
from agentengine.testing import assert_run_invariants
from agentengine_openai_agents import OpenAIAgentsPlugin
from agents.models.multi_provider import MultiProvider
from framework_helpers import doc_blocks, run_doc_python

from .scripted import call, scripted, text


async def test_the_python_example_runs() -> None:
    namespace: dict[str, Any] = {"__name__": "agent_frameworks_doc"}
    await run_doc_python("openai-agents", namespace)
    result = namespace["result"]
    assert result.status is RunStatus.SUCCEEDED
    assert_run_invariants(result.events)


async def test_the_toml_example_declares_a_working_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace: dict[str, Any] = {"__name__": "agent_frameworks_doc"}
    await run_doc_python("openai-agents", namespace)  # for the forecast tool its plugin registers
    (toml,) = doc_blocks("openai-agents", "toml")
    path = tmp_path / "agentengine.toml"
    path.write_text(toml)
    asked: list[str | None] = []
    model = scripted([call("forecast", {"city": "Oslo"}, "c1")], [text("Sunny.")])

    def get_model(self: Any, name: str | None) -> Any:  # the provider would call OpenAI
        asked.append(name)
        return model

    monkeypatch.setattr(MultiProvider, "get_model", get_model)
    factory = ExecutionEngineFactory(
        plugins=[OpenAIAgentsPlugin(), namespace["WeatherPlugin"]()],
        load_entrypoints=False,
        config=load_settings(path),
        environ={},
    )
    async with (
        factory,
        factory.user_execution_engine(UserExecutionContext.for_user("bob")) as engine,
    ):
        result = await engine.execute_agent("helper", {"message": "hi"})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert_run_invariants(result.events)
    assert [e.tool for e in result.events if e.type == "tool_completed"] == ["forecast"]
    assert set(asked) == {"gpt-5.2"}  # asked once per model turn
    assert model.calls[0].system_instructions == "Answer in one sentence."
