"""The ``agentengine`` command line.

Kept light: only click is imported up front; the engine and plugins are imported when a
command runs (``agentengine --help`` lists plugin commands, which loads the plugins' entry
points but builds no factory). Exit status: 0 success, 1 a failed run or check, 2 usage errors.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from agentengine.cli.render import event_line

if TYPE_CHECKING:
    from agentengine.plugins.loading import PluginSelection
    from agentengine.runtime.factory import ExecutionEngineFactory

__all__ = ["main"]


class _PluginCommands(click.Group):
    """A group that adds the commands plugins contribute (``agentengine_cli_commands``)."""

    _loaded = False

    def _load_plugin_commands(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from agentengine.plugins.loading import load_plugins

        try:
            plugins = load_plugins(strict=False, selection=_plugin_selection())
        except Exception as exc:  # never let a plugin break the command line itself
            click.echo(f"warning: could not load plugins: {exc}", err=True)
            return
        for plugin_name, commands in plugins.call_each("agentengine_cli_commands", {}):
            for command in commands or ():
                if not isinstance(command, click.Command) or not command.name:
                    click.echo(
                        f"warning: plugin {plugin_name!r} returned a non-command {command!r} "
                        "from agentengine_cli_commands; ignored",
                        err=True,
                    )
                    continue
                if command.name in self.commands:
                    click.echo(
                        f"warning: plugin {plugin_name!r} adds command {command.name!r}, which "
                        "already exists; ignored",
                        err=True,
                    )
                    continue
                self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None:
            self._load_plugin_commands()
            found = super().get_command(ctx, cmd_name)
        return found


@click.group(cls=_PluginCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="agentengine-core", prog_name="agentengine")
def main() -> None:
    """agentengine: run AI agents for many users at once, safely."""


def _plugin_selection() -> PluginSelection:
    """The ``[plugins]`` table of the configuration file, read without building a factory
    (and without pydantic), so that a disabled plugin adds no command either."""
    import os
    from pathlib import Path

    from agentengine.config_files import find_config
    from agentengine.plugins.loading import PluginSelection

    found = find_config(cwd=Path.cwd(), environ=os.environ)
    if found is None:
        return PluginSelection.from_config(None)
    return PluginSelection.from_config(found.tables.get("plugins"), source=found.source)


#: The opt-in plugin that the commands meant for trying agentengine out load.
DEMO_PLUGINS = ("demo",)


def _build_factory(**kwargs: Any) -> ExecutionEngineFactory:
    from agentengine.errors import AgentEngineError
    from agentengine.runtime.factory import ExecutionEngineFactory

    try:
        return ExecutionEngineFactory(**kwargs)
    except AgentEngineError as exc:
        raise click.ClickException(str(exc)) from exc


def _configure_logs(as_json: bool) -> None:
    from agentengine.log import configure

    configure(json=as_json, level="WARNING")


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json: bool) -> None:
    """List plugins: distribution, version, hooks, agents, tools and load errors.

    Lists what a factory built here loads (the ``[plugins]`` configuration applied), then
    the plugins found but not loaded, with the reason (opt-in, disabled, not allowed)."""
    _configure_logs(as_json)
    factory = _build_factory()
    infos = [info.to_dict() for info in factory.plugin_infos]
    statuses: dict[str, list[dict[str, Any]]] = {}
    for plugin_name, _plugin, report in factory.plugins.implementations("agentengine_status"):
        try:  # a report is information: a failing one is shown, never held against the plugin
            statuses[plugin_name] = [dict(item) for item in report() or ()]
        except Exception as exc:
            statuses[plugin_name] = [{"name": "status", "state": "error", "detail": str(exc)}]
    for info in infos:
        info["status"] = statuses.get(info["name"], [])
    skipped = [info.to_dict() for info in factory.plugins.skipped]
    if as_json:
        click.echo(json.dumps({"plugins": infos, "skipped": skipped}, indent=2))
        return
    if not infos:
        click.echo("no plugins found")
    for info in infos:
        version = f" {info['version']}" if info["version"] else ""
        dist = f" ({info['distribution']}{version})" if info["distribution"] else ""
        state = "ERROR" if info["error"] else "ok"
        click.echo(f"{info['name']}{dist} [{info['source']}] {state}")
        if info["error"]:
            click.echo(f"    error: {info['error']}")
        if info["hooks"]:
            click.echo(f"    hooks:  {', '.join(info['hooks'])}")
        if info["agents"]:
            click.echo(f"    agents: {', '.join(info['agents'])}")
        if info["tools"]:
            click.echo(f"    tools:  {', '.join(info['tools'])}")
        if info["aliases"]:
            click.echo(f"    also registered as: {', '.join(info['aliases'])}")
        for item in info["status"]:
            detail = f" ({item['detail']})" if item.get("detail") else ""
            click.echo(f"    status: {item.get('name', '?')}: {item.get('state', '?')}{detail}")
    for info in skipped:
        version = f" {info['version']}" if info["version"] else ""
        dist = f" ({info['distribution']}{version})" if info["distribution"] else ""
        click.echo(f"{info['name']}{dist} [{info['source']}] not loaded: {info['skipped']}")
    if any(i["error"] for i in infos):
        sys.exit(1)


@main.command("run")
@click.argument("agent")
@click.option("--input", "input_json", default="{}", help="The agent's input as a JSON object.")
@click.option("--user", "user_id", default="cli-user", show_default=True, help="User id.")
@click.option("--timeout", type=float, default=None, help="Whole-run deadline in seconds.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
def run_command(
    agent: str, input_json: str, user_id: str, timeout: float | None, as_json: bool
) -> None:
    """Run AGENT once for one user, streaming its events as they happen.

    The demo agents (echo, researcher) are available besides the installed ones."""
    import asyncio

    try:
        run_input = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--input") from None
    if not isinstance(run_input, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--input")
    from agentengine.context import UserExecutionContext
    from agentengine.errors import InvalidContextError, UnknownAgentError

    try:
        ctx = UserExecutionContext.for_user(user_id)
    except InvalidContextError as exc:
        raise click.BadParameter(str(exc), param_hint="--user") from None
    _configure_logs(as_json)

    async def go() -> str:
        factory = _build_factory(enable_plugins=DEMO_PLUGINS)
        async with factory, factory.user_execution_engine(ctx) as engine:
            try:
                handle = await engine.start_run(agent, run_input, timeout=timeout)
            except UnknownAgentError as exc:
                raise click.UsageError(str(exc)) from None
            async for event in handle:
                if as_json:
                    click.echo(json.dumps(event.to_wire(), ensure_ascii=False))
                else:
                    click.echo(event_line(event))
            result = await handle.result()
            return result.status.value

    status = asyncio.run(go())
    sys.exit(0 if status == "succeeded" else 1)


@main.command("demo")
@click.option("--users", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--runs", default=2, show_default=True, type=click.IntRange(1, 100), help="Runs per user."
)
@click.option("--json", "as_json", is_flag=True, help="Print only the summary, as JSON.")
def demo_command(users: int, runs: int, as_json: bool) -> None:
    """Run the built-in demo agents for N concurrent users; print timelines and a summary."""
    import asyncio

    from agentengine.cli.demo import print_summary, run_demo

    _configure_logs(as_json)
    factory = _build_factory(enable_plugins=DEMO_PLUGINS)
    if "researcher" not in factory.agents:
        raise click.UsageError(
            "the demo's agents come from the built-in 'demo' plugin, which is not loaded; "
            "remove it from [plugins] disable and AGENTENGINE_DISABLE_PLUGINS (and add it to "
            "[plugins] only / AGENTENGINE_PLUGINS if you set an allow-list)"
        )
    echo = None if as_json else click.echo
    summary = asyncio.run(run_demo(factory, users=users, runs_per_user=runs, echo=echo))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        print_summary(summary, click.echo)
    ok = summary["isolation"]["wrong_user_events"] == 0 and summary["runs"]["failed"] == 0
    sys.exit(0 if ok else 1)


@main.command("check-plugin")
@click.argument("target", metavar="MODULE:OBJECT")
def check_plugin_command(target: str) -> None:
    """Check a plugin object against agentengine's hooks, tools and extensions.

    MODULE:OBJECT names the plugin, as in an entry point (``agentengine_weather:plugin``);
    a class is instantiated. Exit status 1 lists every problem, 2 means it cannot be imported.
    """
    import importlib

    from agentengine.testing.conformance import check_plugin

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(
            "give MODULE:OBJECT, for example agentengine_weather:WeatherPlugin",
            param_hint="MODULE:OBJECT",
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}",
            param_hint="MODULE:OBJECT",
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise click.BadParameter(
                f"{module_name!r} has no attribute {attr!r}", param_hint="MODULE:OBJECT"
            )
        obj = getattr(obj, part)
    problems = check_plugin(obj)
    if not problems:
        click.echo(f"{target}: ok")
        return
    click.echo(f"{target}: {len(problems)} problem(s)")
    for number, problem in enumerate(problems, 1):
        click.echo(f"  {number}. {problem}")
    sys.exit(1)


@main.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to create the plugin's folder (DIR/NAME).",
)
def new_plugin_command(name: str, directory: str) -> None:
    """Create a plugin distribution NAME from the template (agentengine-NAME)."""
    from agentengine.cli.scaffold import plugin_names, render_plugin
    from agentengine.errors import AgentEngineError

    try:
        target = render_plugin(name, directory)
    except AgentEngineError as exc:
        raise click.UsageError(str(exc)) from None
    names = plugin_names(name)
    click.echo(f"created {names['distribution']} in {target}")
    click.echo(f"  package:     src/{names['package']}/__init__.py")
    click.echo(f"  entry point: {names['name']} = {names['package']}:{names['class_name']}")
    click.echo(f"next: cd {target} && uv sync && uv run pytest")


if __name__ == "__main__":
    main()
