"""The pydantic-ai examples of docs/agent-frameworks.md run as written (every ```python block,
in order, in one namespace; the ```toml block as a configuration file)."""

from __future__ import annotations

import ast
import inspect
import re
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

PAGE = Path(__file__).resolve().parents[2] / "docs" / "agent-frameworks.md"
_BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    text = PAGE.read_text(encoding="utf-8")
    return [body for lang, body in _BLOCK.findall(text) if lang == language]


async def run_python(namespace: dict[str, Any]) -> None:
    for i, code in enumerate(blocks("python")):
        compiled = compile(
            code, f"agent-frameworks.md[{i}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        result = eval(compiled, namespace)
        if inspect.iscoroutine(result):
            await result


async def test_the_python_example_runs() -> None:
    namespace: dict[str, Any] = {"__name__": "agent_frameworks_doc"}
    await run_python(namespace)
    result = namespace["result"]
    assert result.status is RunStatus.SUCCEEDED
    assert_run_invariants(result.events)


async def test_the_toml_example_declares_a_working_agent(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "agent_frameworks_doc"}
    await run_python(namespace)  # for the forecast tool its plugin registers
    (toml,) = blocks("toml")
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
