"""Configuration: one file for the engine and every plugin, overridden by the environment.

Looked up in this order (the first that exists wins; :mod:`agentengine.config_files` finds
and reads the file):

1. the path in ``AGENTENGINE_CONFIG``;
2. ``agentengine.toml`` in the working directory;
3. the ``[tool.agentengine]`` table of ``pyproject.toml`` in the working directory.

Each plugin owns one table named after it (``[engine]`` belongs to the core) and validates it
with pydantic. ``[plugins]`` chooses which plugins load (``enable``, ``disable``, ``only``,
``strict``; see ``agentengine.plugins.loading``), each key overridden by its own variable
(``AGENTENGINE_ENABLE_PLUGINS``, ``AGENTENGINE_DISABLE_PLUGINS``, ``AGENTENGINE_PLUGINS``,
``AGENTENGINE_STRICT_PLUGINS``). Environment variables ``AGENTENGINE_<TABLE>__<KEY>=value``
override the file (``AGENTENGINE_ENGINE__RUN_TIMEOUT=10``); values are parsed as TOML scalars
where possible.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentengine.config_files import find_config
from agentengine.errors import ConfigError

__all__ = ["NO_CONFIG_FILE", "EngineSettings", "Settings", "load_settings"]

_M = TypeVar("_M", bound=BaseModel)
_ENV_PREFIX = "AGENTENGINE_"
# Environment variables of the library itself, not configuration tables.
_RESERVED_ENV = {
    "CONFIG",
    "PLUGINS",
    "DISABLE_PLUGINS",
    "ENABLE_PLUGINS",
    "STRICT_PLUGINS",
    "LOG_JSON",
    "LOG_LEVEL",
}
#: ``Settings.source`` when no configuration file was found.
NO_CONFIG_FILE = "<defaults>"


class EngineSettings(BaseModel):
    """The ``[engine]`` table: defaults for ``ExecutionEngineFactory`` keyword arguments."""

    model_config = ConfigDict(extra="forbid")

    max_concurrent_per_user: int = Field(default=5, ge=1)
    max_concurrent_runs: int = Field(default=1000, ge=1)
    max_engines_per_user: int = Field(default=10, ge=1)
    run_timeout: float = Field(default=300.0, gt=0)
    tool_timeout: float = Field(default=60.0, gt=0)
    drain_timeout: float = Field(default=10.0, ge=0)
    # How long a cancelled run gets to end before it is abandoned (status cancelled), and how
    # long an extension's close() or the event sink's aclose() gets. Shutdown takes at most
    # drain_timeout + 3 * close_timeout + 1 s (see "Failure semantics" in architecture.md).
    close_timeout: float = Field(default=5.0, gt=0)
    idle_ttl: float | None = Field(default=900.0, gt=0)
    event_retention: int = Field(default=10_000, ge=1)
    event_max_users: int = Field(default=10_000, ge=1)
    #: One event's values (input, args, result, output, text, error) at most, in estimated
    #: JSON bytes: larger ones are truncated with a marker (see docs/events.md).
    event_max_bytes: int = Field(default=256 * 1024, ge=1024)
    #: Bytes of events kept per user by the in-memory sink (besides ``event_retention``).
    event_retention_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: Bytes of events kept over all users by the in-memory sink: beyond it, the least
    #: recently active users' oldest events are dropped first.
    event_total_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    #: Bytes of its own events a run holds (``RunContext.events``, ``RunResult.events``):
    #: beyond it the oldest go, but ``agent_started`` and the newest event; a handle being
    #: iterated still gets every event. The sink's stream and ``seq`` stay complete.
    run_event_retention_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: Seconds after which the in-memory sink drops a user's event log that has no
    #: subscriber and no run in flight (None: kept until ``event_max_users`` or the byte
    #: budgets drop it). A later resume from an old cursor gets ``events_lost``.
    event_log_idle_seconds: float | None = Field(default=3600.0, gt=0)
    #: Records of submitted runs (``factory.submit_run``, ``factory.runs``): finished runs
    #: kept per user, over all users, and their bytes over all users (each counted as its
    #: output and error as JSON plus 1 KiB); past a bound the least recently active users'
    #: oldest records go first. A user none of whose runs started or ended for
    #: ``finished_runs_ttl`` seconds is forgotten (never while a run is in flight; None: never).
    finished_runs_kept: int = Field(default=1000, ge=1)
    max_finished_runs: int = Field(default=50_000, ge=1)
    finished_runs_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    finished_runs_ttl: float | None = Field(default=3600.0, gt=0)
    #: Put the user id on each run's span (``enduser.id``) when tracing is on. Off by
    #: default: user ids may be personal data (see docs/observability.md).
    trace_user_ids: bool = False


class OtelSettings(BaseModel):
    """The ``[otel]`` table: ``enabled`` installs the OpenTelemetry SDK with the OTLP/HTTP
    exporter, configured by the standard ``OTEL_*`` variables, in ``agentengine serve`` and
    ``agentengine worker`` (as ``--otel`` does); ``service_name`` unless ``OTEL_SERVICE_NAME``
    names it. See docs/observability.md."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    service_name: str | None = None


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


class Settings:
    """The loaded configuration: tables by name, with where they came from."""

    def __init__(self, tables: Mapping[str, Any] | None = None, source: str = NO_CONFIG_FILE):
        self._tables: dict[str, Any] = dict(tables or {})
        self.source = source

    @property
    def tables(self) -> dict[str, Any]:
        """All tables (a copy)."""
        return dict(self._tables)

    def section(self, name: str) -> dict[str, Any]:
        """The raw table ``name`` (empty when absent)."""
        value = self._tables.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.source}: [{name}] must be a table, got {value!r}")
        return dict(value)

    def model(self, name: str, model: type[_M]) -> _M:
        """Validate table ``name`` with ``model``; errors name the file, table and key."""
        try:
            return model.model_validate(self.section(name))
        except ValidationError as exc:
            problems = []
            for err in exc.errors(include_url=False):
                key = ".".join(str(p) for p in err["loc"])
                problems.append(f"{name}.{key}: {err['msg']}")
            raise ConfigError(
                f"invalid configuration in {self.source}, table [{name}]: " + "; ".join(problems)
            ) from None


def _apply_env(tables: dict[str, Any], environ: Mapping[str, str]) -> None:
    for key, raw in environ.items():
        if not key.startswith(_ENV_PREFIX) or "__" not in key:
            continue
        rest = key[len(_ENV_PREFIX) :]
        if rest in _RESERVED_ENV:
            continue
        table, _, name = rest.partition("__")
        if not table or not name:
            continue
        section = tables.setdefault(table.lower(), {})
        if isinstance(section, dict):
            section[name.lower()] = _parse_env_value(raw)


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load the configuration file (see the module docs) and apply environment overrides."""
    env = os.environ if environ is None else environ
    base = Path(cwd) if cwd is not None else Path.cwd()
    found = find_config(path, cwd=base, environ=env)
    tables: dict[str, Any] = {} if found is None else found.tables
    source = NO_CONFIG_FILE if found is None else found.source
    _apply_env(tables, env)
    return Settings(tables, source)
