"""check_plugin and `agentengine check-plugin`: every problem says what to change."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from agentengine import (
    ConfigError,
    Extension,
    RunContext,
    Tool,
    agent,
    hookimpl,
    tool,
)
from agentengine.testing import assert_plugin_conforms, check_plugin
from agentengine_testplugin import TestPlugin as ThirdPartyPlugin

AGENTENGINE = str(Path(sys.executable).with_name("agentengine"))


@tool
async def documented(x: int) -> int:
    """Return x."""
    return x


class Good:
    name = "good"

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        registry.add(documented)


def one(problems: list[str], *needles: str) -> str:
    matching = [p for p in problems if all(n in p for n in needles)]
    assert len(matching) == 1, f"no single problem with {needles} in {problems}"
    return matching[0]


def test_conforming_plugins_have_no_problem() -> None:
    from agentengine.cli.demo_plugin import DemoPlugin
    from agentengine.legacy import LegacyBridgePlugin
    from agentengine.request_scope import RequestScopePlugin
    from agentengine.testing import EventRecorder

    for own in (RequestScopePlugin(), LegacyBridgePlugin(print), EventRecorder(), DemoPlugin()):
        assert check_plugin(own) == [], own
    assert check_plugin(Good()) == []
    assert check_plugin(ThirdPartyPlugin()) == []
    assert check_plugin(ThirdPartyPlugin) == []  # a class is instantiated, like the factory does
    assert_plugin_conforms(Good())


def test_hook_names_markers_and_arguments() -> None:
    class Wrong:
        @hookimpl
        def agentengine_register_tool(self, registry: Any) -> None:  # missing "s"
            pass

        def agentengine_register_agents(self, registry: Any) -> None:  # no @hookimpl
            pass

        @hookimpl
        def agentengine_configure(self, config: Any) -> None:  # the argument is "settings"
            pass

        @hookimpl
        async def agentengine_cli_commands(self) -> list[Any]:
            return []

    problems = check_plugin(Wrong())
    assert len(problems) == 4, problems
    one(problems, "agentengine_register_tool ", "did you mean 'agentengine_register_tools'?")
    one(problems, "agentengine_register_agents is not marked @hookimpl", "never called")
    one(problems, "agentengine_configure asks for argument(s) 'config'", "arguments are: settings")
    one(problems, "agentengine_cli_commands is async", "hooks are synchronous")
    with pytest.raises(AssertionError, match=r"does not conform:\n  1\. "):
        assert_plugin_conforms(Wrong())


def test_a_plugin_without_hooks() -> None:
    one(check_plugin(object()), "implements no hook", "agentengine_register_tools")


def test_tools_and_agents() -> None:
    @tool
    async def undocumented(x: int) -> int:
        return x

    class StringArgs(Tool):
        def __init__(self) -> None:
            super().__init__("string_args", "Takes a string.", input_schema={"type": "string"})

        async def invoke(self, run: RunContext, args: dict[str, Any]) -> Any:
            return None

    class SyncInvoke(Tool):
        def __init__(self) -> None:
            super().__init__("has space", "Sync.")

        def invoke(self, run: RunContext, args: dict[str, Any]) -> Any:  # type: ignore[override]
            return None

    class NoInvoke(Tool):
        def __init__(self) -> None:
            super().__init__("no_invoke", "Nothing.", input_schema={
                "type": "object", "properties": {"a": 1}, "required": ["b"]})  # fmt: skip

    @agent(name="silent")
    async def silent(run: RunContext) -> None:
        pass

    class Tools:
        @hookimpl
        def agentengine_register_tools(self, registry: Any) -> None:
            for t in (undocumented, StringArgs(), SyncInvoke(), NoInvoke()):
                registry.add(t)

        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            registry.add(silent)

    problems = check_plugin(Tools())
    one(problems, "tool 'undocumented' has no description", "docstring")
    one(problems, "tool 'string_args'", '"type": "object"')
    one(problems, "tool 'has space'", "letters, digits")
    one(problems, "tool 'has space'", "invoke() must be 'async def'")
    one(problems, "tool 'no_invoke'", "must implement 'async def invoke")
    one(problems, "tool 'no_invoke'", "property 'a' must be a schema object")
    one(problems, "tool 'no_invoke'", "requires ['b'] but does not define them")
    one(problems, "agent 'silent' has no description")


def test_duplicate_tool_names_are_reported() -> None:
    class Twice:
        @hookimpl
        def agentengine_register_tools(self, registry: Any) -> None:
            registry.add(documented)
            registry.add(documented)

    one(check_plugin(Twice()), "agentengine_register_tools raised RegistrationError", "twice")


def test_extension_methods_and_signatures() -> None:
    class Ext:
        def around_run(self, run: Any, call_next: Any) -> Any:  # not async
            return call_next()

        async def around_tool(self, run: Any, call_next: Any) -> Any:  # missing `call`
            return await call_next()

        async def on_event(self, event: Any) -> None:  # must be sync
            pass

        async def resolve_tools(self, name: str) -> None:  # misspelled
            return None

        def tools(self) -> list[Any]:
            return ["not a tool"]

    class Good(Extension):
        async def around_run(self, run: Any, call_next: Any) -> Any:
            return await call_next()

    class Plugin:
        @hookimpl
        def agentengine_engine_extensions(self, context: Any, engine: Any) -> list[Any]:
            assert context.user_id == "conformance-check"
            assert engine.user_id == "conformance-check"
            return [Ext(), Good()]

    problems = check_plugin(Plugin())
    assert len(problems) == 5, problems
    one(problems, "Ext.around_run must be 'async def'", "return await call_next")
    one(
        problems,
        "Ext.around_tool takes (run, call_next)",
        "around_tool(self, run, call, call_next)",
    )
    one(problems, "Ext.on_event must be a plain 'def'", "must not block")
    one(problems, "'resolve_tools', which the engine never calls", "did you mean 'resolve_tool'?")
    one(problems, "Ext.tools()", "'not a tool' is not a Tool")


def test_hooks_that_raise_and_classes_that_cannot_be_made() -> None:
    class Raises:
        @hookimpl
        def agentengine_engine_extensions(self) -> Any:
            raise RuntimeError("no config")

        @hookimpl
        def agentengine_configure(self, settings: Any) -> None:
            raise KeyError("url")

    problems = check_plugin(Raises())
    one(problems, "agentengine_engine_extensions raised RuntimeError: no config")
    one(
        problems, "agentengine_configure raised KeyError with an empty configuration", "ConfigError"
    )

    class RefusesEmptyConfig:
        @hookimpl
        def agentengine_configure(self, settings: Any) -> None:
            raise ConfigError("[x] url is required")

    assert check_plugin(RefusesEmptyConfig()) == []

    class NeedsArgs:
        def __init__(self, url: str) -> None:
            self.url = url

    one(check_plugin(NeedsArgs), "cannot be instantiated without arguments", "defaults")


# -- the command -------------------------------------------------------------------------


BAD_MODULE = """
from agentengine import hookimpl

