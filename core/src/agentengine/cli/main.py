"""The ``agentengine`` command line.

Kept light: only click is imported up front; the engine and plugins are imported when a
command runs. A command a plugin declares in entry-point group ``agentengine.commands`` is
found from the installed distributions' metadata and only its own module is imported, so that
``agentengine check`` in a pre-commit hook costs what the check costs; commands plugins add
through the ``agentengine_cli_commands`` hook need every plugin loaded, which happens only for
``agentengine --help`` and for a name no declared command has. Exit status: 0 success, 1 a
failed run or check, 2 usage errors (and a plugin command that cannot be loaded).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from agentengine.cli.render import event_line

if TYPE_CHECKING:
    from agentengine.plugins.commands import DeclaredCommand
    from agentengine.plugins.selection import PluginSelection
    from agentengine.runtime.factory import ExecutionEngineFactory

__all__ = ["main"]


def _command_error(message: str) -> click.UsageError:
    """A plugin's command cannot be loaded: a usage error (exit status 2) like an unknown
    command's, naming the entry point and the cause."""
    return click.UsageError(message)


class _PluginCommands(click.Group):
    """A group that adds the commands plugins contribute: those declared in entry-point group
    ``agentengine.commands`` one at a time, when asked for by name; those of the
    ``agentengine_cli_commands`` hook all at once, when listing or for an unknown name."""

    _selection: PluginSelection | None = None
    _declared: dict[str, DeclaredCommand] | None = None
    _hooks_loaded = False

    def _plugin_selection(self) -> PluginSelection | None:
        """The ``[plugins]`` selection; None (after one warning) when it cannot be read."""
        if self._selection is None:
            try:
                self._selection = _plugin_selection()
            except Exception as exc:  # never let a plugin break the command line itself
                click.echo(f"warning: could not load plugins: {exc}", err=True)
                self._declared, self._hooks_loaded = {}, True
        return self._selection

    def _declared_commands(self) -> dict[str, DeclaredCommand]:
        """The declared commands available under the selection, by name (nothing imported)."""
        if self._declared is None:
            from agentengine.plugins.commands import declared_commands

            selection = self._plugin_selection()
            found: dict[str, DeclaredCommand] = {}
            for declared in declared_commands() if selection is not None else ():
                if selection is None or declared.skip_reason(selection) is not None:
                    continue
                taken = found.get(declared.name)
                if declared.name in self.commands or taken is not None:
                    owner = taken.distribution if taken else "agentengine"
                    click.echo(
                        f"warning: {declared.distribution} declares command {declared.name!r} "
                        f"({declared.value}), which {owner} already has; ignored",
                        err=True,
                    )
                    continue
                found[declared.name] = declared
            if self._declared is None:  # not reset by a selection that failed to read
                self._declared = found
        return self._declared

    def _add_declared(self, name: str) -> click.Command | None:
        """Import the declared command ``name`` and add it; None when none is declared.
        Raises a ``click.ClickException`` (exit status 2) naming the entry point when it
        cannot be loaded."""
        declared = self._declared_commands().get(name)
        if declared is None:
            return None
        if name in self.commands:
            return self.commands[name]
        from agentengine.errors import PluginLoadError

        try:
            command = declared.load()
        except PluginLoadError as exc:
            raise _command_error(str(exc)) from None
        if not isinstance(command, click.Command) and callable(command):
            command = command()  # a function returning the command (imports on demand)
        if not isinstance(command, click.Command):
            raise _command_error(
                f"command {name!r} of {declared.distribution} ({name} = {declared.value} in "
                f"entry-point group agentengine.commands) is {command!r}, not a click command "
                "(or a function returning one)"
            )
        self.add_command(command, name)
        return command

    def _load_hook_commands(self) -> None:
        if self._hooks_loaded:
            return
        self._hooks_loaded = True
        selection = self._plugin_selection()
        if selection is None:
            return
        from agentengine.plugins.loading import load_plugins

        try:
            plugins = load_plugins(strict=False, selection=selection)
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
                try:  # a declared command of that name wins over the hook's
                    existing = self._add_declared(command.name) or self.commands.get(command.name)
                except click.ClickException:
                    existing = None  # reported when that command is listed or run
                if existing is command:  # declared and returned by the hook: one command
                    continue
                if existing is not None or command.name in self._declared_commands():
                    click.echo(
                        f"warning: plugin {plugin_name!r} adds command {command.name!r}, which "
                        "already exists; ignored",
                        err=True,
                    )
                    continue
                self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for name in list(self._declared_commands()):
            try:
                self._add_declared(name)
            except click.ClickException as exc:  # the listing goes on without it
                click.echo(f"warning: {exc.message}", err=True)
        self._load_hook_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name) or self._add_declared(cmd_name)
        if found is None and cmd_name not in self._declared_commands():
            self._load_hook_commands()
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
    from agentengine.plugins.selection import PluginSelection

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
