"""The pydantic-ai examples of docs/agent-frameworks.md run as written (every ```python block
of its section, in order, in one namespace; the ```toml block as a configuration file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentengine import (
    ExecutionEngineFactory,
    RunStatus,
    UserExecutionContext,
    load_settings,
)
from agentengine.testing import assert_run_invariants
from agentengine_pydantic_ai import PydanticAIPlugin

from .helpers import doc_blocks, run_doc_python


async def test_the_python_example_runs() -> None:
    namespace: dict[str, Any] = {"__name__": "agent_frameworks_doc"}
    await run_doc_python("pydantic-ai", namespace)
    result = namespace["result"]
    assert result.status is RunStatus.SUCCEEDED
    assert_run_invariants(result.events)


async def test_the_toml_example_declares_a_working_agent(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "agent_frameworks_doc"}
    await run_doc_python("pydantic-ai", namespace)  # for the forecast tool its plugin registers
    (toml,) = doc_blocks("pydantic-ai", "toml")
    path = tmp_path / "agentengine.toml"
    path.write_text(toml)
    factory = ExecutionEngineFactory(
        plugins=[PydanticAIPlugin(), namespace["WeatherPlugin"]()],
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