class Plugin:
    @hookimpl
    def agentengine_register_tool(self, registry):
        pass
"""


def run_cli(*args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(path) if path else ""}
    return subprocess.run(
        [AGENTENGINE, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_check_plugin_command(tmp_path: Path) -> None:
    (tmp_path / "bad_plugin.py").write_text(textwrap.dedent(BAD_MODULE))
    ok = run_cli("check-plugin", "agentengine_testplugin:plugin")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "agentengine_testplugin:plugin: ok"
    bad = run_cli("check-plugin", "bad_plugin:Plugin", path=tmp_path)
    assert bad.returncode == 1, bad.stderr
    assert "bad_plugin:Plugin: 1 problem(s)" in bad.stdout
    assert "did you mean 'agentengine_register_tools'?" in bad.stdout
    missing = run_cli("check-plugin", "no_such_module:Plugin")
    assert missing.returncode == 2
    assert "cannot import 'no_such_module': ModuleNotFoundError" in missing.stderr
    no_attr = run_cli("check-plugin", "bad_plugin:Nope", path=tmp_path)
    assert no_attr.returncode == 2
    assert "'bad_plugin' has no attribute 'Nope'" in no_attr.stderr
    malformed = run_cli("check-plugin", "bad_plugin")
    assert malformed.returncode == 2
    assert "give MODULE:OBJECT" in malformed.stderr
