"""``agentengine check``: every import form, string references, unparseable files, outputs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from agentengine_migrate.file_scan import scan_source
from agentengine_migrate.findings import RULES
from agentengine_migrate.spec import build_spec, load_spec
from migrate_helpers import AGENTENGINE, Cli, write

LEGACY = build_spec({})
NETRA = build_spec({}, presets=["netra"])


def scan(source: str, package: str | None = None, spec=LEGACY):
    return scan_source(textwrap.dedent(source).encode(), spec, display="m.py", package=package)


def codes(source: str, **kwargs) -> list[tuple[int, str, str]]:
    return [(f.line, f.code, f.form) for f in scan(source, **kwargs).findings]


# -- import forms -------------------------------------------------------------------------


def test_from_import_is_one_finding_at_the_statement_with_each_name_inside() -> None:
    result = scan("from agentengine.legacy import ExecutionEngine, ExecutionFactory as EF\n")
    (finding,) = result.findings
    assert (finding.code, finding.line, finding.col, finding.deprecated) == (
        "AEM001",
        1,
        1,
        "agentengine.legacy",
    )
    assert [(n.name, n.asname, n.col, n.deprecated, n.replacement) for n in finding.names] == [
        (
            "ExecutionEngine",
            None,
            32,
            "agentengine.legacy:ExecutionEngine",
            "agentengine:UserExecutionEngine",
        ),
        (
            "ExecutionFactory",
            "EF",
            49,
            "agentengine.legacy:ExecutionFactory",
            "agentengine:ExecutionEngineFactory",
        ),
    ]
    assert (
        "use `from agentengine import UserExecutionEngine as ExecutionEngine, "
        "ExecutionEngineFactory as EF`"
    ) in finding.message
    assert finding.severity == "error"
    assert finding.fixable
    assert all(n.fixable for n in finding.names)


def test_multi_line_import_is_one_finding_at_its_first_line() -> None:
    result = scan(
        """\
        import os
        from agentengine.legacy import (  # old
            ExecutionEngine,
            ExecutionFactory as EF,  # the factory
            user_execution_engine,
        )
        """
    )
    (finding,) = result.findings
    assert (finding.line, finding.col, finding.end_line) == (2, 1, 6)
    assert [(n.name, n.line) for n in finding.names] == [
        ("ExecutionEngine", 3),
        ("ExecutionFactory", 4),
        ("user_execution_engine", 5),
    ]
    # One name without a replacement: the statement is not fully fixable; the others are.
    assert not finding.fixable
    assert [n.fixable for n in finding.names] == [True, True, False]
    assert "no known replacement for `user_execution_engine`" in finding.message


def test_module_import_forms() -> None:
    found = codes(
        """\
        import agentengine.legacy
        import agentengine.legacy as L
        import os, agentengine.legacy.sub as S
        import agentengine
        """
    )
    assert found == [
        (1, "AEM002", "import"),
        (2, "AEM002", "import-as"),
        (3, "AEM002", "import-as"),
    ]


def test_deprecated_submodule_imported_from_its_package() -> None:
    result = scan("from agentengine import legacy as old, UserExecutionEngine\n")
    assert [(f.code, f.form, f.deprecated) for f in result.findings] == [
        ("AEM003", "from-submodule", "agentengine.legacy")
    ]


def test_relative_imports_resolve_against_the_files_package() -> None:
    source = """\
        from .legacy import ExecutionEngine
        from . import legacy
        from ..agentengine.legacy import ExecutionFactory
        from .other import legacy as fine
        """
    found = codes(source, package="agentengine")
    assert found == [
        (1, "AEM001", "relative from-import"),
        (2, "AEM003", "relative from-submodule"),
    ]
    nested = codes("from ..legacy import ExecutionEngine\n", package="agentengine.sub")
    assert nested == [(1, "AEM001", "relative from-import")]
    # Outside a package a relative import cannot be resolved: nothing is claimed.
    assert codes("from .legacy import ExecutionEngine\n", package=None) == []


def test_star_import_is_its_own_code() -> None:
    result = scan("from agentengine.legacy import *\n")
    assert [(f.code, f.fixable) for f in result.findings] == [("AEM004", False)]


def test_each_finding_names_its_context() -> None:
    result = scan(
        """\
        from typing import TYPE_CHECKING
        import pytest

        if TYPE_CHECKING:
            from agentengine.legacy import ExecutionEngine

        try:
            from agentengine.legacy import ExecutionFactory
        except ImportError:
            from agentengine.legacy import BaseExecutionEngine

        def f():
            from agentengine.legacy import ToolExecutionEngine

        class C:
            def test(self):
                with pytest.raises(ImportError):
                    from agentengine.legacy import Gone
        """
    )
    contexts = {f.deprecated.rpartition(":")[2]: f.context for f in result.findings}
    assert contexts == {
        "ExecutionEngine": ("if TYPE_CHECKING",),
        "ExecutionFactory": ("try/except ImportError",),
        "BaseExecutionEngine": ("except ImportError",),
        "ToolExecutionEngine": ("function",),
        "Gone": ("class", "function", "pytest.raises"),
    }
    gone = next(f for f in result.findings if f.deprecated.endswith("Gone"))
    assert not gone.fixable  # an import asserted to fail is not migrated by default


def test_names_with_no_known_replacement_say_so() -> None:
    (finding,) = scan("from agentengine.legacy import user_execution_engine\n").findings
    assert finding.replacement is None
    assert not finding.fixable
    assert "no known replacement" in finding.message
    assert "get_execution_engine_factory().user_execution_engine(ctx)" in finding.message


def test_similar_module_names_are_not_confused() -> None:
    source = """\
        from netra_backend.app.agents.supervisor.execution_engine_factory import get_factory
        from netra_backend.app.agents.supervisor.user_execution_engine import UserExecutionEngine
        import netra_backend.app.agents.supervisor.execution_engine_factory
        from netra_backend.app.agents.supervisor import execution_engine_factory
        """
    assert codes(source, spec=NETRA) == []
    deprecated = codes(
        "from netra_backend.app.agents.supervisor.execution_engine import ExecutionEngine\n",
        spec=NETRA,
    )
    assert deprecated == [(1, "AEM001", "from-import")]


def test_netra_preset_covers_every_deprecated_module() -> None:
    modules = [
        "netra_backend.app.agents.supervisor.execution_engine",
        "netra_backend.app.agents.supervisor.request_scoped_execution_engine",
        "netra_backend.app.agents.supervisor.mcp_execution_engine",
        "netra_backend.app.agents.supervisor.execution_factory",
        "netra_backend.app.agents.supervisor.execution_engine_unified_factory",
        "netra_backend.app.agents.execution_engine_unified_factory",
        "netra_backend.app.agents.execution_engine_consolidated",
        "netra_backend.app.core.execution_engine",
        "netra_backend.app.services.unified_tool_registry.execution_engine",
        "netra_backend.app.core.managers.execution_engine_factory",
        "netra_backend.app.agents.base.executor",
    ]
    source = "".join(f"from {m} import ExecutionEngineFactory\n" for m in modules)
    found = scan(source, spec=NETRA).findings
    assert len(found) == len(modules)
    assert {f.replacement for f in found} == {
        "netra_backend.app.agents.supervisor.execution_engine_factory:ExecutionEngineFactory"
    }


# -- string references --------------------------------------------------------------------


def test_string_references_each_kind_has_its_code() -> None:
    result = scan(
        """\
        import importlib, logging, sys
        from unittest import mock
        from unittest.mock import patch

        @mock.patch("agentengine.legacy.ExecutionEngine")
        def test(m, mocker, monkeypatch):
            with patch("agentengine.legacy.ExecutionFactory.create"):
                pass
            mocker.patch("agentengine.legacy.BaseExecutionEngine")
            monkeypatch.setattr("agentengine.legacy.ToolExecutionEngine", None)
            mock.patch.dict(sys.modules, {"agentengine.legacy": None})
            importlib.import_module("agentengine.legacy")
            __import__("agentengine.legacy")
            importlib.util.find_spec("agentengine.legacy")
            sys.modules["agentengine.legacy"]
            sys.modules.get("agentengine.legacy")
            "agentengine.legacy" in sys.modules
            logging.getLogger("agentengine.legacy")
            structlog.get_logger("agentengine.legacy.sub")
            mock.patch("agentengine.runtime.factory.ExecutionEngineFactory")  # not deprecated
            logging.getLogger("agentengine")
        """
    )
    got = [(f.line, f.code) for f in result.findings]
    assert got == [
        (5, "AEM101"),
        (7, "AEM101"),
        (9, "AEM101"),
        (10, "AEM101"),
        (11, "AEM103"),
        (12, "AEM102"),
        (13, "AEM102"),
        (14, "AEM102"),
        (15, "AEM103"),
        (16, "AEM103"),
        (17, "AEM103"),
        (18, "AEM104"),
        (19, "AEM104"),
    ]
    severities = {f.code: f.severity for f in result.findings}
    assert severities == {
        "AEM101": "error",
        "AEM102": "error",
        "AEM103": "warning",
        "AEM104": "warning",
    }
    first = result.findings[0]
    assert first.replacement == "agentengine.UserExecutionEngine"
    assert first.context == ("module",)
    assert result.findings[1].replacement == "agentengine.ExecutionEngineFactory.create"


# -- unparseable files --------------------------------------------------------------------

CONFLICTED = """\
import os
<<<<<<< HEAD
from agentengine.legacy import ExecutionEngine
=======
from agentengine.legacy import (
    IsolatedExecutionEngine,  # theirs
    ExecutionFactory as EF,
)
>>>>>>> feature
import agentengine.legacy as L
mock.patch("agentengine.legacy.BaseExecutionEngine")
"""


def test_merge_conflict_file_is_reported_and_its_imports_still_found() -> None:
    result = scan(CONFLICTED)
    assert not result.parsed
    got = [(f.line, f.code, [n.name for n in f.names]) for f in result.findings]
    assert got == [
        (2, "AEM900", []),
        (3, "AEM001", ["ExecutionEngine"]),
        (5, "AEM001", ["IsolatedExecutionEngine", "ExecutionFactory"]),
        (10, "AEM002", ["agentengine.legacy"]),
        (11, "AEM101", []),
    ]
    assert "merge-conflict markers" in result.findings[0].message


def test_newer_syntax_is_scanned_as_text() -> None:
    # PEP 695 (3.12) syntax, and a 3.14-style template string: SyntaxError on 3.11.
    source = """\
        from agentengine.legacy import ExecutionEngine
        type Alias[T] = list[T]
        def f[T](x: T) -> T:
            from agentengine.legacy import ExecutionFactory
            return x
        """
    result = scan(source)
    got = [(f.line, f.code) for f in result.findings]
    if result.parsed:  # a Python that understands the syntax parses it normally
        assert got == [(1, "AEM001"), (4, "AEM001")]
    else:
        assert got == [(1, "AEM001"), (2, "AEM900"), (4, "AEM001")]
        assert "SyntaxError" in result.findings[1].message


# -- suppression --------------------------------------------------------------------------


def test_noqa_is_read_where_ruff_reads_it() -> None:
    result = scan(
        """\
        from agentengine.legacy import ExecutionEngine  # noqa: AEM001
        from agentengine.legacy import ExecutionFactory  # noqa: F401
        from agentengine.legacy import BaseExecutionEngine  # noqa
        from agentengine.legacy import (  # noqa: AEM001, E501
            ToolExecutionEngine,
        )
        mock.patch("agentengine.legacy.X")  # NOQA:AEM101
        import agentengine.legacy  # noqa: AEM001
        from agentengine.legacy import (
            IsolatedExecutionEngine,
        )  # noqa: AEM001
        from agentengine.legacy import \\
            IsolatedExecutionEngine  # noqa: AEM001
        from agentengine.legacy import ExecutionEngine  # noqa: aem001
        from agentengine.legacy import ExecutionEngine  # noqa: TID251
        from agentengine.legacy import ExecutionEngine  # some text noqa: AEM001
        x = '''
        see agentengine.legacy.X
        '''  # noqa: AEM106
        """
    )
    # Line 9: a noqa on the closing parenthesis is not on the statement's line (ruff: the
    # same). Line 14: lower-case codes are an invalid directive, which suppresses nothing.
    # Line 15: ruff's own code for the same finding suppresses it too. Line 12: the noqa of
    # a backslash continuation is on its last line. Line 18: that of a multi-line string too.
    assert [(f.line, f.code) for f in result.findings] == [
        (2, "AEM001"),
        (8, "AEM002"),
        (9, "AEM001"),
        (14, "AEM001"),
        (16, "AEM001"),
    ]
    assert result.suppressed == 7


# -- the command line ---------------------------------------------------------------------


def _project(root: Path) -> None:
    write(
        root,
        {
            "pyproject.toml": textwrap.dedent(
                """\
                [project]
                name = "demo"
                [tool.agentengine.migrate]
                allow = ["src/compat/**"]
                exclude = ["generated/"]
                """
            ),
            ".gitignore": "ignored_dir/\n*.tmp.py\n!keep.tmp.py\n",
            "src/app/__init__.py": "",
            "src/app/main.py": "from agentengine.legacy import ExecutionEngine\n",
            "src/app/clean.py": "from agentengine import UserExecutionEngine\n",
            "src/compat/shim.py": "from agentengine.legacy import ExecutionEngine\n",
            "generated/gen.py": "from agentengine.legacy import ExecutionEngine\n",
            "ignored_dir/x.py": "from agentengine.legacy import ExecutionEngine\n",
            "scratch.tmp.py": "from agentengine.legacy import ExecutionEngine\n",
            "keep.tmp.py": "import agentengine.legacy\n",
            ".venv/lib/site.py": "from agentengine.legacy import ExecutionEngine\n",
        },
    )


def test_cli_text_output_and_exit_status(cli: Cli, tmp_path: Path) -> None:
    _project(tmp_path)
    result = cli("check", ".")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        (
            "keep.tmp.py:1:8: AEM002 `import agentengine.legacy` is deprecated; its names moved "
            "to `agentengine`"
        ),
        (
            "src/app/main.py:1:1: AEM001 `from agentengine.legacy import ExecutionEngine` is "
            "deprecated; use `from agentengine import UserExecutionEngine as ExecutionEngine`"
        ),
    ]
    # gitignored, excluded, the default-excluded .venv and the allow-listed shim: not reported.
    assert "1 in 1 allow-listed file(s): src/compat/shim.py" in lines[-1]
    assert len(lines) == 3
    clean = cli("check", "src/app/clean.py")
    assert clean.returncode == 0, clean.stdout
    assert clean.stdout.startswith("All clear")


def test_cli_explicit_files_and_force_exclude(cli: Cli, tmp_path: Path) -> None:
    _project(tmp_path)
    # A file named on the command line is checked even if excluded (as ruff does) ...
    named = cli("check", "generated/gen.py", "ignored_dir/x.py")
    assert named.returncode == 1
    assert named.stdout.count("AEM001") == 2
    # ... unless --force-exclude, which a pre-commit hook passes.
    forced = cli("check", "--force-exclude", "generated/gen.py", "ignored_dir/x.py")
    assert forced.returncode == 0, forced.stdout
    cli_exclude = cli("check", "--exclude", "src/app/main.py", "--exclude", "keep*.py", ".")
    assert cli_exclude.returncode == 0, cli_exclude.stdout
    no_gitignore = cli("check", "--no-respect-gitignore", "--format", "json", ".")
    paths = {f["path"] for f in json.loads(no_gitignore.stdout)["findings"]}
    assert paths == {"ignored_dir/x.py", "keep.tmp.py", "scratch.tmp.py", "src/app/main.py"}


def test_the_documented_pre_commit_hook_checks_what_pre_commit_passes(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "migration.md").read_text()
    hook = doc.split("# .pre-commit-config.yaml\n", 1)[1].split("```", 1)[0]
    entry = re.search(r"entry: (.+)", hook)
    types = re.search(r"types_or: \[(.+)\]", hook)
    assert entry is not None and types is not None
    assert {t.strip() for t in types.group(1).split(",")} == {"python", "pyi", "markdown"}
    _project(tmp_path)
    write(tmp_path, {"docs/notes.md": "Was `agentengine.legacy.ExecutionEngine`.\n"})
    # As pre-commit runs a `language: system` hook: the entry from PATH, then the file names.
    staged = ["src/app/main.py", "generated/gen.py", "docs/notes.md", "src/app/clean.py"]
    env = {**os.environ, "PATH": f"{AGENTENGINE.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [*shlex.split(entry.group(1)), *staged],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    reported = {line.split(":", 1)[0] for line in proc.stdout.splitlines() if ": AEM" in line}
    assert reported == {"src/app/main.py", "docs/notes.md"}  # generated/ is excluded


def test_cli_json_output(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, {"a.py": CONFLICTED, "b.py": "x = 1  # nothing here\n"})
    result = cli("check", "--format", "json", ".")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["version"] == 1
    assert data["summary"]["unparsed"] == ["a.py"]
    assert data["summary"]["files"] == 2
    first = data["findings"][0]
    assert first["code"] == "AEM900"
    assert first["severity"] == "error"
    fields = set(data["findings"][1])
    assert {"path", "line", "col", "code", "message", "form", "context", "replacement"} <= fields


def _assert_valid_sarif(log: dict) -> None:
    """The structure SARIF 2.1.0 (and GitHub code scanning) requires of what we emit."""
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    assert isinstance(log["runs"], list)
    assert len(log["runs"]) == 1
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert isinstance(driver["name"], str)
    assert driver["name"]
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"]
        assert rule["defaultConfiguration"]["level"] in {"none", "note", "warning", "error"}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].endswith("/")
    for result in run["results"]:
        assert result["ruleId"] in rule_ids
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in {"none", "note", "warning", "error"}
        assert result["message"]["text"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        artifact = physical["artifactLocation"]
        assert not artifact["uri"].startswith("/")
        assert "\\" not in artifact["uri"]
        assert artifact["uriBaseId"] == "%SRCROOT%"
        region = physical["region"]
        assert region["startLine"] >= 1
        assert region["startColumn"] >= 1
        assert region["endLine"] >= region["startLine"]
        if region["endLine"] == region["startLine"]:
            assert region["endColumn"] > region["startColumn"]
        assert all(isinstance(v, str) for v in result["partialFingerprints"].values())


def test_cli_sarif_output(cli: Cli, tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": "from .. import x\nfrom agentengine.legacy import ExecutionEngine\n"
            "mock.patch('agentengine.legacy.ExecutionFactory')\n",
            "conflict.py": CONFLICTED,
        },
    )
    result = cli("check", "--format", "sarif", "--output", "report.sarif", ".")
    assert result.returncode == 1
    log = json.loads((tmp_path / "report.sarif").read_text())
    _assert_valid_sarif(log)
    results = log["runs"][0]["results"]
    levels = {(r["ruleId"], r["level"]) for r in results}
    assert ("AEM101", "error") in levels
    assert ("AEM900", "error") in levels
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    assert uris == {"pkg/mod.py", "conflict.py"}
    empty = cli("check", "--format", "sarif", "pkg/__init__.py")
    assert empty.returncode == 0
    _assert_valid_sarif(json.loads(empty.stdout))
    assert json.loads(empty.stdout)["runs"][0]["results"] == []


def test_cli_usage_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    missing = cli("check", "no/such/path")
    assert missing.returncode == 2
    assert "no/such/path" in missing.stderr
    bad_format = cli("check", "--format", "xml", ".")
    assert bad_format.returncode == 2
    bad_preset = cli("check", "--preset", "nope", ".")
    assert bad_preset.returncode == 2
    assert "unknown preset 'nope'" in bad_preset.stderr
    assert "agentengine-legacy, netra" in bad_preset.stderr
    bad_code = cli("check", "--ignore", "XYZ1", ".")
    assert bad_code.returncode == 2
    assert "XYZ1" in bad_code.stderr
    write(tmp_path, {"spec.toml": "[modules.'old.mod']\nreplacment = 'new.mod'\n"})
    bad_spec = cli("check", "--spec", "spec.toml", ".")
    assert bad_spec.returncode == 2
    assert 'modules."old.mod".replacment: unknown key' in bad_spec.stderr


def test_cli_ignore_and_preset_options(cli: Cli, tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.py": "import logging\nlogging.getLogger('agentengine.legacy')\n",
            "b.py": "from netra_backend.app.core.execution_engine import ExecutionEngine\n",
        },
    )
    assert cli("check", "--ignore", "AEM104", "a.py").returncode == 0
    assert cli("check", "b.py").returncode == 0  # netra is not in the default preset
    netra = cli("check", "--preset", "netra", "b.py")
    assert netra.returncode == 1
    assert "netra_backend.app.agents.supervisor.user_execution_engine" in netra.stdout


def test_cli_spec_from_pyproject_and_file(cli: Cli, tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": textwrap.dedent(
                """\
                [tool.agentengine.migrate]
                presets = []
                [tool.agentengine.migrate.modules."oldlib.engine"]
                replacement = "newlib.engine"
                names = { Engine = "newlib.engine:UserEngine" }
                """
            ),
            "other.toml": '[modules."x.y"]\nreplacement = "x.z"\n',
            "a.py": "from oldlib.engine import Engine, helper\nimport agentengine.legacy\n"
            "import x.y\n",
        },
    )
    result = cli("check", "--format", "json", "a.py")
    found = json.loads(result.stdout)["findings"]
    (statement,) = found
    assert [(n["deprecated"], n["replacement"]) for n in statement["names"]] == [
        ("oldlib.engine:Engine", "newlib.engine:UserEngine"),
        ("oldlib.engine:helper", "newlib.engine:helper"),
    ]
    other = json.loads(cli("check", "--format", "json", "--spec", "other.toml", "a.py").stdout)
    # A spec file replaces the pyproject table; its presets default to agentengine-legacy.
    assert [f["deprecated"] for f in other["findings"]] == ["agentengine.legacy", "x.y"]


def test_cli_emit_ruff_config_is_valid_for_ruff(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        "check", "--emit-ruff-config", "--preset", "netra", "--preset", "agentengine-legacy"
    )
    assert result.returncode == 0, result.stderr
    config = result.stdout
    assert '"agentengine.legacy".msg = ' in config
    assert '"netra_backend.app.agents.base.executor".msg = ' in config
    import tomllib

    parsed = tomllib.loads(config)
    banned = parsed["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"]
    assert len(banned) == 12
    # The emitted table works in ruff itself.
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    write(
        tmp_path,
        {
            "pyproject.toml": config.replace(
                "[tool.ruff.lint]\n", "[tool.ruff.lint]\nselect = []\n"
            ),
            "a.py": "from agentengine.legacy import ExecutionEngine\n",
        },
    )
    ran = subprocess.run(
        [ruff, "check", "--no-cache", "--output-format", "json", "a.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert [d["code"] for d in json.loads(ran.stdout)] == ["TID251"], ran.stderr


def test_module_entry_point_runs_without_the_engine(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, {"a.py": "from agentengine.legacy import ExecutionEngine\n"})
    result = cli("check", "a.py", module=True)
    assert result.returncode == 1
    assert "AEM001" in result.stdout
    program = (
        "import sys, runpy; sys.argv=['x','check','a.py'];\n"
        "try:\n runpy.run_module('agentengine_migrate', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('libcst','pydantic','agentengine')))"
    )
    probe = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    # Only agentengine's (empty) lazy namespaces, the legacy names (a module of constants), the
    # error classes and the stdlib-only config file reader may load: no engine, no pydantic,
    # no libcst.
    loaded = probe.stdout.strip().splitlines()[-1]
    expected = [
        "agentengine",
        "agentengine.config_files",
        "agentengine.errors",
        "agentengine.lazy",
        "agentengine.legacy",
        "agentengine.legacy.names",
    ]
    assert loaded == repr(expected), probe.stdout + probe.stderr


def test_rules_table_is_complete() -> None:
    assert set(RULES) == {
        "AEM001", "AEM002", "AEM003", "AEM004",
        "AEM101", "AEM102", "AEM103", "AEM104", "AEM105", "AEM106", "AEM107",
        "AEM900", "AEM901",
    }  # fmt: skip


def test_unreadable_file_is_a_finding(tmp_path: Path) -> None:
    from agentengine_migrate.check import scan_files

    write(tmp_path, {"a.py": "from agentengine.legacy import ExecutionEngine\n"})
    gone = tmp_path / "gone.py"  # vanished between listing and reading
    report = scan_files([tmp_path / "a.py", gone], LEGACY, cwd=tmp_path)
    assert [(f.path, f.code) for f in report.findings] == [
        ("a.py", "AEM001"),
        ("gone.py", "AEM901"),
    ]
    assert "cannot read the file" in report.findings[1].message


def test_load_spec_defaults_without_pyproject(tmp_path: Path) -> None:
    spec = load_spec(cwd=tmp_path)
    assert spec.presets == ("agentengine-legacy",)
    assert "agentengine.legacy" in spec.modules


def test_import_findings_match_ruff_tid251(cli: Cli, tmp_path: Path) -> None:
    """On the forms both tools support, check and ruff's banned-api report the same statements."""
    supervisor = "netra_backend.app.agents.supervisor"
    write(
        tmp_path,
        {
            "netra_backend/__init__.py": "",
            "netra_backend/app/__init__.py": "",
            "netra_backend/app/agents/__init__.py": "",
            "netra_backend/app/agents/supervisor/__init__.py": "",
            "netra_backend/app/agents/supervisor/uses.py": textwrap.dedent(
                f"""\
                from typing import TYPE_CHECKING
                from .execution_engine import ExecutionEngine
                from . import execution_factory
                from .user_execution_engine import UserExecutionEngine
                from {supervisor}.execution_engine import (
                    ExecutionEngine as E2,  # old
                    get_execution_engine_factory,
                )
                import {supervisor}.mcp_execution_engine
                import {supervisor}.mcp_execution_engine as mcp
                import os, netra_backend.app.core.execution_engine
                from netra_backend.app.core.managers import execution_engine_factory
                from netra_backend.app.agents.base.executor import *

                if TYPE_CHECKING:
                    from netra_backend.app.core.execution_engine import ExecutionEngine as E3

                def f():
                    try:
                        from {supervisor}.execution_factory import ExecutionFactory
                    except ImportError:
                        pass
                    return ExecutionFactory
                """
            ),
        },
    )
    config = cli("check", "--preset", "netra", "--emit-ruff-config").stdout
    (tmp_path / "pyproject.toml").write_text(
        config.replace('extend-select = ["TID251"]', 'select = ["TID251"]')
    )
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    ran = subprocess.run(
        [ruff, "check", "--no-cache", "--output-format", "json", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    ruff_lines = {(Path(d["filename"]).name, d["location"]["row"]) for d in json.loads(ran.stdout)}
    ours = json.loads(cli("check", "--preset", "netra", "--format", "json", ".").stdout)
    our_lines = {
        (Path(f["path"]).name, f["statement_line"])
        for f in ours["findings"]
        if f["code"] in {"AEM001", "AEM002", "AEM003", "AEM004"}
    }
    assert len(our_lines) == 10
    assert our_lines == ruff_lines


def test_worker_processes_find_the_same(tmp_path: Path) -> None:
    from agentengine_migrate.check import scan_files
    from agentengine_migrate.files import FileSelector

    write(
        tmp_path,
        {
            f"m{i}.py": f"import os\nfrom agentengine.legacy import ExecutionEngine  # {i}\n"
            for i in range(30)
        },
    )
    files = FileSelector(tmp_path).collect([tmp_path])
    serial = scan_files(files, LEGACY, cwd=tmp_path, jobs=1)
    parallel = scan_files(files, LEGACY, cwd=tmp_path, jobs=2)
    assert len(serial.findings) == 30
    assert serial.findings == parallel.findings


def test_commands_are_declared_by_the_migrate_plugin(cli: Cli, tmp_path: Path) -> None:
    listed = cli("--help")
    assert listed.returncode == 0
    assert "check" in listed.stdout
    assert "migrate" in listed.stdout
    plugins = json.loads(cli("plugins", "--json").stdout)["plugins"]
    (migrate,) = [p for p in plugins if p["name"] == "migrate"]
    assert migrate["error"] is None
    assert migrate["distribution"] == "agentengine-migrate"
    assert "agentengine_cli_commands" in migrate["hooks"]  # the same objects, for --help
    # Declared in entry-point group agentengine.commands, so they follow the plugin:
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "agentengine.toml").write_text('[plugins]\ndisable = ["migrate"]\n')
    disabled = cli("check", "--help", cwd=tmp_path / "off")
    assert disabled.returncode == 2
    assert "No such command 'check'" in disabled.stderr


def test_readme_example_runs(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "plugins" / "migrate" / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        (
            "<string>:1:1: AEM001 `from agentengine.legacy import ExecutionEngine` is "
            "deprecated; use `from agentengine import UserExecutionEngine as ExecutionEngine`"
        ),
        "from agentengine import UserExecutionEngine as ExecutionEngine",
        "",
    ]


def test_gitignore_rules(tmp_path: Path) -> None:
    from agentengine_migrate.files import FileSelector, IgnoreRules

    rules = IgnoreRules(
        tmp_path,
        [
            "# comment",
            "*.gen.py",
            "!keep.gen.py",
            "/top_only.py",
            "build/",
            "docs/**/draft_*.py",
            r"\#literal.py",
        ],
    )
    assert rules.verdict("a/b/x.gen.py", False) is True
    assert rules.verdict("a/keep.gen.py", False) is False
    assert rules.verdict("top_only.py", False) is True
    assert rules.verdict("sub/top_only.py", False) is None
    assert rules.verdict("src/build", True) is True
    assert rules.verdict("src/build", False) is None  # a file named build: directories only
    assert rules.verdict("docs/a/b/draft_1.py", False) is True
    assert rules.verdict("docs/draft_1.py", False) is True
    assert rules.verdict("#literal.py", False) is True
    write(
        tmp_path,
        {
            ".git/HEAD": "ref: refs/heads/main\n",
            ".gitignore": "*.gen.py\n",
            "pkg/.gitignore": "!special.gen.py\nlocal_only.py\n",
            "pkg/special.gen.py": "",
            "pkg/other.gen.py": "",
            "pkg/local_only.py": "",
            "local_only.py": "",
            "pkg/ok.py": "",
            "notes.md": "",
        },
    )
    selector = FileSelector(tmp_path)
    found = sorted(p.relative_to(tmp_path).as_posix() for p in selector.collect([tmp_path]))
    assert found == ["local_only.py", "pkg/ok.py", "pkg/special.gen.py"]
    # Walking a subdirectory still applies the repository's top-level .gitignore.
    sub = sorted(p.name for p in FileSelector(tmp_path).collect([tmp_path / "pkg"]))
    assert sub == ["ok.py", "special.gen.py"]
    explicit = FileSelector(tmp_path)
    assert explicit.collect([tmp_path / "notes.md"]) == []
    assert explicit.skipped == [tmp_path / "notes.md"]


def test_a_conflict_after_the_last_hit_is_still_reported() -> None:
    """check parses only up to its last hit when it can; merge-conflict markers still count."""
    result = scan(
        """\
        from agentengine.legacy import ExecutionEngine

        x = 1
        <<<<<<< HEAD
        y = 2
        =======
        y = 3
        >>>>>>> other
        """
    )
    assert not result.parsed
    assert [(f.line, f.code) for f in result.findings] == [(1, "AEM001"), (4, "AEM900")]
