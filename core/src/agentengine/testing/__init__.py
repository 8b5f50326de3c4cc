"""The pytest kit for plugin authors, registered as the ``agentengine`` pytest plugin.

Installing ``agentengine-core`` makes these fixtures available in every test session (through
the ``pytest11`` entry point, module ``agentengine.testing.pytest_plugin``); the helpers are
imported from here. Only the pytest plugin imports pytest, and it imports the engine only when a
test uses one of its fixtures.

Fixtures
    ``engine_factory``   an ``ExecutionEngineFactory`` with exactly the plugins the test names
                         (``@pytest.mark.agentengine(plugins=[MyPlugin()], **factory_kwargs)``)
                         plus the built-ins; no entry-point loading unless the marker says
                         ``load_entrypoints=True``; no configuration file or environment
                         variables read; plugins load strictly (one that fails to load or
                         register fails the test with its cause; ``strict_plugins=False`` in
                         the marker to record it instead); shut down after the test. Async
                         tests only.
    ``make_engine_factory``  builds more such factories (``make_engine_factory(plugins=[...])``),
                         all shut down after the test.
    ``user_context``     a builder of valid contexts: ``user_context("alice")``,
                         ``user_context()`` (a fresh user), ``user_context.many(3)``.
    ``event_recorder``   every event of every engine of ``engine_factory``, per user
                         (requesting it adds one observer plugin to the factory).
    ``captured_logs``    the structlog entries logged during the test (a list of dicts).

Helpers
    ``run_agent(factory, agent, input, user=...)``  run once; returns ``(result, events)``.
    ``assert_event_sequence(events, ["agent_started", ...])``  with a readable diff; ``"..."``
                         matches any number of events.
    ``assert_run_invariants(events)``  the per-run protocol guarantees.
    ``assert_isolated(events_by_user)``  no event reached another user; every run is whole.
    ``capture_logs()``   context manager collecting structlog entries.
    ``check_plugin(plugin)`` / ``assert_plugin_conforms(plugin)``  conformance to the hooks.

Plain ``async def`` tests run on asyncio through anyio's pytest plugin when anyio is installed
and no other async plugin (pytest-asyncio, pytest-trio, anyio's auto mode) handles them; tests
already marked ``anyio`` are left alone. Set ``agentengine_auto_async = false`` in the pytest
ini options to mark tests yourself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine.testing.assertions import (
        ANY_EVENTS,
        assert_event_sequence,
        assert_isolated,
        assert_plugin_conforms,
        assert_run_invariants,
    )
    from agentengine.testing.conformance import check_plugin
    from agentengine.testing.helpers import (
        AgentRun,
        ContextBuilder,
        EventRecorder,
        capture_logs,
        run_agent,
    )

# Imported on first use, so that ``agentengine check-plugin`` (which needs only the conformance
# check) does not import the engine or pytest.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ANY_EVENTS": "agentengine.testing.assertions",
        "AgentRun": "agentengine.testing.helpers",
        "ContextBuilder": "agentengine.testing.helpers",
        "EventRecorder": "agentengine.testing.helpers",
        "assert_event_sequence": "agentengine.testing.assertions",
        "assert_isolated": "agentengine.testing.assertions",
        "assert_plugin_conforms": "agentengine.testing.assertions",
        "assert_run_invariants": "agentengine.testing.assertions",
        "capture_logs": "agentengine.testing.helpers",
        "check_plugin": "agentengine.testing.conformance",
        "run_agent": "agentengine.testing.helpers",
    },
)

__all__ = [
    "ANY_EVENTS",
    "AgentRun",
    "ContextBuilder",
    "EventRecorder",
    "assert_event_sequence",
    "assert_isolated",
    "assert_plugin_conforms",
    "assert_run_invariants",
    "capture_logs",
    "check_plugin",
    "run_agent",
]
