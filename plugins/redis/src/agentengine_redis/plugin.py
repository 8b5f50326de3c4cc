"""``RedisPlugin``: reads ``[redis]``, provides the Redis event sink, reports its health."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agentengine import hookimpl

if TYPE_CHECKING:
    from agentengine import EngineSettings, EventSink, Settings

    from agentengine_redis.config import RedisSettings
    from agentengine_redis.runs import RedisRunRegistry
    from agentengine_redis.sink import RedisEventSink

# The entry point loads this module for every factory and `agentengine --help`: redis-py,
# pydantic and the sink are imported only when a factory is configured with a URL.

__all__ = ["RedisPlugin"]


class RedisPlugin:
    """Each user's event stream on Redis Streams, shared by every process using the same URL.

    Configured from ``[redis]`` (``url`` unset: inactive, the in-memory sink stays), or
    explicitly with ``RedisPlugin(config=...)`` (a ``RedisSettings`` or the same data as a
    dict), which then takes precedence over the file.
    """

    name = "redis"

    def __init__(self, config: RedisSettings | Mapping[str, Any] | None = None) -> None:
        self._explicit: RedisSettings | None = None
        if config is not None:
            from agentengine_redis.config import RedisSettings

            self._explicit = (
                config if isinstance(config, RedisSettings) else RedisSettings(**dict(config))
            )
        self.settings: RedisSettings | None = self._explicit
        #: The sink this plugin gave the factory (None while inactive).
        self.sink: RedisEventSink | None = None
        #: The run registry this plugin gave the factory (None unless ``queue``).
        self.runs: RedisRunRegistry | None = None

    @hookimpl
    def agentengine_configure(self, settings: Settings) -> None:
        """Read ``[redis]`` unless the plugin was configured explicitly."""
        from agentengine_redis.config import RedisSettings

        if self._explicit is None:
            self.settings = settings.model("redis", RedisSettings)

    @hookimpl
    def agentengine_event_sink(self, settings: Settings) -> RedisEventSink | None:
        """The Redis sink when ``[redis] url`` is set; None (in-memory sink) otherwise."""
        if self.settings is None or self.settings.url is None:
            return None
        from agentengine_redis.sink import RedisEventSink

        self.sink = RedisEventSink(self.settings)
        return self.sink

    @hookimpl
    def agentengine_run_registry(
        self, settings: Settings, engine_settings: EngineSettings, events: EventSink
    ) -> RedisRunRegistry | None:
        """With ``[redis] queue = true``: the run records on Redis, read by every process
        (None, the in-memory registry, otherwise). Needs this plugin's sink."""
        if self.settings is None or self.settings.url is None or not self.settings.queue:
            return None
        from agentengine import ConfigError

        from agentengine_redis.runs import RedisRunRegistry
        from agentengine_redis.sink import RedisEventSink

        if not isinstance(events, RedisEventSink) or events is not self.sink:
            raise ConfigError(
                "[redis] queue = true needs the Redis event sink, but another plugin's sink "
                f"({type(events).__name__}) was chosen: disable that plugin or set queue = false"
            )
        self.runs = RedisRunRegistry(engine_settings, events)
        return self.runs

    @hookimpl
    def agentengine_cli_commands(self) -> list[Any]:
        """``agentengine worker``: executes the runs queued on Redis (also declared in
        entry-point group ``agentengine.commands``: ``worker_command`` makes one object)."""
        from agentengine_redis.worker import worker_command

        return [worker_command()]

    @hookimpl
    def agentengine_status(self) -> list[dict[str, Any]]:
        """Reachable or not, server version, persistence; ``ready`` is False while Redis is
        unreachable (``/healthz`` then answers 503 ``degraded``). With ``queue``, a second
        item: the queue's figures (``agentengine_redis.figures``)."""
        items = self._connection_status()
        if self.settings is not None and self.settings.url is not None and self.settings.queue:
            items.append(self._queue_status())
        return items

    def _queue_status(self) -> dict[str, Any]:
        """The queue's figures: read now on a command line; in a running server, as the last
        ``GET /metrics`` read them (a status report must not wait for Redis)."""
        import asyncio

        from agentengine_redis.figures import describe

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            figures: dict[str, float] | None = asyncio.run(self._read_figures())
        else:
            figures = self.runs.last_figures if self.runs is not None else None
        if not figures:
            return {
                "name": "redis-queue",
                "state": "unknown",
                "detail": "the queue's figures could not be read (Redis unreachable), or no "
                "GET /metrics has read them yet",
            }
        return {"name": "redis-queue", "state": "ok", "detail": describe(figures), **figures}

    async def _read_figures(self) -> dict[str, float] | None:
        from redis.asyncio import Redis

        from agentengine_redis.figures import queue_figures
        from agentengine_redis.layout import WORK_GROUP

        assert self.settings is not None
        assert self.settings.url is not None
        timeout = self.settings.connect_timeout
        redis = Redis.from_url(
            self.settings.url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            return await queue_figures(redis, self.settings.key_prefix, WORK_GROUP)
        except Exception:
            return None  # the connection item says why
        finally:
            await redis.aclose()

    def _connection_status(self) -> list[dict[str, Any]]:
        if self.settings is None or self.settings.url is None:
            return [
                {
                    "name": "redis",
                    "state": "inactive",
                    "detail": "[redis] url is not set: events stay in this process's memory",
                }
            ]
        if self.sink is None:  # configured, but another plugin's sink won
            from agentengine_redis.sink import RedisEventSink

            return [RedisEventSink(self.settings).status()]
        return [self.sink.status()]
