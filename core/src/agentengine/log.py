"""Structured logging through structlog.

The library configures nothing globally: it logs through ``structlog.get_logger`` and binds
``user_id``, ``run_id`` and ``agent`` with contextvars for the length of each run, so every line
logged during a run (by the engine, a plugin or an agent) carries them, and only them.

Applications that want agentengine's setup call ``agentengine.log.configure(json=...)``,
which also installs ``redact_secrets``: values of keys that look like secrets (token, password,
api_key, authorization, secret, ...) are replaced by ``"[redacted]"``.

Applications that log through the standard library instead call
``agentengine.log.configure(stdlib=True)``: every structlog line then becomes a
``logging.LogRecord`` of the logger of the same name (``agentengine.runtime.factory``, ...),
handled by the application's own handlers, formatters and levels, with the line's fields as
record attributes (``user_id``, ``run_id`` and ``agent`` always present, None outside a run)
and secrets redacted first. ``RunIdsFilter`` gives the application's own records logged during
a run the same three attributes. Applications that configure structlog themselves keep their
configuration; they add ``merge_contextvars`` (for the ids) and ``redact_secrets`` to their
processors (see docs/embedding.md, "Logs in your application's logging").

When an OpenTelemetry trace is active (an SDK installed, see docs/observability.md), lines
logged inside a run also carry ``trace_id`` and ``span_id`` (``add_trace_ids``, installed by
``configure``), so a log line leads to its run's trace and back.

(Named ``log`` rather than ``logging`` so as not to shadow the standard library module;
``agentengine.logging`` remains as a deprecated alias.)
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from agentengine.telemetry import current_trace_ids

__all__ = [
    "AGENT_VAR",
    "REDACTED",
    "RUN_ID_VAR",
    "RUN_IDS",
    "USER_ID_VAR",
    "RunIdsFilter",
    "add_trace_ids",
    "configure",
    "get_logger",
    "redact_secrets",
    "to_stdlib_record",
]

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(token|password|passwd|api[_-]?key|authorization|secret|credential|cookie|private[_-]?key)",
    re.IGNORECASE,
)


def get_logger(name: str = "agentengine", **initial: Any) -> Any:
    """A structlog logger (``log.info("event", key=value)``)."""
    return structlog.get_logger(name, **initial)


def _structlog_variables() -> tuple[contextvars.ContextVar[Any], ...]:
    """structlog's own context variables for a run's ids.

    ``bind_contextvars`` keeps one ``ContextVar`` per key and reuses it; binding once (and
    resetting at once) hands them over (``Token.var``), so runs can set them directly at a
    sixth of the cost of ``bind_contextvars``/``reset_contextvars``, which matters on the run
    path. Lines logged during a run carry the values as if bound with ``bind_contextvars``.
    """
    tokens = structlog.contextvars.bind_contextvars(user_id=None, run_id=None, agent=None)
    structlog.contextvars.reset_contextvars(**tokens)
    return tuple(tokens[key].var for key in ("user_id", "run_id", "agent"))


#: The variables binding ``user_id``, ``run_id`` and ``agent`` for the length of a run.
USER_ID_VAR, RUN_ID_VAR, AGENT_VAR = _structlog_variables()


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


def add_trace_ids(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` (hex, as trace backends show them)
    of the current OpenTelemetry span, when one is recording (inside a traced run, its
    span or its tool call's). Costs a dictionary lookup while OpenTelemetry is not loaded."""
    ids = current_trace_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


#: The fields a run binds on every line logged during it.
RUN_IDS = ("user_id", "run_id", "agent")

# Attributes of every LogRecord (and those logging's formatters add): a field of that name
# cannot go into ``extra`` (logging raises KeyError), so it stays in the message only.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# Keyword arguments of logging.Logger.log, taken from the event dict as structlog does.
_LOG_KWARGS = ("exc_info", "stack_info", "stacklevel")


def _shown(value: Any) -> str:
    text = str(value)
    return repr(value) if not text or any(c.isspace() or c in "='\"" for c in text) else text


def to_stdlib_record(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    """structlog processor, last in the chain: the keyword arguments of a standard library
    logging call, so that the application's handlers format the line.

    The message is the event followed by its fields as ``key=value`` (readable by any
    formatter, ``%(message)s``); the fields are also record attributes (``extra``, for JSON
    formatters and filters), with ``user_id``, ``run_id`` and ``agent`` always set (None
    outside a run) so that ``%(run_id)s`` formats every record. A field named like a
    ``LogRecord`` attribute (``name``, ``module``, ...) is in the message only.
    ``exc_info``/``stack_info`` go to logging, which renders the traceback."""
    fields = dict(event_dict)
    kwargs: dict[str, Any] = {key: fields.pop(key) for key in _LOG_KWARGS if key in fields}
    event = fields.pop("event", "")
    fields.pop("level", None)  # the record's levelname says it
    # The run's ids last, in one order, whatever order the context variables merged in.
    ordered = [k for k in fields if k not in RUN_IDS] + [k for k in RUN_IDS if k in fields]
    shown = " ".join(f"{key}={_shown(fields[key])}" for key in ordered)
    extra = dict.fromkeys(RUN_IDS)
    extra.update((k, v) for k, v in fields.items() if k not in _RECORD_ATTRS)
    kwargs["msg"] = f"{event} {shown}" if shown else str(event)
    kwargs["extra"] = extra
    return kwargs


class RunIdsFilter(logging.Filter):
    """A ``logging.Filter`` giving every record ``user_id``, ``run_id`` and ``agent``: those of
    the run it was logged in (None outside a run), unless the record has them already.

    Add it to a handler (``handler.addFilter(RunIdsFilter())``) so that records the
    application logs through the standard library during a run (in a tool, an extension,
    a request_scope resource) carry the run's ids as agentengine's own lines do, and a
    format such as ``"%(levelname)s %(run_id)s %(message)s"`` works for every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, var in zip(RUN_IDS, (USER_ID_VAR, RUN_ID_VAR, AGENT_VAR), strict=True):
            if getattr(record, key, None) is None:
                value = var.get(None)
                setattr(record, key, None if value is Ellipsis else value)
        return True


def _numeric_level(level: int | str) -> int:
    if isinstance(level, int):
        return level
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(  # noqa: TRY004 - a bad value, not a bad type
            f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR"
        )
    return numeric


def configure(
    *,
    json: bool = False,
    level: int | str | None = None,
    stream: TextIO | None = None,
    stdlib: bool = False,
) -> None:
    """Configure structlog for an application: contextvars merged, secrets redacted.

    By default lines are written to ``stream`` (standard error): JSON lines (``json=True``)
    or a readable console format, at ``level`` (INFO by default) and above.

    With ``stdlib=True`` lines go to the standard library's ``logging`` instead, as records
    of the logger named like the structlog logger (``agentengine.*`` for the library's own),
    formatted and filtered by the application's handlers (see ``to_stdlib_record``);
    ``level`` (by default none: logging's levels decide) drops lower lines before they
    reach logging. ``json`` and ``stream`` do not apply then: the handlers format.
    """
    if stdlib:
        if json or stream is not None:
            raise ValueError(
                "configure(stdlib=True) hands lines to logging's handlers, which format and "
                "write them: drop json= and stream= (use a JSON formatter on the handler)"
            )
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                add_trace_ids,
                redact_secrets,
                to_stdlib_record,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(
                logging.NOTSET if level is None else _numeric_level(level)
            ),
            logger_factory=structlog.stdlib.LoggerFactory(),
            cache_logger_on_first_use=False,
        )
        return
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.INFO if level is None else _numeric_level(level)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
