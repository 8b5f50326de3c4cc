"""The kit as a pytest plugin: loaded through its entry point in a separate pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SESSION = '''
import pytest

from agentengine import RunContext, agent, hookimpl
from agentengine.testing import run_agent

made = []


@agent(name="hello")
async def hello(run: RunContext) -> str:
    """Say hello."""
    return "hello " + run.user_id


class Hello:
    name = "hello"

    @hookimpl
    def agentengine_register_agents(self, registry):
        registry.add(hello)


pytestmark = pytest.mark.agentengine(plugins=[Hello()], run_timeout=9.0)


async def test_module_marker_applies(engine_factory):
    made.append(engine_factory)
    result, _ = await run_agent(engine_factory, "hello", user="zoe")
    assert result.output == "hello zoe"
    assert engine_factory.engine_settings.run_timeout == 9.0


def test_the_factory_was_shut_down_after_the_test():
    assert len(made) == 1
    assert made[0].closed


@pytest.mark.agentengine(run_timeout=4.0)
async def test_closest_marker_wins_per_keyword(engine_factory):
    assert engine_factory.engine_settings.run_timeout == 4.0
    assert "hello" in engine_factory.agents


@pytest.mark.agentengine(Hello())
async def test_positional_marker_arguments_are_refused(engine_factory):
    pass


@pytest.mark.parametrize("n", [1, 2])
async def test_parametrized(engine_factory, n):
    assert n in (1, 2)


class TestInAClass:
    async def test_method(self, engine_factory, user_context):
        result, _ = await run_agent(engine_factory, "hello", user=user_context("amy"))
        assert result.output == "hello amy"
'''


def pytest_run(
    tmp_path: Path, source: str, *args: str, ini: str = ""
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_session.py").write_text(textwrap.dedent(source))
    (tmp_path / "pytest.ini").write_text(f"[pytest]\n{ini}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTENGINE_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_kit_loads_by_entry_point_and_its_fixtures_behave(tmp_path: Path) -> None:
    done = pytest_run(tmp_path, SESSION)
    out = done.stdout
    assert "PASSED test_session.py::test_module_marker_applies" in out, out
    assert "PASSED test_session.py::test_the_factory_was_shut_down_after_the_test" in out
    assert "PASSED test_session.py::test_closest_marker_wins_per_keyword" in out
    assert "PASSED test_session.py::test_parametrized[asyncio-1]" in out
    assert "PASSED test_session.py::test_parametrized[asyncio-2]" in out
    assert "PASSED test_session.py::TestInAClass::test_method" in out
    assert "ERROR test_session.py::test_positional_marker_arguments_are_refused" in out
    assert "@pytest.mark.agentengine takes keyword arguments only" in out
    assert "6 passed, 1 error" in out


def test_automatic_async_marking_can_be_turned_off(tmp_path: Path) -> None:
    source = """
    async def test_not_run():
        pass
    """
    done = pytest_run(tmp_path, source, ini="agentengine_auto_async = false")
    assert done.returncode != 0
    assert "async def functions are not natively supported" in done.stdout


def test_core_does_not_import_pytest_at_run_time() -> None:
    code = (
        "import sys; import agentengine, agentengine.legacy, agentengine.testing.conformance, "
        "agentengine.cli.scaffold, agentengine.request_scope, agentengine.cli.main; "
        "print('pytest' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_the_pytest_plugin_imports_no_engine_until_a_fixture_is_used() -> None:
    """pytest loads the kit in every session of an environment with agentengine-core
    installed: loading it must not import the engine, pydantic models or the plugins."""
    code = (
        "import sys, agentengine.testing.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.startswith('agentengine.') "
        "and m.split('.')[1] in ('runtime', 'definitions', 'plugins', 'sinks', 'config')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
