"""Describing the Redis server for ``agentengine plugins``: version and persistence."""

from __future__ import annotations

from typing import Any

__all__ = ["config_async", "config_sync", "describe_server"]


async def config_async(redis: Any) -> dict[str, str]:
    """``appendfsync`` and ``save`` (empty when ``CONFIG`` is not allowed)."""
    try:
        raw = await redis.config_get("appendfsync")
        raw.update(await redis.config_get("save"))
    except Exception:  # CONFIG may be disabled (managed Redis): INFO is enough
        return {}
    return {text_of(k): text_of(v) for k, v in raw.items()}


def config_sync(redis: Any) -> dict[str, str]:
    """``config_async`` for a synchronous client (the command line)."""
    try:
        raw = dict(redis.config_get("appendfsync"))
        raw.update(redis.config_get("save"))
    except Exception:
        return {}
    return {text_of(k): text_of(v) for k, v in raw.items()}


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def describe_server(
    info: dict[str, Any], persistence: dict[str, Any], config: dict[str, str]
) -> dict[str, str]:
    """Version and persistence in words: ``aof (appendfsync everysec) + rdb (save ...)``."""
    parts = []
    if str(persistence.get("aof_enabled", "0")) == "1":
        parts.append(f"aof (appendfsync {config.get('appendfsync', '?')})")
    save = config.get("save")
    if save:
        parts.append(f"rdb (save {save})")
    elif save is None:
        parts.append("rdb (save config unknown)")
    return {
        "version": str(info.get("redis_version", "?")),
        "persistence": " + ".join(parts) if parts else "none (a restart loses every event)",
    }
