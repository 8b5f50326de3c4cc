"""Plugin discovery (real entry points), failure isolation, strict mode, configuration."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from agentengine import (
    ConfigError,
    ExecutionEngineFactory,
    Extension,
    PluginLoadError,
    RegistrationError,
    RunContext,
    RunStatus,
    UserExecutionContext,
    agent,
    hookimpl,
)
from outcome_agents import OutcomesPlugin, add, calc


def install_fake_distribution(
    root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """Write a real, minimal installed distribution (dist-info + modules) under ``root``."""
    dist_info = root / f"{name.replace('-', '_')}-0.9.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.9.0\n")
    lines = ["[agentengine]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for mod, source in modules.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def broken_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install_fake_distribution(
        tmp_path,
        "agentengine-broken",
        {"broken": "ae_broken_plugin:plugin", "halfway": "ae_halfway_plugin:Plugin"},
        {
            "ae_broken_plugin": "raise ImportError('missing optional dependency: frobnicate')\n",
            "ae_halfway_plugin": """
                from agentengine import hookimpl

                class Plugin:
                    @hookimpl
                    def agentengine_register_tools(self, registry):
                        raise RuntimeError('registration failed')
            """,
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("ae_broken_plugin", "ae_halfway_plugin"):
        sys.modules.pop(mod, None)
    return tmp_path


async def test_installed_third_party_distribution_is_discovered() -> None:
    factory = ExecutionEngineFactory()
    info = {i.name: i for i in factory.plugin_infos}
    plugin = info["testplugin"]
    assert plugin.ok
    assert plugin.source == "entrypoint"
    assert plugin.distribution == "agentengine-testplugin"
    assert plugin.version == "1.2.3"
    assert plugin.agents == ["reverser"] and plugin.tools == ["reverse_text"]
    # Two entry points resolving to one object: registered once, the alias recorded.
    assert plugin.aliases == ["testplugin-alias = agentengine_testplugin:plugin"]
    assert "demo" not in info  # opt-in: see test_demo_plugin_is_opt_in
    async with factory, factory.user_execution_engine(UserExecutionContext.for_user("al")) as e:
        result = await e.execute_agent("reverser", {"text": "abc"})
    assert result.output == "cba"


async def test_plugin_failing_at_import_is_reported_and_others_work(
    broken_distribution: Path,
) -> None:
    factory = ExecutionEngineFactory(plugins=[OutcomesPlugin()])
    info = {i.name: i for i in factory.plugin_infos}
    broken = info["broken"]
    assert not broken.ok
    assert broken.distribution == "agentengine-broken" and broken.version == "0.9.0"
    assert "ImportError: missing optional dependency: frobnicate" in (broken.error or "")
    assert "agentengine_register_tools raised RuntimeError" in (info["halfway"].error or "")
    assert info["testplugin"].ok
    metrics = factory.get_factory_metrics()
    assert set(metrics["plugin_errors"]) == {"broken", "halfway"}
    async with factory, factory.user_execution_engine(UserExecutionContext.for_user("al")) as e:
        assert (await e.execute_agent("reverser", {"text": "ab"})).output == "ba"
        assert (await e.execute_agent("calc", {"text": "x"})).status is RunStatus.SUCCEEDED


def test_strict_mode_fails_fast(broken_distribution: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PluginLoadError, match=r"broken.*frobnicate"):
        ExecutionEngineFactory(strict_plugins=True)
    monkeypatch.setenv("AGENTENGINE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError):
        ExecutionEngineFactory()
    monkeypatch.setenv("AGENTENGINE_DISABLE_PLUGINS", "broken,halfway")
    factory = ExecutionEngineFactory()
    assert {i.name for i in factory.plugin_infos} >= {"testplugin"}


def test_disable_and_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTENGINE_ENABLE_PLUGINS", "demo")
    assert "demo" in {i.name for i in ExecutionEngineFactory().plugin_infos}
    monkeypatch.setenv("AGENTENGINE_DISABLE_PLUGINS", "demo")  # disable wins over enable
    names = {i.name for i in ExecutionEngineFactory().plugin_infos}
    assert "demo" not in names and "testplugin" in names
    monkeypatch.delenv("AGENTENGINE_DISABLE_PLUGINS")
    monkeypatch.setenv("AGENTENGINE_PLUGINS", "demo")
    factory = ExecutionEngineFactory()
    assert {i.name for i in factory.plugin_infos} == {"demo", "request_scope"}  # + built-ins
    assert "reverser" not in factory.agents


def test_duplicate_names_name_both_plugins() -> None:
    class Other:
        name = "other-plugin"

        @hookimpl
        def agentengine_register_tools(self, registry):  # type: ignore[no-untyped-def]
            registry.add(add)

    with pytest.raises(
        PluginLoadError, match="registered twice: by plugin 'outcomes' and by plugin 'other-plugin'"
    ):
        ExecutionEngineFactory(
            plugins=[OutcomesPlugin(), Other()], load_entrypoints=False, strict_plugins=True
        )
    factory = ExecutionEngineFactory(plugins=[OutcomesPlugin(), Other()], load_entrypoints=False)
    other = next(i for i in factory.plugin_infos if i.name == "other-plugin")
    assert "tool 'add' is registered twice" in (other.error or "")


def test_registries_refuse_duplicates_directly() -> None:
    from agentengine import AgentRegistry

    registry = AgentRegistry()
    registry.current_plugin = "first"
    registry.add(calc)
    registry.current_plugin = "second"
    with pytest.raises(RegistrationError, match="'first' and by plugin 'second'"):
        registry.add(calc)


def test_unknown_hook_and_wrong_arguments_are_reported() -> None:
    class Typo:
        name = "typo"

        @hookimpl
        def agentengine_register_tool(self, registry):  # type: ignore[no-untyped-def]
            pass

    class WrongArgs:
        name = "wrong-args"

        @hookimpl
        def agentengine_register_tools(self, tools):  # type: ignore[no-untyped-def]
            pass

    factory = ExecutionEngineFactory(plugins=[Typo(), WrongArgs()], load_entrypoints=False)
    info = {i.name: i for i in factory.plugin_infos}
    assert "unknown hook(s) agentengine_register_tool" in (info["typo"].error or "")
    assert "agentengine_register_tools" in (info["wrong-args"].error or "")
    assert "tools" in (info["wrong-args"].error or "")


class Recorder(Extension):
    def __init__(self, tag: str, log: list[str]) -> None:
        self.tag = tag
        self.log = log

    async def start(self) -> None:
        self.log.append(f"{self.tag}:start")

    async def close(self) -> None:
        self.log.append(f"{self.tag}:close")

    async def around_run(self, run, call_next):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.tag}:run>")
        try:
            return await call_next()
        finally:
            self.log.append(f"{self.tag}:run<")

    async def around_tool(self, run, call, call_next):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.tag}:tool {call.name}")
        return await call_next(call)


class RecorderPlugin:
    def __init__(self, tag: str, log: list[str]) -> None:
        self.name = f"rec-{tag}"
        self.tag = tag
        self.log = log

    @hookimpl
    def agentengine_engine_extensions(self, context):  # type: ignore[no-untyped-def]
        return Recorder(self.tag, self.log)


async def test_extensions_compose_in_registration_order() -> None:
    log: list[str] = []
    factory = ExecutionEngineFactory(
        plugins=[OutcomesPlugin(), RecorderPlugin("a", log), RecorderPlugin("b", log)],
        load_entrypoints=False,
    )
    async with factory, factory.user_execution_engine(UserExecutionContext.for_user("al")) as e:
        await e.execute_agent("calc", {"text": "x"})
    assert log == [
        "a:start",
        "b:start",
        "a:run>",
        "b:run>",
        "a:tool add",
        "b:tool add",
        "b:run<",
        "a:run<",
        "b:close",
        "a:close",
    ]


async def test_extension_tools_are_per_engine() -> None:
    from agentengine import tool

    class UserTools(Extension):
        def __init__(self, user_id: str) -> None:
            self.user_id = user_id

        def tools(self):  # type: ignore[no-untyped-def]
            @tool(name="whoami")
            async def whoami() -> str:
                """The engine's user."""
                return self.user_id

            return [whoami]

    class UserToolsPlugin:
        name = "user-tools"

        @hookimpl
        def agentengine_engine_extensions(self, context):  # type: ignore[no-untyped-def]
            return UserTools(context.user_id)

    @agent(name="ask")
    async def ask(run: RunContext) -> str:
        return str(await run.call_tool("whoami"))

    class AskPlugin:
        name = "ask"

        @hookimpl
        def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
            registry.add(ask)

    factory = ExecutionEngineFactory(
        plugins=[AskPlugin(), UserToolsPlugin()], load_entrypoints=False
    )
    async with factory:
        outputs = {}
        for user in ("alice", "bob"):
            async with factory.user_execution_engine(UserExecutionContext.for_user(user)) as e:
                outputs[user] = (await e.execute_agent("ask")).output
                assert "whoami" in e.tool_names()
        assert "whoami" not in factory.tools
    assert outputs == {"alice": "alice", "bob": "bob"}


