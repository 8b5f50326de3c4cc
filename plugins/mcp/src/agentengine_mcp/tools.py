"""MCP tools as agentengine tools.

An ``MCPTool`` is one tool of one server *as one user's session sees it*: its arguments are
checked against the server's JSON input schema before anything is sent, and ``invoke`` calls
the server through that user's session only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jsonschema
import structlog
from agentengine import Tool, ToolArgumentError, check_arguments
from jsonschema.exceptions import SchemaError
from mcp import types as mcp_types
from mcp.shared.exceptions import MCPError

from agentengine_mcp.errors import MCPServerUnavailableError, MCPToolCallError
from agentengine_mcp.session import ConnectionLostError, SessionOpenError

if TYPE_CHECKING:
    from agentengine import RunContext

    from agentengine_mcp.config import MCPServerConfig
    from agentengine_mcp.session import MCPSession

__all__ = ["MCPTool", "UnavailableTool", "is_allowed", "to_result"]

_log = structlog.get_logger("agentengine_mcp.tools")
_MAX_PROBLEMS = 10


def is_allowed(config: MCPServerConfig, remote_name: str) -> bool:
    """Whether the server's tool ``remote_name`` passes the allow and deny lists."""
    if config.allow and not any(fnmatch.fnmatchcase(remote_name, p) for p in config.allow):
        return False
    return not any(fnmatch.fnmatchcase(remote_name, p) for p in config.deny)


def _validator(tool_name: str, schema: dict[str, Any]) -> Any:
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
    except SchemaError as exc:
        # A server's broken schema should not make its tool unusable: the server still
        # validates on its side.
        _log.warning(
            "mcp tool has an invalid input schema; arguments are not checked locally",
            tool=tool_name,
            error=exc.message,
        )
        return None
    return cls(schema)


def _path(error: Any) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(arguments)"


def _is_wrapped(output_schema: Mapping[str, Any] | None) -> bool:
    """True for the ``{"result": value}`` wrapping SDK servers give non-object results."""
    if not output_schema:
        return False
    props = output_schema.get("properties")
    return (
        isinstance(props, Mapping)
        and list(props) == ["result"]
        and output_schema.get("required") == ["result"]
    )


def to_result(result: mcp_types.CallToolResult, wrapped: bool) -> Any:
    """The value an agent gets back from a successful call.

    Structured content when the server sent it (unwrapped from ``{"result": ...}`` when the
    output schema is that wrapping); otherwise the text of a text-only answer; otherwise the
    content blocks as JSON-ready dicts.
    """
    structured = result.structured_content
    if structured is not None:
        if wrapped and isinstance(structured, Mapping) and list(structured) == ["result"]:
            return structured["result"]
        return structured
    blocks = result.content
    if all(isinstance(b, mcp_types.TextContent) for b in blocks):
        texts = [b.text for b in blocks if isinstance(b, mcp_types.TextContent)]
        return texts[0] if len(texts) == 1 else texts
    return [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in blocks]


def _error_text(result: mcp_types.CallToolResult) -> str:
    texts = [b.text for b in result.content if isinstance(b, mcp_types.TextContent)]
    return " ".join(t.strip() for t in texts if t.strip()) or "the server reported an error"


class MCPTool(Tool):
    """One allowed tool of one server, bound to one user's session."""

    def __init__(self, session: MCPSession, remote: mcp_types.Tool) -> None:
        config = session.config
        schema = dict(remote.input_schema or {"type": "object"})
        super().__init__(
            config.tool_prefix + remote.name,
            remote.description or "",
            timeout=config.call_timeout,
            input_schema=schema,
        )
        self.remote_name = remote.name
        self.server = config.name
        self._session = session
        self._validator = _validator(self.name, schema)
        self._wrapped = _is_wrapped(remote.output_schema)

    def validate_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``args`` against the server's input schema, without contacting it."""
        data = dict(check_arguments(args, f"arguments for tool {self.name!r}"))
        if self._validator is not None:
            errors = sorted(self._validator.iter_errors(data), key=lambda e: list(e.path))
            if errors:
                problems = [f"{_path(e)}: {e.message}" for e in errors[:_MAX_PROBLEMS]]
                if len(errors) > _MAX_PROBLEMS:
                    problems.append(f"... and {len(errors) - _MAX_PROBLEMS} more")
                raise ToolArgumentError(
                    f"invalid arguments for tool {self.name!r}: " + "; ".join(problems)
                )
        return data

    async def invoke(self, run: RunContext, args: dict[str, Any]) -> Any:
        """Call the tool through this user's session."""
        try:
            result = await self._session.call_tool(self.remote_name, args)
        except (SessionOpenError, ConnectionLostError) as exc:
            raise MCPServerUnavailableError(self.name, self.server, str(exc)) from None
        except MCPError as exc:
            raise MCPToolCallError(
                self.name,
                self.server,
                f"MCP server {self.server!r} refused the call to {self.remote_name!r}: "
                f"{exc.message} (code {exc.code})",
            ) from None
        if result.is_error:
            raise MCPToolCallError(self.name, self.server, _error_text(result))
        return to_result(result, self._wrapped)


class UnavailableTool(Tool):
    """Stands in for a tool whose server could not be reached, or that it does not have.

    Looking a tool up never fails a run on its own: the call reports the reason in its
    ``tool_completed`` event (status ``error``) like any failed call.
    """

    def __init__(self, name: str, server: str, message: str, *, missing: bool = False) -> None:
        super().__init__(name, f"unavailable: {message}")
        self.server = server
        self.message = message
        self.missing = missing

    async def invoke(self, run: RunContext, args: dict[str, Any]) -> Any:
        """Fail with the reason."""
        if self.missing:
            raise MCPToolCallError(self.name, self.server, self.message)
        raise MCPServerUnavailableError(self.name, self.server, self.message)
