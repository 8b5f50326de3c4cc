"""Conversion of MCP results into the values agents receive (pure logic)."""

from __future__ import annotations

from agentengine_mcp.config import settings_from
from agentengine_mcp.tools import is_allowed, to_result
from mcp import types as mcp_types


def _result(**fields: object) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult.model_validate({"content": [], **fields})


def test_structured_content_wins_and_is_unwrapped_only_when_wrapped() -> None:
    wrapped = _result(structuredContent={"result": 5}, content=[{"type": "text", "text": "5"}])
    assert to_result(wrapped, wrapped=True) == 5
    assert to_result(wrapped, wrapped=False) == {"result": 5}
    plain = _result(structuredContent={"result": 5, "unit": "s"})
    assert to_result(plain, wrapped=True) == {"result": 5, "unit": "s"}


def test_text_and_mixed_content() -> None:
    one = _result(content=[{"type": "text", "text": "hi"}])
    assert to_result(one, wrapped=False) == "hi"
    two = _result(content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    assert to_result(two, wrapped=False) == ["a", "b"]
    mixed = _result(
        content=[
            {"type": "text", "text": "a chart"},
            {"type": "image", "data": "aGk=", "mimeType": "image/png"},
        ]
    )
    blocks = to_result(mixed, wrapped=False)
    assert blocks[0] == {"type": "text", "text": "a chart"}
    assert blocks[1]["mimeType"] == "image/png"


def test_allow_and_deny_patterns() -> None:
    (server,) = settings_from(
        {
            "servers": [
                {"name": "s", "command": "x", "allow": ["get_*", "list"], "deny": ["*_secret"]}
            ]
        }
    ).servers
    assert is_allowed(server, "get_time")
    assert is_allowed(server, "list")
    assert not is_allowed(server, "get_secret")
    assert not is_allowed(server, "delete")
