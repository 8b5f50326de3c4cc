"""Finding and reading configuration files (``agentengine.config_files``), through the
public ``load_settings`` where there is a public way, and the module's own functions where the
migrator uses them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from agentengine import ConfigError, load_settings
from agentengine.config_files import agentengine_table, find_config, find_pyproject, read_toml


def test_lookup_order_env_then_agentengine_toml_then_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.agentengine.engine]\nrun_timeout = 3\n")
    from_pyproject = load_settings(cwd=tmp_path, environ={})
    assert from_pyproject.section("engine") == {"run_timeout": 3}
    assert from_pyproject.source == f"{tmp_path / 'pyproject.toml'} [tool.agentengine]"

    (tmp_path / "agentengine.toml").write_text("[engine]\nrun_timeout = 2\n")
    from_file = load_settings(cwd=tmp_path, environ={})
    assert from_file.section("engine") == {"run_timeout": 2}
    assert from_file.source == str(tmp_path / "agentengine.toml")

    elsewhere = tmp_path / "other.toml"
    elsewhere.write_text("[engine]\nrun_timeout = 1\n")
    from_env = load_settings(cwd=tmp_path, environ={"AGENTENGINE_CONFIG": str(elsewhere)})
    assert from_env.section("engine") == {"run_timeout": 1}
    assert from_env.source == str(elsewhere)


def test_pyproject_without_the_table_is_no_configuration(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert find_config(cwd=tmp_path, environ={}) is None
    assert load_settings(cwd=tmp_path, environ={}).source == "<defaults>"


@pytest.mark.parametrize("document", ["tool = 'x'\n", "[tool]\nagentengine = 5\n"])
def test_a_pyproject_whose_tool_key_is_not_a_table_is_not_a_crash(
    tmp_path: Path, document: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(document)
    assert load_settings(cwd=tmp_path, environ={}).source == "<defaults>"


def test_missing_explicit_file_names_the_file_and_who_set_it(tmp_path: Path) -> None:
    gone = tmp_path / "gone.toml"
    expected = r"gone\.toml does not exist \(set by AGENTENGINE_CONFIG\)"
    with pytest.raises(ConfigError, match=expected):
        load_settings(cwd=tmp_path, environ={"AGENTENGINE_CONFIG": str(gone)})
    with pytest.raises(ConfigError, match="does not exist \\(set by the config argument\\)"):
        load_settings(gone, cwd=tmp_path, environ={})


def test_read_errors_name_what_the_file_is_and_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "agentengine.toml"
    bad.write_text("[engine\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, environ={})
    assert str(info.value).startswith(f"configuration file {bad} is not valid TOML: ")
    with pytest.raises(ConfigError) as info:
        read_toml(tmp_path, what="the migration spec")  # a directory cannot be read as a file
    assert str(info.value).startswith(f"cannot read the migration spec {tmp_path}: ")


def test_find_pyproject_here_or_the_nearest_above(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_pyproject(deep) is None
    assert find_pyproject(deep, search_parents=True) == (tmp_path / "pyproject.toml").resolve()
    assert find_pyproject(tmp_path) == tmp_path / "pyproject.toml"


def test_agentengine_table_reaches_nested_tables() -> None:
    document = {"tool": {"agentengine": {"migrate": {"presets": []}, "engine": 5}}}
    assert agentengine_table(document) == document["tool"]["agentengine"]
    assert agentengine_table(document, "migrate") == {"presets": []}
    assert agentengine_table(document, "engine") == 5  # the caller says it must be a table
    assert agentengine_table(document, "engine", "x") is None
    assert agentengine_table({}, "migrate") is None


def test_the_module_loads_no_pydantic() -> None:
    program = (
        "import sys, agentengine.config_files\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('agentengine', 'pydantic')))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    expected = ["agentengine", "agentengine.config_files", "agentengine.errors", "agentengine.lazy"]
    assert ran.stdout.strip() == repr(expected), ran.stderr
