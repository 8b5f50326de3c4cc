"""``[redis]``: where the event log lives and how long it is kept."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["RedisSettings"]


class RedisSettings(BaseModel):
    """The ``[redis]`` table. Without ``url`` the plugin stays inactive (in-memory sink).

    Every key can be overridden from the environment: ``AGENTENGINE_REDIS__URL=redis://...``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS); None: plugin inactive.
    url: str | None = None
    #: Prefix of every key the plugin writes (no ``{`` or ``}``: those mark hash tags).
    key_prefix: str = "agentengine:"
    #: Events kept per user: exactly the newest ``retention`` (the resume window).
    retention: int = Field(default=10_000, ge=1)
    #: Seconds a user's stream is kept after its last event (then it expires as a whole).
    retention_seconds: float = Field(default=86_400.0, gt=0)
    #: Most events sent in one batch (one pipelined script call per user in it).
    batch_size: int = Field(default=256, ge=1, le=10_000)
    #: Events, and bytes (``wire_size``), buffered in this process while Redis is slow or
    #: unreachable; beyond either, new events are dropped and subscribers get ``events_lost``.
    buffer_events: int = Field(default=100_000, ge=1)
    buffer_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    #: Milliseconds one blocking read waits for new entries (``XREAD BLOCK``).
    block_ms: int = Field(default=2_000, ge=10, le=60_000)
    #: Seconds to connect, and to wait for a reply of a non-blocking command.
    connect_timeout: float = Field(default=2.0, gt=0)
    socket_timeout: float = Field(default=5.0, gt=0)
    #: Connections of the shared pool (catch-up reads, appends, health checks); callers wait
    #: for a free one rather than fail. The blocking reader has a connection of its own.
    max_connections: int = Field(default=32, ge=2)
    #: Seconds between health checks (``PING``) while the server runs.
    health_interval: float = Field(default=1.0, gt=0)
    #: Runs shared by every process on this Redis: their records (``factory.runs``: any
    #: instance answers ``GET /v1/runs/{id}`` for any run of the caller). See
    #: docs/scale-out.md, "Runs on Redis".
    queue: bool = False
    #: Seconds a worker may go silent before the slots of its runs are taken as free (it
    #: renews them every third of this).
    lease: float = Field(default=30.0, gt=0)
    #: Runs of one user waiting for a slot (``[engine] max_concurrent_per_user``) across all
    #: instances; beyond it a new run is refused (429).
    max_queued_per_user: int = Field(default=100, ge=1)
    #: Agents whose runs are executed again when their worker is lost, by agent name: the
    #: most attempts in all (e.g. ``{ summarize = 3 }``). Off for every other agent: a run's
    #: tools may have had side effects, so by default a lost run ends ``failed``
    #: (``WorkerLostError``). Decided when the run is queued. From the environment:
    #: ``AGENTENGINE_REDIS__RETRY_ON_WORKER_LOSS="summarize=3,translate=2"`` (or JSON).
    retry_on_worker_loss: dict[str, int] = Field(default_factory=dict)

    @field_validator("key_prefix")
    @classmethod
    def _no_hash_tag(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError(
                "must not contain '{' or '}': keys are hash-tagged by user ({user}), and a "
                "tag in the prefix would put every user in one Redis Cluster slot"
            )
        return value

    @field_validator("retry_on_worker_loss", mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("{"):
            import json

            try:
                return json.loads(text)
            except ValueError as exc:
                raise ValueError(f"not a JSON object of agent names to attempts: {exc}") from None
        pairs: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, attempts = part.partition("=")
            if not sep or not name.strip():
                raise ValueError(
                    f"expected agent=attempts pairs separated by commas (e.g. "
                    f"'summarize=3,translate=2'), got {value!r}"
                )
            pairs[name.strip()] = attempts.strip()
        return pairs

    @field_validator("retry_on_worker_loss")
    @classmethod
    def _attempts(cls, value: dict[str, int]) -> dict[str, int]:
        for name, attempts in value.items():
            if not 1 <= attempts <= 100:
                raise ValueError(
                    f"agent {name!r}: the most attempts must be 1 to 100 (1: never retried), "
                    f"got {attempts}"
                )
        return value

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"must start with redis://, rediss:// or unix:// (got {_safe_url(value)!r}), "
                "e.g. redis://127.0.0.1:6379/0"
            )
        return value

    def public(self) -> dict[str, Any]:
        """The settings without secrets (the URL's password masked)."""
        data = self.model_dump()
        data["url"] = _safe_url(self.url) if self.url else None
        return data


def _safe_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: never log a secret."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user, colon, _ = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"
