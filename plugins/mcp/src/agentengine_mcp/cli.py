"""``agentengine mcp status``: connect to each configured server and report its state."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

__all__ = ["mcp_group", "probe_servers"]


async def probe_servers(
    servers: list[Any], user_id: str, metadata: dict[str, str], timeout: float | None
) -> list[dict[str, Any]]:
    """Open a session with each server (concurrently) as ``user_id``, list its tools, close.

    Returns one dict per server: state ``connected`` with the tool names, or ``failed`` with
    the reason.
    """
    from agentengine import UserExecutionContext

    from agentengine_mcp.session import MCPSession, SessionOpenError
    from agentengine_mcp.tools import is_allowed

    context = UserExecutionContext.for_user(user_id, metadata=metadata)

    async def probe(config: Any) -> dict[str, Any]:
        if timeout is not None:
            config = config.model_copy(update={"startup_timeout": timeout})
        session = MCPSession(config, context)
        entry: dict[str, Any] = {
            "server": config.name,
            "transport": config.transport,
            "target": config.target,
            "prefix": config.tool_prefix,
        }
        try:
            remote = await session.list_tools()
        except SessionOpenError as exc:
            # The session's own reason, without "tried again in ...": this probe is one-shot.
            reason = f"{session.where} {session.last_error}" if session.last_error else str(exc)
            entry.update(state="failed", error=reason, tools=[])
        else:
            entry.update(
                state="connected",
                error=None,
                tools=sorted(config.tool_prefix + n for n in remote if is_allowed(config, n)),
                protocol=session.protocol_version,
            )
        finally:
            await session.close()
        return entry

    import asyncio

    return list(await asyncio.gather(*(probe(s) for s in servers)))


@click.group("mcp")
def mcp_group() -> None:
    """MCP servers: their state and tools."""


@mcp_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--user", "user_id", default="mcp-status", show_default=True, help="User id.")
@click.option(
    "--meta",
    "meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Metadata of the user's context, for {metadata[KEY]} templates (repeatable).",
)
@click.option("--server", "only", multiple=True, help="Only this server (repeatable).")
@click.option("--timeout", type=float, default=None, help="Start-up timeout per server (s).")
def status_command(
    as_json: bool, user_id: str, meta: tuple[str, ...], only: tuple[str, ...], timeout: float | None
) -> None:
    """Connect to every configured server and show its state and tools.

    Exit status 1 when a server failed, 2 on a configuration or usage error.
    """
    from agentengine import ConfigError, InvalidContextError, load_settings
    from agentengine.log import configure

    from agentengine_mcp.config import load_mcp_settings

    configure(json=as_json, level="ERROR")
    metadata: dict[str, str] = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--meta")
        metadata[key] = value
    try:
        settings = load_mcp_settings(load_settings())
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    servers = settings.enabled_servers
    if only:
        unknown = sorted(set(only) - {s.name for s in servers})
        if unknown:
            raise click.BadParameter(
                f"no enabled server named {', '.join(unknown)}; configured: "
                f"{', '.join(s.name for s in servers) or 'none'}",
                param_hint="--server",
            )
        servers = [s for s in servers if s.name in only]
    try:
        import asyncio  # here, not at the top: every agentengine command imports this module

        report = asyncio.run(probe_servers(servers, user_id, metadata, timeout))
    except InvalidContextError as exc:
        raise click.BadParameter(str(exc), param_hint="--user") from None
    if as_json:
        click.echo(json.dumps({"servers": report}, indent=2))
    elif not report:
        click.echo("no MCP servers configured (add [[mcp.servers]] to agentengine.toml)")
    for entry in report if not as_json else ():
        click.echo(f"{entry['server']} [{entry['transport']}] {entry['target']}: {entry['state']}")
        if entry["error"]:
            click.echo(f"    error: {entry['error']}")
        else:
            click.echo(f"    tools ({len(entry['tools'])}): {', '.join(entry['tools'])}")
    if any(e["state"] != "connected" for e in report):
        sys.exit(1)
