"""Structured logging through structlog.

The library configures nothing globally: it logs through ``structlog.get_logger`` and binds
``user_id``, ``run_id`` and ``agent`` with contextvars for the length of each run, so every line
logged during a run (by the engine, a plugin or an agent) carries them, and only them.

Applications that want agentengine's setup call ``agentengine.logging.configure(json=...)``,
which also installs ``redact_secrets``: values of keys that look like secrets (token, password,
api_key, authorization, secret, ...) are replaced by ``"[redacted]"``.
"""

from __future__ import annotations

import contextvars
import logging as _stdlib_logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["REDACTED", "bind_run", "configure", "get_logger", "redact_secrets", "unbind_run"]

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(token|password|passwd|api[_-]?key|authorization|secret|credential|cookie|private[_-]?key)",
    re.IGNORECASE,
)


def get_logger(name: str = "agentengine", **initial: Any) -> Any:
    """A structlog logger (``log.info("event", key=value)``)."""
    return structlog.get_logger(name, **initial)


_Var = contextvars.ContextVar[Any]
_Token = contextvars.Token[Any]
_run_vars: tuple[_Var, _Var, _Var] | None = None
RunTokens = tuple[_Token, _Token, _Token]


def bind_run(user_id: str, run_id: str, agent: str) -> RunTokens:
    """Bind a run's ids for structlog (what ``bind_contextvars(user_id=..., run_id=...,
    agent=...)`` does); undo with ``unbind_run(tokens)``.

    structlog keeps one ``ContextVar`` per key and reuses it; the first call goes through
    ``bind_contextvars`` and keeps those variables (``Token.var``), later calls set them
    directly, at a sixth of the cost, which matters on the run path.
    """
    global _run_vars  # noqa: PLW0603 - a cache of structlog's variables, filled once
    run_vars = _run_vars
    if run_vars is None:
        tokens = structlog.contextvars.bind_contextvars(user_id=user_id, run_id=run_id, agent=agent)
        _run_vars = (tokens["user_id"].var, tokens["run_id"].var, tokens["agent"].var)
        return (tokens["user_id"], tokens["run_id"], tokens["agent"])
    return (run_vars[0].set(user_id), run_vars[1].set(run_id), run_vars[2].set(agent))


def unbind_run(tokens: RunTokens) -> None:
    """Restore what ``bind_run`` replaced."""
    for token in reversed(tokens):
        token.var.reset(token)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else _redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact(v) for v in value)
    return value


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace values of secret-looking keys, nested ones included."""
    for key in list(event_dict):
        if key != "event" and _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            value = event_dict[key]
            if isinstance(value, dict | list | tuple):
                event_dict[key] = _redact(value)
    return event_dict


def configure(
    *, json: bool = False, level: int | str = "INFO", stream: TextIO | None = None
) -> None:
    """Configure structlog for an application: contextvars merged, secrets redacted,
    JSON lines (``json=True``) or a readable console format, at ``level`` and above."""
    if isinstance(level, str):
        numeric = _stdlib_logging.getLevelName(level.upper())
        if not isinstance(numeric, int):
            raise ValueError(  # noqa: TRY004 - a bad value, not a bad type
                f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR"
            )
        level = numeric
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
