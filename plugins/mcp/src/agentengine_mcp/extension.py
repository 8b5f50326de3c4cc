"""The per-engine side of the plugin: one user's MCP sessions and tools.

Tools are found at call time (``resolve_tool``), not listed when the engine is created:
listing needs an open session, and sessions open lazily, on the first call of one of their
server's tools. A name starting with a server's prefix opens that server's session for this
user (once), and later lookups are a dictionary hit. ``list_tools`` opens every session to
enumerate the tools (for an agent that hands them to a model, say).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentengine import Extension

from agentengine_mcp.session import MCPSession, SessionOpenError
from agentengine_mcp.tools import MCPTool, UnavailableTool, is_allowed

if TYPE_CHECKING:
    from agentengine import RunContext, Tool, UserExecutionContext

    from agentengine_mcp.config import MCPServerConfig

__all__ = ["MCPExtension"]

#: Key of the extension in ``run.state`` (see ``agentengine_mcp.list_tools``).
STATE_KEY = "mcp"


class MCPExtension(Extension):
    """One user's engine's MCP sessions (one per server, opened on first use)."""

    def __init__(
        self,
        servers: Sequence[MCPServerConfig],
        context: UserExecutionContext,
        *,
        environ: Mapping[str, str] | None = None,
        on_change: Callable[[MCPSession], None] | None = None,
    ) -> None:
        self.context = context
        self._servers = {s.name: s for s in servers}
        # Longest prefix first, so "docs.v2." would win over "docs." if prefixes nested
        # (the configuration refuses nested prefixes; this keeps lookups unambiguous anyway).
        self._prefixes = sorted(
            ((s.tool_prefix, s) for s in servers), key=lambda p: len(p[0]), reverse=True
        )
        self._environ = environ
        self._on_change = on_change
        self.sessions: dict[str, MCPSession] = {}
        self._tools: dict[str, tuple[tuple[int, int], dict[str, MCPTool]]] = {}
        self._closed = False

    def session(self, server: str) -> MCPSession:
        """This user's session with ``server`` (created, not opened, on first use)."""
        found = self.sessions.get(server)
        if found is None:
            if self._closed:
                raise SessionOpenError(f"MCP sessions of user {self.context.user_id!r} are closed")
            found = self.sessions[server] = MCPSession(
                self._servers[server],
                self.context,
                environ=self._environ,
                on_change=self._on_change,
            )
        return found

    async def around_run(self, run: RunContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        """Make this extension reachable from the run (``agentengine_mcp.list_tools(run)``)."""
        run.state[STATE_KEY] = self
        return await call_next()

    async def _server_tools(self, server: str) -> dict[str, MCPTool]:
        session = self.session(server)
        remote = await session.list_tools()
        version = session.tools_version
        cached = self._tools.get(server)
        if cached is not None and cached[0] == version:
            return cached[1]
        config = self._servers[server]
        tools = {
            t.name: t
            for t in (MCPTool(session, r) for r in remote.values() if is_allowed(config, r.name))
        }
        self._tools[server] = (version, tools)
        return tools

    async def resolve_tool(self, name: str) -> Tool | None:
        """The tool ``name`` if it starts with a server's prefix (None otherwise).

        Never raises: when the server cannot be reached, or has no such tool, the returned
        tool fails the call with the reason (status ``error`` in ``tool_completed``).
        """
        match = next(((p, c) for p, c in self._prefixes if name.startswith(p)), None)
        if match is None:
            return None
        prefix, config = match
        try:
            tools = await self._server_tools(config.name)
        except SessionOpenError as exc:
            return UnavailableTool(name, config.name, str(exc))
        found = tools.get(name)
        if found is not None:
            return found
        known = ", ".join(sorted(tools)) or "none"
        return UnavailableTool(
            name,
            config.name,
            f"MCP server {config.name!r} has no tool {name[len(prefix) :]!r}"
            f"{' that is allowed' if config.allow or config.deny else ''}; its tools: {known}",
            missing=True,
        )

    async def list_tools(self, server: str | None = None) -> list[MCPTool]:
        """The allowed tools of every server (or of ``server``), opening sessions as needed.

        A server that cannot be reached contributes no tool (its state says why).
        """
        names = [server] if server is not None else list(self._servers)
        results = await asyncio.gather(
            *(self._server_tools(n) for n in names), return_exceptions=True
        )
        tools: list[MCPTool] = []
        for result in results:
            if isinstance(result, SessionOpenError):
                continue
            if isinstance(result, BaseException):
                raise result
            tools.extend(result.values())
        return sorted(tools, key=lambda t: t.name)

    async def close(self) -> None:
        """Close every session of this user (stops their stdio servers)."""
        self._closed = True
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
