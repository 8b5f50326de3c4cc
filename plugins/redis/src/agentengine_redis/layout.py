"""Where a user's events live in Redis, and the cursors that point into them.

Each user has two keys, hash-tagged by user so that one Lua script may touch both (also on
Redis Cluster): ``<prefix>{<user>}:events``, a stream whose entry ids are ``<n>-0`` with
``n`` = 1, 2, 3 ... numbering the user's events without gaps, and ``<prefix>{<user>}:meta``, a
hash holding the log's ``epoch`` (random, chosen when the log is created), the ``last`` number
given and, per publishing process, the last batch it appended (for idempotent retries).

A cursor is ``<epoch>-<n>``: it names its log, so a cursor of a log that no longer exists
(expired, flushed, another database, another user) is told apart from one of the current log
instead of being misread. ``0`` means "everything retained".
"""

from __future__ import annotations

import re

__all__ = [
    "Cursor",
    "cancel_channel",
    "cursor_text",
    "lost_key",
    "invalid_cursor",
    "meta_key",
    "parse_cursor",
    "run_key_prefix",
    "runs_done_key",
    "runs_key",
    "stream_key",
    "work_key",
    "dead_key",
    "slots_key",
    "wait_key",
    "queue_users_key",
    "workers_key",
    "WORK_GROUP",
]

_CURSOR = re.compile(r"([0-9a-f]{8})-([0-9]{1,18})")

#: A parsed cursor: (epoch, n); epoch None for "0" or None (everything retained).
Cursor = tuple[str | None, int]


def _tag(user_id: str) -> str:
    # Injective, and free of braces so the hash tag is exactly the user: '%' first.
    return user_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def stream_key(prefix: str, user_id: str) -> str:
    """The stream of ``user_id``'s events."""
    return f"{prefix}{{{_tag(user_id)}}}:events"


def meta_key(prefix: str, user_id: str) -> str:
    """The hash describing ``user_id``'s log (epoch, last number, publishers' batches)."""
    return f"{prefix}{{{_tag(user_id)}}}:meta"


def run_key_prefix(prefix: str, user_id: str) -> str:
    """What a run record's key starts with: ``<prefix>{<user>}:run:`` then the run id (a hash
    holding the record as JSON, field ``r``)."""
    return f"{prefix}{{{_tag(user_id)}}}:run:"


def runs_key(prefix: str, user_id: str) -> str:
    """The sorted set of ``user_id``'s run ids, scored by creation time (what ``list`` reads)."""
    return f"{prefix}{{{_tag(user_id)}}}:runs"


def runs_done_key(prefix: str, user_id: str) -> str:
    """The sorted set of ``user_id``'s finished run ids, scored by end time (the oldest is
    dropped first beyond ``finished_runs_kept``)."""
    return f"{prefix}{{{_tag(user_id)}}}:runs:done"


def slots_key(prefix: str, user_id: str) -> str:
    """The user's concurrency slots: a sorted set of the run ids executing, scored by the
    expiry (ms, Redis ``TIME``) of their worker's lease. At most ``max_concurrent_per_user``."""
    return f"{prefix}{{{_tag(user_id)}}}:slots"


def wait_key(prefix: str, user_id: str) -> str:
    """The user's queued runs waiting for a slot, oldest first (a list of run ids)."""
    return f"{prefix}{{{_tag(user_id)}}}:wait"


#: The consumer group every worker reads the work stream through.
WORK_GROUP = "workers"


def work_key(prefix: str) -> str:
    """The stream of wake-ups (field ``u``: a user with queued runs), read by every worker
    through one consumer group. Not per user: workers read one stream."""
    return f"{prefix}queue:work"


def cancel_channel(prefix: str) -> str:
    """The pub/sub channel a cancel of a running run is announced on (JSON ``[user, run]``):
    the worker executing it stops it at once (it also sees the run's flag when it renews)."""
    return f"{prefix}queue:cancel"


def lost_key(prefix: str) -> str:
    """A counter of the runs whose worker was taken as lost (``INCR`` by the reaper)."""
    return f"{prefix}queue:lost"


def dead_key(prefix: str) -> str:
    """The stream of queued entries no worker could execute (fields ``w`` and ``reason``)."""
    return f"{prefix}queue:dead"


def workers_key(prefix: str) -> str:
    """The workers' heartbeats: a sorted set of worker names scored by the expiry (ms, Redis
    ``TIME``) of their lease; a worker is alive while its score is in the future."""
    return f"{prefix}workers"


def queue_users_key(prefix: str) -> str:
    """The users who queued runs (a sorted set scored by their last submission, ms): whose
    keys the queue's figures count (see ``figures``)."""
    return f"{prefix}queue:users"


def cursor_text(epoch: str, n: int) -> str:
    """The cursor of event ``n`` of the log ``epoch``."""
    return f"{epoch}-{n}"


def invalid_cursor(after: object, user_id: str) -> ValueError:
    """The error for a cursor that is not one (the in-memory sink's wording)."""
    return ValueError(
        f"invalid cursor {after!r} for user {user_id!r}: pass the 'cursor' of an event "
        "this sink delivered, or None for everything retained"
    )


def parse_cursor(after: str | None, user_id: str) -> Cursor:
    """``after`` as (epoch, n); ``ValueError`` naming it when it is not a cursor."""
    if after is None or after == "0":
        return None, 0
    if isinstance(after, str) and after.isascii() and after.isdigit() and len(after) <= 18:
        return "", int(after)  # a bare number: of another log (the older cursor form)
    match = _CURSOR.fullmatch(after) if isinstance(after, str) else None
    if match is None:
        raise invalid_cursor(after, user_id)
    return match.group(1), int(match.group(2))
