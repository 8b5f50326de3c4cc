"""``MCPPlugin``: reads ``[mcp]``, gives each engine its ``MCPExtension``, reports health."""

from __future__ import annotations

import os
import shutil
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentengine import hookimpl

if TYPE_CHECKING:
    from agentengine import Settings, UserExecutionContext, UserExecutionEngine

    from agentengine_mcp.config import MCPServerConfig, MCPSettings
    from agentengine_mcp.extension import MCPExtension
    from agentengine_mcp.session import MCPSession

# This module is what the entry point loads for every factory and for `agentengine --help`
# and `agentengine plugins`, so it imports nothing heavy: the MCP SDK (most of a second),
# the pydantic configuration models and structlog wait until a factory or engine needs them.

__all__ = ["MCPPlugin", "static_problem"]


def static_problem(config: MCPServerConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """A problem visible without starting the server (missing command or token), or None."""
    env = os.environ if environ is None else environ
    if config.command:
        path = env.get("PATH") if environ is not None else None
        if os.sep not in config.command and shutil.which(config.command, path=path) is None:
            return f"command {config.command!r} is not found on PATH"
        if os.sep in config.command and not os.access(config.command, os.X_OK):
            return f"command {config.command!r} does not exist or is not executable"
    if config.token_env and not env.get(config.token_env):
        return f"environment variable {config.token_env!r} (token_env) is not set"
    return None


class MCPPlugin:
    """The MCP plugin: the tools of MCP servers as per-user agentengine tools.

    Configured from the ``[mcp]`` table (see ``agentengine_mcp.config``), or explicitly with
    ``MCPPlugin(config=...)`` (an ``MCPSettings`` or the same data as a dict), which then
    takes precedence over the file.
    """

    name = "mcp"

    def __init__(
        self,
        config: MCPSettings | Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._explicit: MCPSettings | None = None
        if config is not None:  # explicit: validate now, so a mistake shows at construction
            from agentengine_mcp.config import MCPSettings, settings_from

            self._explicit = (
                config
                if isinstance(config, MCPSettings)
                else settings_from(config, "MCPPlugin(config=...)")
            )
        self._settings: MCPSettings | None = self._explicit
        self._environ = environ
        self._extensions: weakref.WeakSet[MCPExtension] = weakref.WeakSet()
        # Last failure per server across all sessions (sessions die with their engines).
        self._last_failure: dict[str, tuple[float, str]] = {}

    @property
    def settings(self) -> MCPSettings:
        """The configuration in force (empty until configured)."""
        if self._settings is None:
            from agentengine_mcp.config import MCPSettings

            self._settings = MCPSettings()
        return self._settings

    @settings.setter
    def settings(self, value: MCPSettings) -> None:
        self._settings = value

    @property
    def servers(self) -> list[MCPServerConfig]:
        """The enabled servers."""
        return self.settings.enabled_servers

    @hookimpl
    def agentengine_configure(self, settings: Settings) -> None:
        """Read ``[mcp]`` unless the plugin was configured explicitly."""
        import structlog

        from agentengine_mcp.config import load_mcp_settings

        if self._explicit is None:
            self.settings = load_mcp_settings(settings)
        for server in self.servers:
            problem = static_problem(server, self._environ)
            if problem:
                structlog.get_logger("agentengine_mcp").warning(
                    "mcp server misconfigured", server=server.name, problem=problem
                )

    @hookimpl
    def agentengine_engine_extensions(
        self, context: UserExecutionContext, engine: UserExecutionEngine
    ) -> MCPExtension | None:
        """One extension per engine, holding that user's sessions."""
        if not self.servers:
            return None
        from agentengine_mcp.extension import MCPExtension

        extension = MCPExtension(
            self.servers, context, environ=self._environ, on_change=self._session_changed
        )
        self._extensions.add(extension)
        return extension

    @hookimpl
    def agentengine_cli_commands(self) -> Sequence[Any]:
        """``agentengine mcp ...`` (also declared in entry-point group ``agentengine.commands``,
        how ``agentengine mcp`` finds it without loading any plugin: the same object)."""
        from agentengine_mcp.cli import mcp_group

        return [mcp_group]

    @hookimpl
    def agentengine_status(self) -> list[dict[str, Any]]:
        """One entry per server, shown by ``agentengine plugins``."""
        return [
            {
                "name": s["server"],
                "state": s["state"],
                "detail": s["error"] or f"{s['transport']}: {s['target']}",
            }
            for s in self.status()
        ]

    def _session_changed(self, session: MCPSession) -> None:
        from agentengine_mcp.session import SessionState

        if session.state is SessionState.FAILED and session.last_error:
            self._last_failure[session.config.name] = (time.monotonic(), session.last_error)

    def sessions(self) -> list[MCPSession]:
        """Every live session of every engine."""
        return [s for ext in list(self._extensions) for s in ext.sessions.values()]

    def status(self) -> list[dict[str, Any]]:
        """Per server: its state over the live sessions, and why it failed if it did.

        ``state`` is ``failed`` or ``retrying`` when a session's last attempt failed (the
        worst session wins), ``connected`` when sessions are open and healthy, ``idle`` when
        none is open yet, or ``misconfigured`` when a problem shows without starting it.
        """
        from agentengine_mcp.session import SessionState

        by_server: dict[str, list[MCPSession]] = {}
        for session in self.sessions():
            if session.state is not SessionState.CLOSED:
                by_server.setdefault(session.config.name, []).append(session)
        report = []
        for server in self.servers:
            sessions = by_server.get(server.name, [])
            described = [s.describe() for s in sessions]
            counts: dict[str, int] = {}
            for d in described:
                counts[d["state"]] = counts.get(d["state"], 0) + 1
            failing = [d for d in described if d["state"] in ("failed", "retrying")]
            problem = static_problem(server, self._environ)
            error: str | None = None
            retry_in = 0.0
            if failing:
                worst = max(failing, key=lambda d: d["retry_in"])
                state, error, retry_in = worst["state"], worst["error"], worst["retry_in"]
            elif counts.get("connected"):
                state = "connected"
            elif problem:
                state, error = "misconfigured", problem
            elif counts.get("connecting"):
                state = "connecting"
            else:
                state = "idle"
            last = self._last_failure.get(server.name)
            report.append(
                {
                    "server": server.name,
                    "transport": server.transport,
                    "target": server.target,
                    "prefix": server.tool_prefix,
                    "state": state,
                    "error": error,
                    "retry_in": retry_in,
                    "sessions": counts,
                    "last_failure": (
                        {"seconds_ago": round(time.monotonic() - last[0], 1), "reason": last[1]}
                        if last
                        else None
                    ),
                }
            )
        return report