async def test_extension_failing_to_start_names_the_plugin() -> None:
    log: list[str] = []

    class Fails(Extension):
        async def start(self) -> None:
            raise OSError("no database")

    class FailsPlugin:
        name = "needs-db"

        @hookimpl
        def agentengine_engine_extensions(self):  # type: ignore[no-untyped-def]
            return Fails()

    factory = ExecutionEngineFactory(
        plugins=[RecorderPlugin("a", log), FailsPlugin()], load_entrypoints=False
    )
    async with factory:
        with pytest.raises(Exception, match=r"plugin 'needs-db' failed to start.*no database"):
            await factory.create_for_user(UserExecutionContext.for_user("alice"))
        assert log == ["a:start", "a:close"]  # what started was closed again
        assert factory.get_factory_metrics()["engines_active"] == 0


async def test_extension_hook_error_fails_that_engine_only_and_keeps_the_plugin() -> None:
    calls = {"n": 0}

    class Flaky:
        name = "flaky"

        @hookimpl
        def agentengine_engine_extensions(self, context):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("policy service unreachable")
            return Extension()

    factory = ExecutionEngineFactory(plugins=[OutcomesPlugin(), Flaky()], load_entrypoints=False)
    async with factory:
        with pytest.raises(
            Exception, match="plugin 'flaky' failed in agentengine_engine_extensions"
        ):
            await factory.create_for_user(UserExecutionContext.for_user("alice"))
        # A later engine gets the plugin's extension again: the plugin was not dropped.
        async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as e:
            assert (await e.execute_agent("calc", {"text": "x"})).status is RunStatus.SUCCEEDED
    assert calls["n"] == 2
    assert factory.get_factory_metrics()["engines_active"] == 0


