"""String references of every kind, selection by code, Markdown, shims, and the removal gate."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from agentengine_migrate.file_scan import scan_source
from agentengine_migrate.spec import build_spec
from migrate_helpers import Cli, write

OLDLIB = {
    "modules": {
        "oldlib.engine": {
            "replacement": "newlib.engine",
            "names": {"Engine": "newlib.engine:UserEngine"},
        },
        "oldlib.factory": {"names": {"Factory": "newlib.engine:Factory"}},
    }
}
SPEC = build_spec(OLDLIB, presets=[])
SPEC_TOML = textwrap.dedent(
    """\
    [tool.agentengine.migrate]
    presets = []
    [tool.agentengine.migrate.modules."oldlib.engine"]
    replacement = "newlib.engine"
    names = { Engine = "newlib.engine:UserEngine" }
    [tool.agentengine.migrate.modules."oldlib.factory"]
    names = { Factory = "newlib.engine:Factory" }
    """
)


def found(source: str) -> list[tuple[int, int, str, str]]:
    result = scan_source(textwrap.dedent(source).encode(), SPEC, display="m.py")
    return [(f.line, f.col, f.code, f.deprecated) for f in result.findings]


def test_bare_paths_and_mentions_have_their_own_codes() -> None:
    got = found(
        '''\
        """Module docs.

        The old home was oldlib.engine.Engine; see also oldlib.factory:Factory.
        """
        DEPRECATED = ["oldlib.engine", ("oldlib.factory", 1), {"k": "oldlib.engine:Engine"}]
        annotated: "oldlib.engine.Engine" = None
        message = f"moved from oldlib.engine to {new}"
        unrelated = ["oldlib.engines", "xoldlib.engine", "oldlib.engine_extra", "oldlib"]
        '''
    )
    assert got == [
        # Mentions at the mention, in a docstring or an f-string; bare paths at the string.
        (3, 18, "AEM106", "oldlib.engine.Engine"),
        (3, 49, "AEM106", "oldlib.factory:Factory"),
        (5, 15, "AEM105", "oldlib.engine"),
        (5, 33, "AEM105", "oldlib.factory"),
        (5, 61, "AEM105", "oldlib.engine:Engine"),
        (6, 12, "AEM105", "oldlib.engine.Engine"),
        (7, 24, "AEM106", "oldlib.engine"),
    ]
    result = scan_source(b"X = ['oldlib.engine:Engine', 'oldlib.factory.Gone']\n", SPEC)
    levels = [(f.severity, f.replacement) for f in result.findings]
    assert levels == [("warning", "newlib.engine:UserEngine"), ("warning", None)]


def test_a_mention_deep_in_a_multi_line_string_is_found() -> None:
    # No quote and no import on the line: the prefilter must still let the file through.
    source = '"""Docs.\n\nLong text.\nUse oldlib.engine no more.\n"""\nx = 1\n'
    assert found(source) == [(4, 5, "AEM106", "oldlib.engine")]
    # A near miss (the segment as an ordinary name) is not parsed at all.
    assert found("engine = 1\nprint(engine)\n") == []


def test_select_and_ignore_by_code_and_prefix(cli: Cli, tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": SPEC_TOML,
            "a.py": textwrap.dedent(
                """\
                from unittest import mock
                from oldlib.engine import Engine
                mock.patch("oldlib.engine.Engine")
                PATHS = ["oldlib.engine"]
                TEXT = "see oldlib.engine"
                """
            ),
        },
    )

    def codes(*options: str) -> tuple[int, list[str]]:
        result = cli("check", "--format", "json", *options, "a.py")
        return result.returncode, [f["code"] for f in json.loads(result.stdout)["findings"]]

    assert codes() == (1, ["AEM001", "AEM101", "AEM105", "AEM106"])
    assert codes("--select", "AEM1") == (1, ["AEM101", "AEM105", "AEM106"])
    assert codes("--select", "AEM001,AEM105") == (1, ["AEM001", "AEM105"])
    assert codes("--ignore", "AEM10") == (1, ["AEM001"])
    # Info alone does not fail the run.
    assert codes("--select", "AEM106") == (0, ["AEM106"])
    bad = cli("check", "--select", "XYZ", "a.py")
    assert bad.returncode == 2
    assert "unknown code 'XYZ'" in bad.stderr
    # The same selection from the spec.
    (tmp_path / "pyproject.toml").write_text(
        SPEC_TOML.replace("presets = []", 'presets = []\nignore = ["AEM105", "AEM106"]')
    )
    assert codes() == (1, ["AEM001", "AEM101"])
    assert codes("--ignore", "AEM101") == (1, ["AEM001"])
    # migrate follows the selection too: an ignored patch target is not rewritten.
    cli("migrate", "--ignore", "AEM101", "a.py")
    text = (tmp_path / "a.py").read_text()
    assert "from newlib.engine import UserEngine as Engine" in text
    assert 'mock.patch("oldlib.engine.Engine")' in text


def test_markdown_mentions_are_info(cli: Cli, tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": SPEC_TOML,
            "docs/guide.md": "# Guide\n\n```python\nfrom oldlib.engine import Engine\n```\n"
            "Not oldlib.engines or oldlib alone.\n",
            "notes.txt": "oldlib.engine\n",
        },
    )
    result = cli("check", "--format", "json", ".")
    assert result.returncode == 0  # info only
    data = json.loads(result.stdout)
    assert [
        (f["path"], f["line"], f["col"], f["code"], f["severity"]) for f in data["findings"]
    ] == [("docs/guide.md", 4, 6, "AEM107", "info")]
    assert data["summary"]["info"] == 1
    assert cli("check", "--ignore", "AEM107", "--format", "json", ".").stdout.count('"AEM107"') == 0
    sarif = json.loads(cli("check", "--format", "sarif", ".").stdout)
    assert [r["level"] for r in sarif["runs"][0]["results"]] == ["note"]
    migrated = cli("migrate", ".")
    assert migrated.returncode == 0, migrated.stdout  # mentions are listed, never rewritten
    assert "1 mention(s) in text left as they are" in migrated.stdout
    assert "docs/guide.md:4:6: AEM107" in migrated.stdout


def test_a_conflicted_shim_is_scanned_as_text_and_marked(cli: Cli, tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": SPEC_TOML,
            "oldlib/__init__.py": "",
            "oldlib/engine.py": (
                "<<<<<<< HEAD\nfrom oldlib.factory import Factory\n=======\n"
                "from .factory import (\n    Factory,\n)\n>>>>>>> other\n"
            ),
        },
    )
    data = json.loads(cli("check", "--format", "json", ".").stdout)
    got = [(f["line"], f["code"], f["in_deprecated_module"]) for f in data["findings"]]
    assert got == [
        (1, "AEM900", "oldlib.engine"),
        (2, "AEM001", "oldlib.engine"),
        (4, "AEM001", "oldlib.engine"),
    ]
    migrated = cli("migrate", "--include-shims", ".")
    assert migrated.returncode == 1
    assert "left unchanged: oldlib/engine.py: merge-conflict markers at line 1" in migrated.stdout


def _gate_tree(root: Path) -> None:
    write(
        root,
        {
            "pyproject.toml": SPEC_TOML.replace("[]", '[]\nallow = ["compat/*"]', 1),
            "oldlib/__init__.py": "",
            # The two deprecated modules import each other (shims).
            "oldlib/engine.py": "from oldlib.factory import Factory\n",
            "oldlib/factory.py": "from .engine import Engine\n",
            "app/main.py": "from oldlib.engine import Engine  # noqa: AEM001\n",
            "compat/bridge.py": "import oldlib.engine\n",
            "tests/test_paths.py": 'DEPRECATED = ["oldlib.engine"]\n',
            "docs/index.md": "Once there was oldlib.factory.\n",
        },
    )


def test_removal_report_per_module(cli: Cli, tmp_path: Path) -> None:
    _gate_tree(tmp_path)
    result = cli("check", "--removal-report", ".")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    # oldlib.engine: a noqa'd import, an allow-listed import and a bare path still block it.
    assert lines[0] == (
        "oldlib.engine: NOT safe to remove: 2 importer(s), 1 string reference(s) left "
        "(module files: oldlib/engine.py); 1 from modules removed with it (do not block)"
    )
    assert "app/main.py:1:1: AEM001" in lines[1]
    assert "suppressed by noqa, still breaks" in lines[1]
    assert "allow-listed, still breaks" in lines[2]
    assert "tests/test_paths.py:1:15: AEM105" in lines[3]
    # oldlib.factory: only imported by oldlib.engine, removed with it; a mention does not block.
    factory = lines.index(
        "oldlib.factory: safe to remove (module files: oldlib/factory.py); 1 from modules "
        "removed with it, 1 mention(s) in text (do not block)"
    )
    assert lines[factory + 1].startswith("  (removed with it) oldlib/engine.py:1:1: AEM001")
    assert lines[factory + 2].startswith("  (mention) docs/index.md:1:16: AEM107")
    assert lines[-1] == "Removal report: 1 of 2 module(s) safe to remove (7 file(s) scanned)."
    # Asked about one module: the other's importers of it block it (it stays).
    alone = cli("check", "--removal-report", "--module", "oldlib.factory", "--format", "json", ".")
    assert alone.returncode == 1
    (entry,) = json.loads(alone.stdout)["modules"]
    assert (entry["module"], entry["safe"]) == ("oldlib.factory", False)
    assert [f["path"] for f in entry["importers"]] == ["oldlib/engine.py"]
    assert entry["importers"][0]["in_deprecated_module"] == "oldlib.engine"
    # --select/--ignore do not hide anything from the gate.
    ignored = cli("check", "--removal-report", "--ignore", "AEM0,AEM105", ".")
    assert ignored.stdout.splitlines()[0] == lines[0]


def test_removal_report_exit_0_when_every_module_asked_is_safe(cli: Cli, tmp_path: Path) -> None:
    _gate_tree(tmp_path)
    for name in ("app/main.py", "compat/bridge.py", "tests/test_paths.py"):
        (tmp_path / name).write_text("x = 1\n")
    result = cli("check", "--removal-report", ".")
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[0].startswith("oldlib.engine: safe to remove")
    assert result.stdout.splitlines()[-1].startswith("Removal report: 2 of 2 module(s) safe")
    unknown = cli("check", "--removal-report", "--module", "oldlib.nope", ".")
    assert unknown.returncode == 2
    assert "oldlib.nope: not a deprecated module of the spec" in unknown.stderr
    assert "oldlib.engine" in unknown.stderr
    misplaced = cli("check", "--module", "oldlib.engine", ".")
    assert misplaced.returncode == 2
    assert "--module only applies to --removal-report" in misplaced.stderr
