"""agentengine-redis: each user's event stream on Redis Streams, shared by every process.

Set the URL in ``agentengine.toml`` (or ``AGENTENGINE_REDIS__URL``)::

    [redis]
    url = "redis://127.0.0.1:6379/0"

and every ``agentengine serve`` process using it serves the same users: a run started on one
is streamed to that user's clients on all of them, and a client resumes by cursor anywhere.
See ``docs/scale-out.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine_redis.config import RedisSettings
    from agentengine_redis.plugin import RedisPlugin
    from agentengine_redis.runs import RedisRunRegistry
    from agentengine_redis.sink import RedisEventSink

# Imported on first use: every `agentengine` command loads the entry point
# (``agentengine_redis:RedisPlugin``), which must not import redis-py.
_EXPORTS = {
    "RedisEventSink": "agentengine_redis.sink",
    "RedisPlugin": "agentengine_redis.plugin",
    "RedisRunRegistry": "agentengine_redis.runs",
    "RedisSettings": "agentengine_redis.config",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["RedisEventSink", "RedisPlugin", "RedisRunRegistry", "RedisSettings"]
