"""agentengine-mcp: the tools of MCP servers as agentengine tools, one session per user.

Configure servers in the ``[mcp]`` table of ``agentengine.toml``::

    [[mcp.servers]]
    name = "time"
    command = "mcp-server-time"
    args = ["--local-timezone", "UTC"]

and an agent calls ``await run.call_tool("time.get_current_time", {"timezone": "UTC"})``.
Each user's engine opens its own session with each server, lazily, with headers or
environment rendered from that user's context; see ``docs/mcp.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine import RunContext

    from agentengine_mcp.config import MCPServerConfig, MCPSettings, Template, TemplateError
    from agentengine_mcp.errors import MCPServerUnavailableError, MCPToolCallError
    from agentengine_mcp.extension import MCPExtension
    from agentengine_mcp.plugin import MCPPlugin
    from agentengine_mcp.session import MCPSession, SessionState
    from agentengine_mcp.tools import MCPTool

# Imported on first use: the entry point names ``agentengine_mcp:MCPPlugin`` and every
# ``agentengine`` command loads it, so importing the package must not import the MCP SDK.
_EXPORTS = {
    "MCPServerConfig": "agentengine_mcp.config",
    "MCPSettings": "agentengine_mcp.config",
    "Template": "agentengine_mcp.config",
    "TemplateError": "agentengine_mcp.config",
    "MCPServerUnavailableError": "agentengine_mcp.errors",
    "MCPToolCallError": "agentengine_mcp.errors",
    "MCPExtension": "agentengine_mcp.extension",
    "STATE_KEY": "agentengine_mcp.extension",
    "MCPPlugin": "agentengine_mcp.plugin",
    "MCPSession": "agentengine_mcp.session",
    "SessionState": "agentengine_mcp.session",
    "MCPTool": "agentengine_mcp.tools",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__version__ = "0.1.0"

__all__ = [
    "MCPExtension",
    "MCPPlugin",
    "MCPServerConfig",
    "MCPServerUnavailableError",
    "MCPSession",
    "MCPSettings",
    "MCPTool",
    "MCPToolCallError",
    "SessionState",
    "Template",
    "TemplateError",
    "__version__",
    "list_tools",
]


async def list_tools(run: RunContext, server: str | None = None) -> list[MCPTool]:
    """The MCP tools the run's user can call (of every server, or of ``server``).

    Opens the user's sessions that are not open yet; a server that cannot be reached
    contributes no tool. Returns an empty list when the MCP plugin is not active.
    """
    from agentengine_mcp.extension import STATE_KEY, MCPExtension

    extension = run.state.get(STATE_KEY)
    if not isinstance(extension, MCPExtension):
        return []
    return await extension.list_tools(server)
