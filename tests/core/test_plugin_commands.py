"""Commands plugins declare in entry-point group ``agentengine.commands``: found without
importing any plugin, loaded one at a time, with clear errors; the hook still works.

Start-up is checked structurally (which modules the real ``agentengine`` script imported,
from its ``sys.modules`` at exit), never by timing it. The third-party
distributions here are real ones: a ``*.dist-info`` directory and a module on ``PYTHONPATH``,
found as the installed ones are.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import agentengine_migrate
import pytest
from agentengine.plugins.commands import COMMAND_GROUP, declared_commands

AGENTENGINE = Path(sys.executable).parent / "agentengine"

#: What no plugin command may import just to start: the plugin machinery, the engine, the
#: heavy libraries only a factory or a server needs.
STARTUP_FORBIDDEN = {
    "pluggy",
    "importlib.metadata",
    "pydantic",
    "structlog",
    "rich",
    "libcst",
    "agentengine.plugins.loading",
    "agentengine.runtime",
    "agentengine.events",
}
PLUGIN_PACKAGES = {
    "check": "agentengine_migrate",
    "migrate": "agentengine_migrate",
    "serve": "agentengine_server",
    "mcp": "agentengine_mcp",
    "worker": "agentengine_redis",
}


#: Runs a script as ``python SCRIPT ARGS`` does, then writes the names in ``sys.modules`` at
#: exit to the file named by the first argument (``-X importtime`` misses the modules
#: imported with ``importlib.import_module``).
RECORD_MODULES = """
import atexit, runpy, sys
out, script, *args = sys.argv[1:]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, script: Path = AGENTENGINE
) -> subprocess.CompletedProcess[str]:
    """``agentengine ARGS`` (the real script) in ``cwd``; the modules it imported are in
    ``cwd / "modules.txt"`` afterwards."""
    return subprocess.run(
        [sys.executable, "-c", RECORD_MODULES, str(cwd / "modules.txt"), str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        check=False,
    )


def imported(cwd: Path) -> set[str]:
    """The modules the last ``run`` in ``cwd`` imported."""
    return set((cwd / "modules.txt").read_text().split())


def roots(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def forbidden_in(modules: set[str]) -> set[str]:
    return {
        name
        for name in modules
        if any(name == bad or name.startswith(bad + ".") for bad in STARTUP_FORBIDDEN)
    }


def test_check_in_a_pre_commit_hook_imports_only_the_checker(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from agentengine.legacy import ExecutionEngine\n")
    (tmp_path / "clean.py").write_text("x = 1\n")
    proc = run("check", "app.py", "clean.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "app.py:1:1: AEM001" in proc.stdout
    modules = imported(tmp_path)
    assert "agentengine_migrate.check" in modules  # the listing is real: the check ran
    assert forbidden_in(modules) == set()
    others = {"agentengine_server", "agentengine_mcp", "agentengine_redis"}
    assert roots(modules) & (others | {"agentengine_pydantic_ai"}) == set()
    assert "agentengine_migrate.plugin" not in modules


def test_python_m_agentengine_migrate_check_imports_only_the_checker(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from agentengine.legacy import ExecutionEngine\n")
    main = Path(agentengine_migrate.__file__).parent / "__main__.py"
    proc = run("check", "app.py", cwd=tmp_path, script=main)
    assert proc.returncode == 1, proc.stderr[-2000:]
    modules = imported(tmp_path)
    assert "agentengine_migrate.check" in modules
    assert forbidden_in(modules) == set()


@pytest.mark.parametrize("command", sorted(PLUGIN_PACKAGES))
def test_each_declared_command_starts_without_the_other_plugins(
    command: str, tmp_path: Path
) -> None:
    proc = run(command, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"Usage: agentengine {command}" in proc.stdout
    modules = imported(tmp_path)
    own = PLUGIN_PACKAGES[command]
    assert own in roots(modules)
    assert roots(modules) & (set(PLUGIN_PACKAGES.values()) - {own}) == set()
    assert "pluggy" not in modules and "agentengine.plugins.loading" not in modules


def test_help_lists_every_command(tmp_path: Path) -> None:
    proc = run("--help", cwd=tmp_path)
    assert proc.returncode == 0
    listed = {line.split()[0] for line in proc.stdout.split("Commands:", 1)[1].splitlines() if line}
    core = {"check-plugin", "demo", "new-plugin", "plugins", "run"}
    assert listed == core | set(PLUGIN_PACKAGES)
    assert proc.stderr == ""


def test_the_workspace_plugins_declare_their_commands() -> None:
    declared = {d.name: d for d in declared_commands()}
    assert {name: declared[name].plugins for name in PLUGIN_PACKAGES} == {
        "check": ("migrate",),
        "migrate": ("migrate",),
        "serve": ("server",),
        "mcp": ("mcp",),
        "worker": ("redis",),
    }


# -- third-party distributions --------------------------------------------------------------


def distribution(root: Path, name: str, entry_points: str, module: str = "") -> Path:
    """A distribution ``name`` on ``root``: its metadata directory and module ``name``."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    if module:
        (root / f"{name}.py").write_text(module)
    return root


HELLO = '''
import click


@click.command("hello")
def hello():
    """Say hello."""
    click.echo("hello from a plugin")


def make_hello():
    return hello


class Plugin:
    name = "greeter"
'''

# The same command added through the hook, the way plugins did before declaring commands.
HOOKED = (
    HELLO
    + """
from agentengine import hookimpl


class HookPlugin:
    name = "hooked"

    @hookimpl
    def agentengine_cli_commands(self):
        return [hello]
"""
)


def test_a_third_party_declared_command_runs_and_is_listed(tmp_path: Path) -> None:
    site = distribution(
        tmp_path / "site",
        "greeter",
        "[agentengine]\ngreeter = greeter:Plugin\n\n"
        f"[{COMMAND_GROUP}]\nhello = greeter:hello\nhi = greeter:make_hello\n",
        HELLO,
    )
    env = {"PYTHONPATH": str(site)}
    proc = run("hello", cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stdout) == (0, "hello from a plugin\n")
    assert "pluggy" not in imported(tmp_path)
    assert run("hi", cwd=tmp_path, env=env).stdout == "hello from a plugin\n"  # a factory
    listing = run("--help", cwd=tmp_path, env=env)
    assert (
        "  hello " in listing.stdout and "  hi " in listing.stdout and "  check " in listing.stdout
    )
    # Its plugin disabled, the command is gone: disabling a plugin removes what it adds.
    disabled = run("hello", cwd=tmp_path, env={**env, "AGENTENGINE_DISABLE_PLUGINS": "greeter"})
    assert disabled.returncode == 2
    assert "No such command 'hello'" in disabled.stderr
    only = run("hello", cwd=tmp_path, env={**env, "AGENTENGINE_PLUGINS": "migrate"})
    assert only.returncode == 2


def test_a_declared_command_that_cannot_be_imported_is_a_clear_error(tmp_path: Path) -> None:
    site = distribution(
        tmp_path / "site",
        "broken",
        "[agentengine]\nbroken = broken:Plugin\n\n"
        f"[{COMMAND_GROUP}]\nexplode = broken_missing.cli:command\nodd = broken:NOT_A_COMMAND\n",
        "NOT_A_COMMAND = 42\n\nclass Plugin:\n    name = 'broken'\n",
    )
    env = {"PYTHONPATH": str(site)}
    proc = run("explode", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert (
        "command 'explode' of broken (explode = broken_missing.cli:command in entry-point group "
        "agentengine.commands) could not be loaded: ModuleNotFoundError: No module named "
        "'broken_missing'; reinstall broken, or disable its plugin (broken) in [plugins] disable"
    ) in proc.stderr
    odd = run("odd", cwd=tmp_path, env=env)
    assert odd.returncode == 2
    assert (
        "(odd = broken:NOT_A_COMMAND in entry-point group agentengine.commands) is 42, not a "
        "click command"
    ) in odd.stderr
    # The listing goes on without them, saying why each is missing.
    listing = run("--help", cwd=tmp_path, env=env)
    assert listing.returncode == 0
    assert "  check " in listing.stdout and "explode" not in listing.stdout
    assert "warning: command 'explode' of broken" in listing.stderr
    assert "warning: command 'odd' of broken" in listing.stderr
    # The other commands never notice.
    (tmp_path / "clean.py").write_text("x = 1\n")
    clean = run("check", "clean.py", cwd=tmp_path, env=env)
    assert (clean.returncode, clean.stderr) == (0, "")


def test_commands_from_the_hook_still_work_and_a_core_name_is_kept(tmp_path: Path) -> None:
    site = distribution(
        tmp_path / "site",
        "hooked",
        f"[agentengine]\nhooked = hooked:HookPlugin\n\n[{COMMAND_GROUP}]\nrun = hooked:hello\n",
        HOOKED,
    )
    env = {"PYTHONPATH": str(site)}
    proc = run("hello", cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stdout) == (0, "hello from a plugin\n")
    assert "warning: hooked declares command 'run' (hooked:hello), which agentengine already" in (
        proc.stderr
    )
    listing = run("--help", cwd=tmp_path, env=env)
    assert "  hello " in listing.stdout
    assert "Run AGENT once" in listing.stdout  # the core's run, not the plugin's


def test_declared_and_returned_by_the_hook_is_one_command(tmp_path: Path) -> None:
    site = distribution(
        tmp_path / "site",
        "hooked",
        f"[agentengine]\nhooked = hooked:HookPlugin\n\n[{COMMAND_GROUP}]\nhello = hooked:hello\n",
        HOOKED,
    )
    listing = run("--help", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert listing.returncode == 0
    assert listing.stdout.count("  hello ") == 1
    assert listing.stderr == ""


def test_declared_commands_are_read_from_zip_files_too(tmp_path: Path) -> None:
    site = distribution(
        tmp_path / "site", "zipped", f"[{COMMAND_GROUP}]\nzap = zipped:zap\n# a comment\n"
    )
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in site.rglob("*"):
            zf.write(file, file.relative_to(site).as_posix())
    found = declared_commands([str(archive)])
    assert [(d.name, d.value, d.plugins) for d in found] == [("zap", "zipped:zap", ())]
    assert [d.name for d in declared_commands([str(site)])] == ["zap"]


def test_the_first_distribution_of_a_name_on_the_path_wins(tmp_path: Path) -> None:
    first = distribution(tmp_path / "a", "same_name", f"[{COMMAND_GROUP}]\none = same_name:a\n")
    second = distribution(tmp_path / "b", "Same.Name", f"[{COMMAND_GROUP}]\ntwo = x:b\n")
    assert [d.name for d in declared_commands([str(first), str(second)])] == ["one"]
