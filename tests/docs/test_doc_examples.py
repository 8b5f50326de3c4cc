"""The code examples of docs/writing-plugins.md, docs/testing-plugins.md and docs/migration.md
are executed here, so the docs cannot rot.

Conventions in those pages: every ```python block runs, in order, in one namespace per page,
with top-level ``await`` allowed; a block whose first line is ``# file: NAME`` is instead
written to NAME (blocks naming one file are joined) and, for the testing guide, run with
pytest in a subprocess; a migration block starting with ``# before`` must warn
``DeprecationWarning`` exactly once and one starting with ``# after`` must not warn.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pytest
from agentengine import reset_execution_engine_factory

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return [body for lang, body in _BLOCK.findall(text) if lang == language]


async def execute(code: str, namespace: dict[str, Any], name: str) -> None:
    compiled = compile(code, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    result = eval(compiled, namespace)
    if inspect.iscoroutine(result):
        await result


@pytest.fixture
async def fresh_default_factory() -> Any:
    previous = reset_execution_engine_factory()
    if previous is not None:
        await previous.shutdown()
    yield
    current = reset_execution_engine_factory()
    if current is not None:
        await current.shutdown()


@pytest.mark.parametrize("page", ["writing-plugins.md", "testing-plugins.md", "migration.md"])
def test_toml_examples_parse(page: str) -> None:
    for body in blocks(page, "toml"):
        tomllib.loads(body)


async def test_writing_plugins_examples_run(fresh_default_factory, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray agentengine.toml
    code = blocks("writing-plugins.md", "python")
    assert len(code) >= 6
    namespace: dict[str, Any] = {"__name__": "writing_plugins_doc"}
    for number, body in enumerate(code, 1):
        await execute(body, namespace, f"writing-plugins.md block {number}")
    # The guide's checker promise holds for its main plugin.
    from agentengine.testing import check_plugin

    assert check_plugin(namespace["WeatherPlugin"]()) == []
    assert check_plugin(namespace["GuardPlugin"]()) == []
    assert check_plugin(namespace["WeatherCli"]()) == []


async def test_migration_examples_run_and_warn_as_documented(
    fresh_default_factory, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = blocks("migration.md", "python")
    befores = [b for b in code if b.startswith("# before")]
    afters = [b for b in code if b.startswith("# after")]
    assert len(befores) >= 7
    assert len(afters) >= 7
    namespace: dict[str, Any] = {"__name__": "migration_doc"}
    for number, body in enumerate(code, 1):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await execute(body, namespace, f"migration.md block {number}")
        deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
        if body.startswith("# before"):
            assert len(deprecations) == 1, (number, [str(w.message) for w in caught])
            assert "instead" in str(deprecations[0].message)
        else:
            assert deprecations == [], (number, [str(w.message) for w in deprecations])


def test_testing_guide_files_pass_under_pytest(tmp_path: Path) -> None:
    files: dict[str, str] = {}
    for body in blocks("testing-plugins.md", "python"):
        first, _, rest = body.partition("\n")
        match = re.fullmatch(r"# file: (\S+)", first.strip())
        assert match, f"a testing-guide block must start with '# file: NAME': {first!r}"
        files[match.group(1)] = files.get(match.group(1), "") + rest + "\n\n"
    assert sorted(files) == ["app.py", "test_app.py", "test_thermo.py", "thermo.py"]
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    expected = sum(
        len(re.findall(r"^(?:async )?def test_", files[name], re.MULTILINE))
        for name in ("test_thermo.py", "test_app.py")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTENGINE_")}
    env["PYTHONPATH"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{expected} passed" in done.stdout, done.stdout
    assert "skipped" not in done.stdout
    documented = re.search(r"(\d+) passed\n```", (DOCS / "testing-plugins.md").read_text())
    assert documented is not None
    assert int(documented.group(1)) == expected
