"""The adapter tests' shared pieces (tests/framework_helpers.py, used by every adapter's tests)."""

from framework_helpers import (
    TOOLS,
    Plugin,
    broken,
    dotted_add,
    factory,
    forecast,
    pairs_keyed_by_call_id,
    run_once,
    shape,
    whoami,
)

__all__ = [
    "TOOLS",
    "Plugin",
    "broken",
    "dotted_add",
    "factory",
    "forecast",
    "pairs_keyed_by_call_id",
    "run_once",
    "shape",
    "whoami",
]
