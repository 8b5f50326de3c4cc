"""The ``[mcp]`` configuration table: which MCP servers to connect to, and how.

A server is stdio (``command``, ``args``, ``env``, ``cwd``) or streamable HTTP (``url``,
``headers``, ``token_env``); which one follows from whether ``command`` or ``url`` is set.
Values of ``env`` and ``headers`` are templates rendered once per user session from the
user's context, so that each session carries its own user's identity (see ``Template``).

Environment variables (read by agentengine's configuration loader) override the file:
``AGENTENGINE_MCP__SERVERS='[{name = "time", command = "mcp-server-time"}]'`` replaces the
list, and ``AGENTENGINE_MCP__SERVERS__<NAME>__<FIELD>=value`` sets one field of the server
called ``<name>`` (``AGENTENGINE_MCP__SERVERS__DOCS__URL=http://127.0.0.1:9000/mcp``).
"""

from __future__ import annotations

import os
import re
import shlex
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from agentengine import ConfigError
from agentengine.errors import AgentEngineError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from agentengine import Settings, UserExecutionContext

__all__ = ["MCPServerConfig", "MCPSettings", "Template", "TemplateError", "settings_from"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_CONTEXT_FIELDS = ("user_id", "thread_id", "request_id")
_INDEXED_FIELDS = ("metadata", "env")


class TemplateError(AgentEngineError, ValueError):
    """A template could not be rendered for a user (e.g. a metadata key is missing)."""


class Template:
    """A string with ``{placeholders}`` filled from one user's context.

    Allowed placeholders: ``{user_id}``, ``{thread_id}``, ``{request_id}``,
    ``{metadata[key]}`` (from ``UserExecutionContext.metadata``) and ``{env[NAME]}`` (from the
    process environment). ``{{`` and ``}}`` are literal braces. Attribute access, format specs
    and anything else are refused when the configuration is loaded, so a template can never
    reach into other objects.
    """

    __slots__ = ("_parts", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        parts: list[tuple[str, str | None, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(source))
        except ValueError as exc:
            raise ValueError(f"bad template {source!r}: {exc}") from None
        for literal, field_name, spec, conversion in parsed:
            if field_name is None:
                parts.append((literal, None, None))
                continue
            if spec or conversion:
                raise ValueError(
                    f"bad template {source!r}: placeholder {{{field_name}}} may not have a "
                    "format spec or conversion"
                )
            kind, key = _parse_field(source, field_name)
            parts.append((literal, kind, key))
        self._parts = tuple(parts)

    @property
    def is_static(self) -> bool:
        """True when the template has no placeholder."""
        return all(kind is None for _, kind, _ in self._parts)

    @property
    def metadata_keys(self) -> list[str]:
        """The ``metadata[...]`` keys the template reads."""
        return [key for _, kind, key in self._parts if kind == "metadata" and key is not None]

    def render(
        self, context: UserExecutionContext | None, environ: Mapping[str, str] | None = None
    ) -> str:
        """Fill the placeholders; raise ``TemplateError`` naming what is missing."""
        env = os.environ if environ is None else environ
        out: list[str] = []
        for literal, kind, key in self._parts:
            out.append(literal)
            if kind is None:
                continue
            if kind == "env":
                assert key is not None
                if key not in env:
                    raise TemplateError(f"environment variable {key!r} is not set")
                out.append(env[key])
                continue
            if context is None:
                raise TemplateError(f"{{{_describe(kind, key)}}} needs a user context")
            if kind == "metadata":
                assert key is not None
                if key not in context.metadata:
                    raise TemplateError(
                        f"the context of user {context.user_id!r} has no metadata[{key!r}]; "
                        f"create it with UserExecutionContext(..., metadata={{{key!r}: ...}})"
                    )
                out.append(str(context.metadata[key]))
            else:
                out.append(str(getattr(context, kind)))
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def _describe(kind: str, key: str | None) -> str:
    return f"{kind}[{key}]" if key is not None else kind


def _parse_field(source: str, field_name: str) -> tuple[str, str | None]:
    if field_name in _CONTEXT_FIELDS:
        return field_name, None
    match = re.fullmatch(r"(metadata|env)\[([^\[\]]+)\]", field_name)
    if match:
        return match.group(1), match.group(2)
    raise ValueError(
        f"bad template {source!r}: unknown placeholder {{{field_name}}}; use "
        "{user_id}, {thread_id}, {request_id}, {metadata[key]} or {env[NAME]}"
    )


class MCPServerConfig(BaseModel):
    """One MCP server (one ``[[mcp.servers]]`` entry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Identifies the server in tool names, logs and status (letters, digits, ``-``, ``_``).
    name: str
    # -- stdio
    #: The executable to start (stdio servers).
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    #: Extra environment of the server process; values are templates.
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    # -- streamable HTTP
    #: The server's endpoint (streamable HTTP servers).
    url: str | None = None
    #: Extra HTTP headers; values are templates.
    headers: dict[str, str] = Field(default_factory=dict)
    #: Name of an environment variable holding a bearer token for ``Authorization``.
    token_env: str | None = None
    # -- in-process (programmatic configuration only)
    #: An ``MCPServer`` (or low-level ``Server``) object served in this process.
    server: Any = Field(default=None, exclude=True, repr=False)
    # -- every transport
    #: Tools to expose (shell-style patterns on the server's tool names); all when empty.
    allow: list[str] = Field(default_factory=list)
    #: Tools to hide (patterns); applied after ``allow``.
    deny: list[str] = Field(default_factory=list)
    #: Prefix of the tool names agents call; ``"<name>."`` by default.
    prefix: str | None = None
    #: Seconds one tool call may take (the engine reports ``timeout`` after it).
    call_timeout: float = Field(default=30.0, gt=0)
    #: Seconds to start the server (stdio) or connect, including the MCP handshake.
    startup_timeout: float = Field(default=10.0, gt=0)
    #: First delay before reopening a session after a failure; doubles per failure.
    retry_initial: float = Field(default=0.25, ge=0)
    #: Upper bound of that delay.
    retry_max: float = Field(default=30.0, gt=0)
    #: Follow ``tools/list_changed`` (refresh the cached tool list when the server says so).
    watch_tools: bool = True
    #: False keeps the entry in the file but ignores it.
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "must start with a letter or digit and hold only letters, digits, '-' and '_'"
            )
        return value

    @field_validator("env", "headers")
    @classmethod
    def _check_templates(cls, value: dict[str, str]) -> dict[str, str]:
        for key, raw in value.items():
            try:
                Template(raw)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check_transport(self) -> MCPServerConfig:
        chosen = [k for k in ("command", "url", "server") if getattr(self, k)]
        if len(chosen) > 1:
            raise ValueError(
                "set either 'command' (a stdio server) or 'url' (a streamable HTTP server), "
                f"not {' and '.join(repr(k) for k in chosen)}"
            )
        if not chosen:
            raise ValueError("needs 'command' (a stdio server) or 'url' (a streamable HTTP server)")
        if self.server is not None:
            from mcp.server import Server
            from mcp.server.mcpserver import MCPServer

            if not isinstance(self.server, MCPServer | Server):
                raise ValueError(
                    f"'server' must be an MCPServer or Server object, got "
                    f"{type(self.server).__name__}"
                )
            if self.args or self.env or self.cwd or self.headers or self.token_env:
                raise ValueError("an in-process server takes no args, env, cwd or headers")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if self.command and (self.headers or self.token_env):
            raise ValueError("'headers' and 'token_env' apply to url servers only; use 'env'")
        if self.url and (self.args or self.env or self.cwd):
            raise ValueError("'args', 'env' and 'cwd' apply to command servers only")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be at least retry_initial")
        if self.prefix is not None and (not self.prefix or self.prefix != self.prefix.strip()):
            raise ValueError("prefix must be non-empty and have no surrounding spaces")
        return self

    @property
    def transport(self) -> str:
        """``"stdio"``, ``"http"`` or ``"in-process"``."""
        if self.server is not None:
            return "in-process"
        return "stdio" if self.command else "http"

    @property
    def tool_prefix(self) -> str:
        """The prefix of this server's tool names."""
        return self.prefix if self.prefix is not None else f"{self.name}."

    @property
    def target(self) -> str:
        """The command line or URL, for messages (never with rendered secrets)."""
        if self.command:
            return shlex.join([self.command, *self.args])
        if self.server is not None:
            return f"{type(self.server).__name__} {getattr(self.server, 'name', '')!r}"
        return _display_url(str(self.url))


def _display_url(url: str) -> str:
    """The URL without credentials: no user:password, no query values (they may be tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    query = "&".join(f"{k}=..." for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


class MCPSettings(BaseModel):
    """The ``[mcp]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    servers: list[MCPServerConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_unique(self) -> MCPSettings:
        seen: set[str] = set()
        for server in self.servers:
            if server.name in seen:
                raise ValueError(f"two servers are named {server.name!r}; names must be unique")
            seen.add(server.name)
        enabled = [s for s in self.servers if s.enabled]
        for a in enabled:
            for b in enabled:
                if a is not b and b.tool_prefix.startswith(a.tool_prefix):
                    raise ValueError(
                        f"the tool prefix {b.tool_prefix!r} of server {b.name!r} starts with the "
                        f"prefix {a.tool_prefix!r} of server {a.name!r}, so their tool names "
                        "could collide; give one of them another prefix"
                    )
        return self

    @property
    def enabled_servers(self) -> list[MCPServerConfig]:
        """The servers in use."""
        return [s for s in self.servers if s.enabled]


_OVERRIDE = re.compile(r"^servers__(?P<server>[^_].*?)__(?P<field>[a-z_]+)$")


def settings_from(table: Mapping[str, Any], source: str = "<mcp>") -> MCPSettings:
    """Validate the raw ``[mcp]`` table (with per-server environment overrides applied).

    Raises ``ConfigError`` naming the file, the server and the field.
    """
    raw = dict(table)
    overrides: list[tuple[str, str, Any]] = []
    for key in list(raw):
        match = _OVERRIDE.match(key)
        if match:
            overrides.append((match["server"], match["field"], raw.pop(key)))
    servers = raw.get("servers", [])
    if not isinstance(servers, list):
        raise ConfigError(
            f"invalid configuration in {source}, table [mcp]: mcp.servers must be an array of "
            f"tables ([[mcp.servers]]), got {type(servers).__name__}"
        )
    servers = [dict(s) if isinstance(s, Mapping) else s for s in servers]
    for server_name, field, value in overrides:
        target = next(
            (
                s
                for s in servers
                if isinstance(s, dict) and str(s.get("name", "")).lower() == server_name.lower()
            ),
            None,
        )
        if target is None:
            raise ConfigError(
                f"environment variable AGENTENGINE_MCP__SERVERS__{server_name.upper()}__"
                f"{field.upper()} names server {server_name!r}, which is not configured in "
                f"{source}; configured: {[s.get('name') for s in servers if isinstance(s, dict)]}"
            )
        target[field] = value
    raw["servers"] = servers
    try:
        return MCPSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe_errors(exc, servers, source)) from None


def _describe_errors(exc: ValidationError, servers: list[Any], source: str) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        where = "mcp"
        if len(loc) >= 2 and loc[0] == "servers" and isinstance(loc[1], int):
            index = loc[1]
            entry = servers[index] if index < len(servers) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            where = f"server {name!r}" if name else f"mcp.servers[{index}]"
            rest = ".".join(str(p) for p in loc[2:])
            if rest:
                where += f", field {rest!r}"
        elif loc:
            where = "mcp." + ".".join(str(p) for p in loc)
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return f"invalid configuration in {source}, table [mcp]: " + "; ".join(problems)


def load_mcp_settings(settings: Settings) -> MCPSettings:
    """The ``[mcp]`` table of agentengine's loaded configuration, validated."""
    return settings_from(settings.section("mcp"), settings.source)