async def test_a_raising_tool_resolver_is_reported_in_tool_completed() -> None:
    class BrokenResolver(Extension):
        async def resolve_tool(self, name):  # type: ignore[no-untyped-def]
            raise OSError("registry offline")

    class ResolverPlugin:
        name = "resolver"

        @hookimpl
        def agentengine_engine_extensions(self):  # type: ignore[no-untyped-def]
            return BrokenResolver()

    @agent(name="asks_remote")
    async def asks_remote(run: RunContext) -> None:
        await run.call_tool("remote.thing", {})

    class AskPlugin:
        name = "ask-remote"

        @hookimpl
        def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
            registry.add(asks_remote)

    factory = ExecutionEngineFactory(
        plugins=[AskPlugin(), ResolverPlugin()], load_entrypoints=False
    )
    async with factory, factory.user_execution_engine(UserExecutionContext.for_user("al")) as e:
        result = await e.execute_agent("asks_remote")
    from invariants import check_run

    check_run(list(result.events))
    done = next(ev for ev in result.events if ev.type == "tool_completed")
    assert done.status == "error"  # type: ignore[attr-defined]
    assert "looking up tool 'remote.thing' failed: OSError: registry offline" in done.error  # type: ignore[attr-defined]


def test_event_sink_hook_first_sink_wins_a_raising_plugin_is_isolated() -> None:
    """The hook is a plain hook (not pluggy's firstresult, which would call the last registered
    first and let one raising plugin fail the factory): the factory asks plugins in
    registration order, a raising one is recorded and skipped, the first sink wins and the
    plugins after it are not asked."""
    from agentengine import InMemoryEventSink

    asked: list[str] = []
    chosen = InMemoryEventSink()

    class Raising:
        name = "raising-sink"

        @hookimpl
        def agentengine_event_sink(self, settings: object) -> None:
            asked.append(self.name)
            raise RuntimeError("cannot reach the transport")

    class Declining:
        name = "declining-sink"

        @hookimpl
        def agentengine_event_sink(self) -> None:
            asked.append(self.name)

    class Providing:
        name = "providing-sink"

        @hookimpl
        def agentengine_event_sink(self) -> InMemoryEventSink:
            asked.append(self.name)
            return chosen

    class Later:
        name = "later-sink"

        @hookimpl
        def agentengine_event_sink(self) -> InMemoryEventSink:
            asked.append(self.name)
            return InMemoryEventSink()

    factory = ExecutionEngineFactory(
        plugins=[Raising(), Declining(), Providing(), Later()], load_entrypoints=False
    )
    assert factory.events is chosen
    assert asked == ["raising-sink", "declining-sink", "providing-sink"]
    infos = {i.name: i for i in factory.plugin_infos}
    assert "cannot reach the transport" in (infos["raising-sink"].error or "")
    assert infos["later-sink"].ok
    spec = factory.plugins.manager.hook.agentengine_event_sink.spec
    assert spec is not None and not spec.opts.get("firstresult")


