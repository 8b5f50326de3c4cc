"""The command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "agentengine.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


def test_plugins_json_lists_builtin_and_third_party() -> None:
    proc = cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert "demo" not in plugins  # opt-in: listed as found but not loaded, saying how to load it
    (demo,) = [p for p in listing["skipped"] if p["name"] == "demo"]
    assert demo["distribution"] == "agentengine-core"
    assert 'opt-in; load it with [plugins] enable = ["demo"]' in demo["skipped"]
    assert plugins["testplugin"]["version"] == "1.2.3"
    assert plugins["testplugin"]["hooks"] == [
        "agentengine_register_agents",
        "agentengine_register_tools",
    ]


def test_run_streams_events_and_exits_by_status() -> None:
    proc = cli("run", "reverser", "--input", '{"text": "abc"}', "--user", "alice", "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["type"] for e in events] == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert events[-1]["output"] == "cba"
    assert {e["user_id"] for e in events} == {"alice"}
    failed = cli("run", "echo", "--input", '{"wrong": 1}', "--user", "alice")
    assert failed.returncode == 1
    assert "text: Field required" in failed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "echo", "--input", "{not json"], "not valid JSON"),
        (["run", "echo", "--input", "[1]"], "must be a JSON object"),
        (["run", "echo", "--user", "default"], "placeholder"),
        (["run", "nope"], "no agent named 'nope'"),
        (["demo", "--users", "0"], "0"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_exit_2_with_a_message(args: list[str], message: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr


def test_demo_json_summary() -> None:
    proc = cli("demo", "--users", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["runs"]["succeeded"] == summary["runs"]["total"] == 8
    assert summary["isolation"] == {"wrong_user_events": 0, "events_missing": 0, "gaps": 0}
    for counts in summary["events_by_user"].values():
        assert set(counts) == {
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "agent_completed",
        }
    assert summary["latency_ms"]["p95"] >= summary["latency_ms"]["p50"] > 0


def test_demo_human_output_shows_timeline_and_summary() -> None:
    proc = cli("demo", "--users", "2", "--runs", "1")
    assert proc.returncode == 0, proc.stderr
    assert "[user-01] #1  agent_started" in proc.stdout
    assert "isolation check: 0 events reached the wrong user, 0 missing -> OK" in proc.stdout


def test_plugins_table_of_the_configuration_file_enables_and_disables(tmp_path: Path) -> None:
    (tmp_path / "agentengine.toml").write_text(
        '[plugins]\nenable = ["demo"]\ndisable = ["testplugin", "mcp"]\n'
    )
    proc = cli("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert plugins["demo"]["agents"] == ["echo", "researcher"]
    assert "testplugin" not in plugins and "mcp" not in plugins
    skipped = {p["name"]: p["skipped"] for p in listing["skipped"]}
    assert "disabled" in skipped["testplugin"] and "disabled" in skipped["mcp"]
    # A disabled plugin adds no command either: mcp's `agentengine mcp` is gone.
    assert cli("mcp", "--help", cwd=tmp_path).returncode == 2
    assert cli("mcp", "--help").returncode == 0
    # Each key's environment variable, when set, replaces it.
    proc = cli("plugins", "--json", cwd=tmp_path, env={"AGENTENGINE_DISABLE_PLUGINS": "demo"})
    names = {p["name"] for p in json.loads(proc.stdout)["plugins"]}
    assert "demo" not in names and {"testplugin", "mcp"} <= names


def test_a_bad_plugins_table_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "agentengine.toml").write_text('[plugins]\ndisabled = ["demo"]\n')
    proc = cli("run", "echo", "--input", '{"text": "x"}', cwd=tmp_path)
    assert proc.returncode == 1
    assert "unknown key(s) disabled in [plugins]" in proc.stderr
    assert "known keys: disable, enable, only, strict" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_disabled_demo_plugin_is_gone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = cli("plugins", "--json", env={"AGENTENGINE_DISABLE_PLUGINS": "demo"})
    names = [p["name"] for p in json.loads(proc.stdout)["plugins"]]
    assert "demo" not in names
    demo = cli("demo", "--users", "1", env={"AGENTENGINE_DISABLE_PLUGINS": "demo"})
    assert demo.returncode == 2
    assert "built-in 'demo' plugin, which is not loaded" in demo.stderr
    assert "Traceback" not in demo.stderr


def test_run_prints_non_ascii_text_as_is() -> None:
    shown = cli("run", "reverser", "--input", '{"text": "C° 91"}', "--user", "alice")
    assert shown.returncode == 0, shown.stderr
    assert '"19 °C"' in shown.stdout
    assert "\\u00b0" not in shown.stdout
    as_json = cli("run", "reverser", "--input", '{"text": "C° 91"}', "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout.splitlines()[-1])["output"] == "19 °C"
    assert "19 °C" in as_json.stdout


async def test_an_agent_error_line_names_its_type_once() -> None:
    from agentengine import (
        ExecutionEngineFactory,
        RunContext,
        UserExecutionContext,
        agent,
        hookimpl,
        tool,
    )
    from agentengine.cli.render import event_line

    @tool
    async def broken(city: str) -> str:
        """Always fails."""
        raise ValueError(f"no station in {city}")

    @agent(name="relay")
    async def relay(run: RunContext, city: str) -> str:
        """Let the tool's error end the run."""
        return str(await run.call_tool("broken", {"city": city}))

    class Plugin:
        @hookimpl
        def agentengine_register_tools(self, registry):  # type: ignore[no-untyped-def]
            registry.add(broken)

        @hookimpl
        def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
            registry.add(relay)

    async with ExecutionEngineFactory(plugins=[Plugin()], load_entrypoints=False) as factory:
        ctx = UserExecutionContext.for_user("alice")
        async with factory.user_execution_engine(ctx) as engine:
            result = await engine.execute_agent("relay", {"city": "Oslo"})
    (error,) = [e for e in result.events if e.type == "agent_error"]
    line = event_line(error)
    assert "ToolError: ToolError" not in line
    assert line.endswith(
        "agent_error     ToolError: tool 'broken' error: ValueError: no station in Oslo"
    )
    # A message that does not start with its type still shows the type.
    timed_out = error.model_copy(
        update={"error": "run exceeded its deadline", "error_type": "TimeoutError"}
    )
    assert event_line(timed_out).endswith("TimeoutError: run exceeded its deadline")
