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


BROKEN = '''
import pytest

from agentengine import RunContext, agent, hookimpl
from agentengine.testing import run_agent


@agent(name="broken_weather")
async def broken_weather(run: RunContext) -> str:
    """Never reached."""
    return "sunny"


class Misspelled:
    name = "misspelled"

    @hookimpl
    def agentengine_register_agent(self, registry):  # the hook is agentengine_register_agents
        registry.add(broken_weather)


class Raising:
    name = "raising"

    @hookimpl
    def agentengine_register_agents(self, registry):
        raise RuntimeError("the weather service key is missing")


@pytest.mark.agentengine(plugins=[Misspelled()])
async def test_misspelled_hook(engine_factory):
    await run_agent(engine_factory, "broken_weather")


@pytest.mark.agentengine(plugins=[Raising()])
async def test_raising_hook(engine_factory):
    pass


async def test_made_factory(make_engine_factory):
    make_engine_factory(plugins=[Raising()])


@pytest.mark.agentengine(plugins=[Raising()], strict_plugins=False)
async def test_lenient_when_asked(engine_factory):
    (info,) = engine_factory.plugins.errors
    assert "the weather service key is missing" in info.error
'''


def test_a_plugin_that_fails_to_register_fails_the_test_with_its_cause(tmp_path: Path) -> None:
    done = pytest_run(tmp_path, BROKEN)
    out = done.stdout
    assert "ERROR test_session.py::test_misspelled_hook" in out, out
    assert "unknown hook(s) agentengine_register_agent" in out
    assert "no agent named" not in out
    assert "ERROR test_session.py::test_raising_hook" in out
    assert "FAILED test_session.py::test_made_factory" in out
    assert out.count("RuntimeError: the weather service key is missing") >= 2
    assert "PASSED test_session.py::test_lenient_when_asked" in out
    assert "1 failed, 1 passed, 2 errors" in out


def test_assert_plugin_conforms_lists_every_problem(tmp_path: Path) -> None:
    source = """
    from agentengine import hookimpl
    from agentengine.testing import assert_plugin_conforms


    class Sloppy:
        @hookimpl
        def agentengine_register_agent(self, registry):
            pass

        def agentengine_register_tools(self, registry):
            pass


    def test_conforms():
        assert_plugin_conforms(Sloppy())
    """
    done = pytest_run(tmp_path, source)
    assert "1. agentengine_register_agent is not a hook" in done.stdout, done.stdout
    assert "2. agentengine_register_tools is not marked @hookimpl" in done.stdout
