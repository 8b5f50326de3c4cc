"""The legacy MCPEnhancedExecutionEngine maps onto the real MCP plugin and a real server."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from agentengine import RunStatus, UserExecutionContext, legacy

from .conftest import make_factory, stdio_server


async def test_mcp_enhanced_engine_calls_a_real_mcp_server(record_file: Path) -> None:
    ctx = UserExecutionContext.for_user("legacy-user")
    async with make_factory(stdio_server()) as factory:
        with pytest.warns(DeprecationWarning, match="MCPEnhancedExecutionEngine"):
            engine = legacy.MCPEnhancedExecutionEngine(None, None, ctx, factory=factory)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the engine itself is the modern one
                result = await engine.execute_agent(
                    "call", {"tool": "srv.add", "args": {"a": 20, "b": 22}}
                )
        finally:
            await engine.cleanup()
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == 42
    assert [e.type for e in result.events] == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert {e.user_id for e in result.events} == {"legacy-user"}
