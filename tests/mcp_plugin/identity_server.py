"""An MCP server for the tests, written with the SDK's ``MCPServer``.

Run as ``python identity_server.py stdio`` (a stdio subprocess) or
``python identity_server.py http PORT`` (streamable HTTP on 127.0.0.1:PORT, served by uvicorn).

Every call appends one JSON line to the file named by ``MCP_TEST_RECORD`` (inherited by stdio
servers from the ``env`` table, by the HTTP server from its own environment): which tool, the
identity the call carried (the ``MCP_TEST_IDENTITY`` environment value of a stdio process, the
``X-User-Token`` header of an HTTP request), the user the caller claims to be, and the pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("identity", version="1.0")


def _identity(ctx: Context) -> str | None:
    headers = ctx.headers
    if headers is not None:
        return headers.get("x-user-token")
    return os.environ.get("MCP_TEST_IDENTITY")


def _record(**fields: Any) -> None:
    path = os.environ.get("MCP_TEST_RECORD")
    if not path:
        return
    line = json.dumps({"pid": os.getpid(), **fields}) + "\n"
    # One write per line on an O_APPEND file: lines of concurrent servers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@server.tool()
async def whoami(user: str, ctx: Context) -> str:
    """Return (and record) the identity this call carried."""
    identity = _identity(ctx)
    _record(tool="whoami", claimed=user, identity=identity)
    return identity or ""


@server.tool()
async def add(a: int, b: int, ctx: Context) -> int:
    """Add two integers."""
    _record(tool="add", identity=_identity(ctx))
    return a + b


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Sleep, then answer; records when it starts so a test can kill the server mid-call."""
    _record(tool="slow", event="started", identity=_identity(ctx))
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
async def fail(message: str) -> str:
    """Fail with ``message`` (an MCP error result)."""
    raise ToolError(message)


@server.tool()
async def secret() -> str:
    """A tool the tests hide with the deny list."""
    return "should not be reachable"


@server.tool()
async def grow(ctx: Context) -> str:
    """Add the tool ``extra`` and announce that the tool list changed."""
    if "extra" not in {t.name for t in await server.list_tools()}:
        server.add_tool(_extra, name="extra", description="Added at run time.")
    await ctx.notify_tools_changed()
    return "grown"


def _extra() -> str:
    return "extra"


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio":
        server.run("stdio")
    elif mode == "http":
        import uvicorn

        port = int(sys.argv[2])
        app = server.streamable_http_app()
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    else:
        raise SystemExit(f"usage: {sys.argv[0]} stdio | http PORT")


if __name__ == "__main__":
    main()
