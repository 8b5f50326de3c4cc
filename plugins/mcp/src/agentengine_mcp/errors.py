"""Errors of the MCP plugin. Both are ``ToolError``: the engine reports their message as the
``error`` of the ``tool_completed`` event and re-raises them to the agent as ``ToolError``::

    ToolError (agentengine)
    ├── MCPServerUnavailableError  the server could not be started or reached, or died mid-call
    └── MCPToolCallError           the server answered with an error (``isError`` or JSON-RPC)
"""

from __future__ import annotations

from agentengine import ToolError

__all__ = ["MCPServerUnavailableError", "MCPToolCallError"]


class MCPServerUnavailableError(ToolError):
    """The server of a tool could not be started or reached, or it went away during a call.

    ``server`` names the server; the message says what happened and when the session will be
    tried again.
    """

    def __init__(self, tool: str, server: str, message: str) -> None:
        self.server = server
        super().__init__(tool, "error", message)

    def __reduce__(self) -> tuple[type[MCPServerUnavailableError], tuple[str, str, str]]:  # type: ignore[override]
        return (type(self), (self.tool, self.server, self.message))


class MCPToolCallError(ToolError):
    """The server ran the call and reported an error; the session stays usable."""

    def __init__(self, tool: str, server: str, message: str) -> None:
        self.server = server
        super().__init__(tool, "error", message)

    def __reduce__(self) -> tuple[type[MCPToolCallError], tuple[str, str, str]]:  # type: ignore[override]
        return (type(self), (self.tool, self.server, self.message))
