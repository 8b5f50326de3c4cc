"""The ``[server]`` table of the configuration, validated with pydantic.

Every key can be overridden from the environment (``AGENTENGINE_SERVER__SEND_BUFFER=256``).
The JWT secret is never read from the file: it comes from ``AGENTENGINE_JWT_SECRET`` only.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["JWT_SECRET_ENV", "MIN_SECRET_BYTES", "RUN_RECORD_KEYS", "ServerSettings"]

#: The environment variable holding the HS256 secret.
JWT_SECRET_ENV = "AGENTENGINE_JWT_SECRET"  # noqa: S105 - a variable name, not a secret
#: Shorter secrets are refused: HS256 wants at least as many bytes as the hash output.
MIN_SECRET_BYTES = 32
#: Keys of the ``[server]`` table that are aliases of the ``[engine]`` keys of the same name
#: (the bounds of run records, which the core keeps): set here, they replace the engine's.
RUN_RECORD_KEYS = frozenset(
    {"finished_runs_kept", "max_finished_runs", "finished_runs_max_bytes", "finished_runs_ttl"}
)


class ServerSettings(BaseModel):
    """Limits and timings of the server (the ``[server]`` table)."""

    model_config = ConfigDict(extra="forbid")

    send_buffer: int = Field(default=1024, ge=1)
    """Event frames buffered per connection; a client that falls further behind is closed
    (WebSocket code 1013) and resumes by cursor."""
    send_buffer_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    """Bytes of event frames buffered per connection (one frame larger than that still goes
    through): a connection whose buffer is full catches up from the event sink instead, so a
    client that stops reading holds at most this much, however large the events."""
    frame_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    """Bytes of encoded event frames kept for reuse (each event is encoded once for all of
    its user's connections); the oldest go first. 0: encode for every connection."""
    slow_client_timeout: float = Field(default=5.0, gt=0)
    """How long a full send buffer may stay full before the client counts as too slow."""
    max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    """Largest WebSocket frame a client may send; bigger ones close the connection with 1009."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest HTTP request body (``POST /v1/runs``)."""
    max_json_depth: int = Field(default=64, ge=1, le=512)
    """How deep a run's ``input`` (and any JSON a client sends, below its top-level object) may
    nest objects and arrays; deeper is refused with 422 ``nested_too_deep``."""
    max_input_bytes: int = Field(default=256 * 1024, ge=64)
    """Largest run ``input``, measured as compact UTF-8 JSON; bigger is refused with 413
    ``input_too_large`` (REST) or an error frame (WebSocket). The input is kept by its run and
    its ``agent_started`` event, so this bounds what one run start can make the server hold."""
    max_connections_per_user: int = Field(default=32, ge=0)
    """Event streams (WebSocket and SSE together) one user may hold open in this process; one
    more is refused: SSE with 429 ``too_many_connections``, a WebSocket closed with 4429 right
    after its handshake. 0: no limit."""
    keepalive_interval: float = Field(default=15.0, gt=0)
    """Seconds between SSE keep-alive comments on an idle stream."""
    finished_runs_kept: int = Field(default=1000, ge=1)
    """Finished runs remembered per user for ``GET /v1/runs/{run_id}``. This key and the three
    below are aliases of the ``[engine]`` keys of the same names (the core keeps the records):
    only when set here do they replace the engine's; the defaults shown are the engine's."""
    max_finished_runs: int = Field(default=50_000, ge=1)
    """Finished runs remembered over all users; past it, the least recently active users'
    oldest records are dropped first (a record without its output is about 0.5 KiB)."""
    finished_runs_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Bytes of finished-run records over all users (each counted as its output and error as
    JSON plus 1 KiB); past it, the least recently active users' oldest records go first."""
    finished_runs_ttl: float | None = Field(default=3600.0, gt=0)
    """Seconds after a user's last run started or ended before the server forgets that user
    (records and table entry); never while one of their runs is going. None: never."""
    trim_memory: bool = True
    """After the server did work, return freed heap memory to the operating system now and
    then (glibc ``malloc_trim``; nothing elsewhere), so RSS comes down after a burst."""
    dev_token_ttl: float = Field(default=3600.0, gt=0)
    """Lifetime in seconds of tokens minted by ``POST /v1/dev/token`` (``--dev`` only)."""
    shutdown_flush_timeout: float = Field(default=5.0, ge=0)
    """After runs drained, how long connections may take to flush their last frames."""
    ws_per_message_deflate: bool = True
    """Offer per-message compression to WebSocket clients."""
