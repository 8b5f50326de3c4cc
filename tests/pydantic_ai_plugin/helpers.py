"""The adapter tests' shared pieces (tests/framework_helpers.py, used by every adapter's tests)."""

from framework_helpers import (
    TOOLS,
    MiddlewarePlugin,
    Plugin,
    Recorder,
    assert_bad_table,
    broken,
    cancelled_when,
    dotted_add,
    factory,
    forecast,
    pairs_keyed_by_call_id,
    run_once,
    shape,
    twenty_users_whoami,
    whoami,
)

__all__ = [
    "TOOLS",
    "assert_bad_table",
    "MiddlewarePlugin",
    "Plugin",
    "Recorder",
    "broken",
    "cancelled_when",
    "dotted_add",
    "factory",
    "forecast",
    "pairs_keyed_by_call_id",
    "run_once",
    "shape",
    "twenty_users_whoami",
    "whoami",
]
