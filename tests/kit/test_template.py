"""`agentengine new-plugin` renders plugins/_template; the result installs and runs for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from agentengine.cli.scaffold import core_source, plugin_names, render_plugin, template_dir

ROOT = Path(__file__).resolve().parents[2]
AGENTENGINE = str(Path(sys.executable).with_name("agentengine"))


def run(
    *args: str, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTENGINE_", "VIRTUAL_ENV"))}
    env["UV_NO_PROGRESS"] = "1"
    return subprocess.run(
        list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, check=False
    )


def test_names_derived_from_the_plugin_name() -> None:
    assert plugin_names("weather-alerts") == {
        "name": "weather-alerts",
        "distribution": "agentengine-weather-alerts",
        "package": "agentengine_weather_alerts",
        "class_name": "WeatherAlertsPlugin",
        "agent_name": "weather_alerts",
        "tool_name": "weather_alerts_greet",
    }


def test_the_template_is_the_workspace_folder() -> None:
    assert template_dir() == ROOT / "plugins" / "_template"


def test_rendering_replaces_every_token(tmp_path: Path) -> None:
    target = render_plugin("weather", tmp_path)
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "src/agentengine_weather/__init__.py",
        "src/agentengine_weather/py.typed",
        "tests/test_agentengine_weather.py",
    ]
    for path in target.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path
    pyproject = (target / "pyproject.toml").read_text()
    assert 'name = "agentengine-weather"' in pyproject
    assert 'weather = "agentengine_weather:WeatherPlugin"' in pyproject
    compile((target / "src/agentengine_weather/__init__.py").read_text(), "init", "exec")


def test_the_core_source_follows_where_agentengine_core_comes_from(tmp_path: Path) -> None:
    # Outside the checkout: taken from the checkout, with a note on when to remove it.
    outside = (render_plugin("weather", tmp_path) / "pyproject.toml").read_text()
    assert '"agentengine-core>=0.1.0"' in outside
    assert f'agentengine-core = {{ path = "{ROOT / "core"}", editable = true }}' in outside
    assert "Remove this table once agentengine-core is published" in outside
    tomllib.loads(outside)
    # Inside the checkout's workspace, its own [tool.uv.sources] apply: no table.
    assert core_source(ROOT / "plugins" / "weather") is None
    assert core_source(tmp_path / "weather") == ROOT / "core"


def test_new_plugin_command_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    made = run(AGENTENGINE, "new-plugin", "notes", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert f"created agentengine-notes in {tmp_path / 'notes'}" in made.stdout
    again = run(AGENTENGINE, "new-plugin", "notes", "--dir", str(tmp_path))
    assert again.returncode == 2
    assert "already exists and is not empty" in again.stderr
    for bad, message in [
        ("Notes", "lowercase letters and digits"),
        ("agentengine-notes", "give the plugin's short name ('notes')"),
        ("request_scope", "reserved"),
        ("class", "reserved"),
    ]:
        refused = run(AGENTENGINE, "new-plugin", bad, "--dir", str(tmp_path))
        assert refused.returncode == 2, bad
        assert message in refused.stderr, (bad, refused.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]  # nothing else written


@pytest.fixture(scope="module")
def uv() -> str:
    found = shutil.which("uv")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("uv is required for the template test (pip install uv)")
        pytest.skip("uv is not installed")
    return found


def test_a_rendered_plugin_installs_lists_runs_and_passes_its_own_tests(
    tmp_path: Path, uv: str
) -> None:
    made = run(AGENTENGINE, "new-plugin", "hello-world", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    plugin = tmp_path / "hello-world"
    venv = tmp_path / "venv"
    created = run(uv, "venv", "--quiet", "--python", sys.executable, str(venv))
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    # Same versions as this environment, so an offline uv cache suffices.
    installed = run(
        uv, "pip", "install", "--quiet", "--python", str(python),
        str(ROOT / "core"), str(plugin),
        f"pytest=={version('pytest')}", f"anyio=={version('anyio')}",
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    cli = str(venv / "bin" / "agentengine")

    listed = run(cli, "plugins", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    infos = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert infos["hello-world"]["distribution"] == "agentengine-hello-world"
    assert infos["hello-world"]["version"] == "0.1.0"
    assert infos["hello-world"]["tools"] == ["hello_world_greet"]
    assert infos["hello-world"]["agents"] == ["hello_world"]
    assert infos["hello-world"]["error"] is None

    ran = run(cli, "run", "hello_world", "--input", '{"name": "Ada"}', "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    events = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [e["type"] for e in events] == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert events[2]["tool"] == "hello_world_greet"
    assert events[3]["result"] == "Hello, Ada!"
    assert events[4]["output"] == "Hello, Ada!"

    checked = run(cli, "check-plugin", "agentengine_hello_world:HelloWorldPlugin", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The installed agentengine-core carries the template itself (not this checkout's).
    shipped = run(cli, "new-plugin", "shipped", "--dir", str(tmp_path / "elsewhere"))
    assert shipped.returncode == 0, shipped.stderr
    assert (tmp_path / "elsewhere/shipped/src/agentengine_shipped/__init__.py").is_file()
    # ... and wires the plugin to the folder that agentengine-core was installed from.
    shipped_pyproject = (tmp_path / "elsewhere/shipped/pyproject.toml").read_text()
    assert f'agentengine-core = {{ path = "{ROOT / "core"}", editable = true }}' in (
        shipped_pyproject
    )

    # The plugin's own tests, with the kit loaded from the installed agentengine-core.
    tested = run(str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=plugin)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout


def test_a_wheel_built_from_the_sdist_carries_the_template(tmp_path: Path, uv: str) -> None:
    built = run(uv, "build", "--quiet", str(ROOT / "core"), "-o", str(tmp_path))
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("agentengine_core-*.whl")  # uv builds the wheel from the sdist
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    template = {n for n in names if n.startswith("agentengine/_plugin_template/")}
    expected = {
        "agentengine/_plugin_template/" + p.relative_to(template_dir()).as_posix()
        for p in template_dir().rglob("*")
        if p.is_file()
    }
    assert template == expected