def test_demo_plugin_is_opt_in() -> None:
    """A production factory does not offer the demo agents unless asked for them by name."""
    plain = ExecutionEngineFactory(environ={})
    assert "researcher" not in plain.agents and "echo" not in plain.agents
    (demo,) = [i for i in plain.plugins.skipped if i.name == "demo"]
    assert demo.distribution == "agentengine-core"
    assert demo.skipped is not None and "AGENTENGINE_ENABLE_PLUGINS=demo" in demo.skipped
    asked = ExecutionEngineFactory(environ={}, enable_plugins=["demo"])
    assert {"echo", "researcher"} <= set(asked.agents.names())
    by_env = ExecutionEngineFactory(environ={"AGENTENGINE_ENABLE_PLUGINS": "demo"})
    assert "researcher" in by_env.agents
    # The operator's disable wins over an application's (or a command's) enable.
    refused = ExecutionEngineFactory(
        environ={"AGENTENGINE_DISABLE_PLUGINS": "demo"}, enable_plugins=["demo"]
    )
    assert "researcher" not in refused.agents


def test_plugins_table_of_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "agentengine.toml"
    config.write_text(
        '[plugins]\nenable = ["demo"]\ndisable = ["testplugin", "testplugin-alias"]\n'
    )
    factory = ExecutionEngineFactory(config=config, environ={})
    names = {i.name for i in factory.plugin_infos}
    assert "demo" in names and "testplugin" not in names
    assert "reverser" not in factory.agents
    skipped = {i.name: i.skipped for i in factory.plugins.skipped}
    assert "disabled" in (skipped["testplugin"] or "")
    # Each key's environment variable replaces it when set (here: an empty disable list).
    factory = ExecutionEngineFactory(config=config, environ={"AGENTENGINE_DISABLE_PLUGINS": ""})
    assert {"demo", "testplugin"} <= {i.name for i in factory.plugin_infos}
    # The generic AGENTENGINE_<TABLE>__<KEY> override works on the table too.
    factory = ExecutionEngineFactory(
        config=config, environ={"AGENTENGINE_PLUGINS__ENABLE": '["testplugin"]'}
    )
    assert "demo" not in {i.name for i in factory.plugin_infos}
    # An allow-list loads only what it names, opt-in entry points included.
    config.write_text('[plugins]\nonly = ["demo"]\n')
    factory = ExecutionEngineFactory(config=config, environ={})
    assert {i.name for i in factory.plugin_infos} == {"demo", "request_scope"}


def test_plugins_table_strict(tmp_path: Path, broken_distribution: Path) -> None:
    config = tmp_path / "agentengine.toml"
    config.write_text("[plugins]\nstrict = true\n")
    with pytest.raises(PluginLoadError, match="broken"):
        ExecutionEngineFactory(config=config, environ={})
    # The argument wins over the table.
    ExecutionEngineFactory(config=config, environ={}, strict_plugins=False)
    # So does the environment variable.
    ExecutionEngineFactory(config=config, environ={"AGENTENGINE_STRICT_PLUGINS": "0"})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('disabled = ["demo"]', "unknown key(s) disabled in [plugins]; known keys: disable"),
        ("disable = 3", '[plugins] disable must be a list of plugin names (such as ["demo"])'),
        ("enable = [1]", "[plugins] enable must be a list of plugin names"),
        ('strict = "maybe"', "[plugins] strict must be true or false"),
    ],
)
def test_bad_plugins_table_names_file_and_key(tmp_path: Path, table: str, message: str) -> None:
    config = tmp_path / "agentengine.toml"
    config.write_text(f"[plugins]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        ExecutionEngineFactory(config=config, environ={})
    assert message in str(caught.value)
    assert str(config) in str(caught.value)
