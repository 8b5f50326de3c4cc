"""``agentengine migrate``: safety guarantees, on real files and through the real CLI."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path

import pytest
from agentengine_migrate import cst_rewrite, migrate
from agentengine_migrate.file_migration import migrate_source
from agentengine_migrate.files import FileSelector
from agentengine_migrate.migrate import migrate_files, write_atomic
from agentengine_migrate.spec import build_spec
from migrate_helpers import Cli, write

LEGACY = build_spec({})
OLD = "from agentengine.legacy import ExecutionEngine\n\nengine = ExecutionEngine(1, 2, 3)\n"
NEW = (
    "from agentengine import UserExecutionEngine as ExecutionEngine\n\n"
    "engine = ExecutionEngine.create_from_legacy(1, 2, 3)\n"
)


def test_migrate_in_place_keeps_permissions_and_leaves_no_temporary_files(
    cli: Cli, tmp_path: Path
) -> None:
    write(tmp_path, {"tool.py": "#!/usr/bin/env python\n" + OLD, "lib/mod.py": OLD})
    (tmp_path / "tool.py").chmod(0o750)
    (tmp_path / "lib/mod.py").chmod(0o604)
    os.symlink("lib/mod.py", tmp_path / "link.py")
    result = cli("migrate", ".")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == (
        "2 file(s) changed of 3 scanned; 2 finding(s) fixed; 0 need a person."
    )
    assert (tmp_path / "tool.py").read_text() == "#!/usr/bin/env python\n" + NEW
    assert stat.S_IMODE((tmp_path / "tool.py").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "lib/mod.py").stat().st_mode) == 0o604
    assert (tmp_path / "lib/mod.py").read_text() == NEW
    assert (tmp_path / "link.py").is_symlink()  # written through, not replaced
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".migrate")]
    assert leftovers == []
    again = cli("migrate", ".")
    assert again.returncode == 0
    assert again.stdout.startswith("0 file(s) changed")


def test_diff_and_dry_run_write_nothing(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, {"a.py": OLD, "clean.py": "import os\n"})
    before = (tmp_path / "a.py").stat()
    outputs = []
    for flag in ("--diff", "--dry-run"):
        result = cli("migrate", flag, ".")
        assert result.returncode == 1  # there are changes to make
        assert result.stdout.splitlines()[:3] == ["--- a/a.py", "+++ b/a.py", "@@ -1,3 +1,3 @@"]
        assert "+from agentengine import UserExecutionEngine as ExecutionEngine" in result.stdout
        assert "1 file(s) would change of 2 scanned; 1 finding(s) fixable" in result.stderr
        outputs.append((result.stdout, result.stderr))
    assert outputs[0] == outputs[1]
    assert (tmp_path / "a.py").read_text() == OLD
    assert (tmp_path / "a.py").stat().st_mtime_ns == before.st_mtime_ns
    clean = cli("migrate", "--diff", "clean.py")
    assert clean.returncode == 0
    assert clean.stdout == ""


def test_dry_run_is_a_documented_alias_of_diff(cli: Cli) -> None:
    # One option with two names: --help lists them together and says which is the alias.
    help_text = cli("migrate", "--help").stdout
    lines = [line.strip() for line in help_text.splitlines()]
    option = next(line for line in lines if line.startswith("--diff"))
    assert option.startswith("--diff, --dry-run ")
    assert "Alias: --dry-run." in " ".join(help_text.split())


def test_shim_modules_are_reported_and_left_unless_asked(cli: Cli, tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[tool.agentengine.migrate]\nallow = ["compat/*.py"]\n',
            # The shim itself: agentengine/legacy.py is the deprecated module.
            "src/agentengine/__init__.py": "",
            "src/agentengine/legacy.py": "from agentengine.legacy import ExecutionEngine\n",
            "compat/bridge.py": OLD,
            "app.py": OLD,
        },
    )
    result = cli("migrate", ".")
    assert result.returncode == 0, result.stdout
    assert "left alone (allow-list): compat/bridge.py" in result.stdout
    assert (
        "left alone (shim module agentengine.legacy; --include-shims migrates it): "
        "src/agentengine/legacy.py"
    ) in result.stdout
    assert (tmp_path / "compat/bridge.py").read_text() == OLD
    assert (tmp_path / "src/agentengine/legacy.py").read_text() == (
        "from agentengine.legacy import ExecutionEngine\n"
    )
    assert (tmp_path / "app.py").read_text() == NEW
    # check reports the shim's own import of a deprecated module, marked as such; the
    # allow-listed file is only counted.
    checked = cli("check", "--format", "json", ".")
    assert checked.returncode == 1, checked.stdout
    data = json.loads(checked.stdout)
    assert [(f["path"], f["in_deprecated_module"]) for f in data["findings"]] == [
        ("src/agentengine/legacy.py", "agentengine.legacy")
    ]
    assert data["summary"]["allowed"] == {"compat/bridge.py": "allow-list"}
    text = cli("check", "src").stdout
    assert "[in deprecated module agentengine.legacy]" in text
    # Asked, migrate rewrites the shim too.
    forced = cli("migrate", "--include-shims", ".")
    assert forced.returncode == 0, forced.stdout
    assert (tmp_path / "src/agentengine/legacy.py").read_text() == (
        "from agentengine import UserExecutionEngine as ExecutionEngine\n"
    )


def test_pytest_raises_imports_are_kept_unless_asked(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """\
        import pytest

        def test_gone():
            with pytest.raises(ImportError):
                from agentengine.legacy import ExecutionEngine
        """
    ).encode()
    kept = migrate_source(source, LEGACY)
    assert kept.new == source
    assert [f.code for f in kept.needs_person] == ["AEM001"]
    assert "pytest.raises" in kept.needs_person[0].message
    forced = migrate_source(source, LEGACY, include_raises=True)
    assert b"from agentengine import UserExecutionEngine as ExecutionEngine" in forced.new


def test_line_endings_tabs_and_encodings_are_kept() -> None:
    crlf = b"import os\r\nfrom agentengine.legacy import (\r\n\tExecutionEngine,\r\n)\r\nx = 1\r\n"
    result = migrate_source(crlf, LEGACY)
    assert result.new == (
        b"import os\r\nfrom agentengine import (\r\n\tUserExecutionEngine as ExecutionEngine,\r\n)"
        b"\r\nx = 1\r\n"
    )
    latin = "# -*- coding: latin-1 -*-\nfrom agentengine.legacy import ExecutionEngine\n"
    latin += "s = 'caf\xe9'\n"
    data = latin.encode("latin-1")
    result = migrate_source(data, LEGACY)
    assert result.new == data.replace(
        b"from agentengine.legacy import ExecutionEngine",
        b"from agentengine import UserExecutionEngine as ExecutionEngine",
    )


def test_write_atomic_failure_keeps_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "a.py"
    target.write_bytes(b"old\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(migrate.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new\n")
    monkeypatch.undo()
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.py"]
    with pytest.raises(RuntimeError, match="changed while it was being migrated"):
        write_atomic(target, b"new\n", expected=b"something else\n")
    assert target.read_bytes() == b"old\n"


def test_many_files_in_worker_processes_match_a_single_process(tmp_path: Path) -> None:
    sources = {f"pkg{i}/mod{i}.py": OLD.replace("1, 2, 3", str(i)) for i in range(40)}
    for variant in ("serial", "parallel"):
        write(tmp_path / variant, sources)
    results = {}
    for variant, jobs in (("serial", 1), ("parallel", 2)):
        root = tmp_path / variant
        files = FileSelector(root).collect([root])
        results[variant] = migrate_files(files, LEGACY, cwd=root, jobs=jobs)
        assert results[variant].fixed == 40
    assert results["serial"].changed == results["parallel"].changed
    for name in sources:
        assert (tmp_path / "serial" / name).read_bytes() == (
            tmp_path / "parallel" / name
        ).read_bytes()


def test_a_rewrite_that_would_not_compile_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate a transformer bug: whatever it produces is broken.
    original = cst_rewrite._Rewriter.leave_Call

    def broken(self, original_node, updated_node):  # type: ignore[no-untyped-def]
        import libcst as cst

        # `await` outside a function parses but does not compile.
        return cst.Await(expression=original(self, original_node, updated_node))

    monkeypatch.setattr(cst_rewrite._Rewriter, "leave_Call", broken)
    result = migrate_source(OLD.encode(), LEGACY)
    assert result.new == OLD.encode()
    assert result.untouched is not None
    assert "would not compile" in result.untouched


def test_concurrent_runs_never_corrupt_a_file(tmp_path: Path) -> None:
    """Two migrate processes on the same tree: every file ends migrated exactly once."""
    import subprocess

    from migrate_helpers import AGENTENGINE

    sources = {f"pkg/m{i:02d}.py": OLD.replace("1, 2, 3", str(i)) for i in range(60)}
    write(tmp_path, sources)
    runs = [
        subprocess.Popen(
            [str(AGENTENGINE), "migrate", "--jobs", "1", "."],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode in {0, 1}, out + err
        assert "Traceback" not in err
    for name, old in sources.items():
        expected = old.replace(
            "from agentengine.legacy import ExecutionEngine",
            "from agentengine import UserExecutionEngine as ExecutionEngine",
        ).replace("ExecutionEngine(", "ExecutionEngine.create_from_legacy(")
        assert (tmp_path / name).read_text() == expected, name
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".migrate")]


@pytest.mark.parametrize("newline", ["\n", "\r"])  # "\r": libcst does not round-trip: text
def test_relative_imports_resolve_the_same_in_both_rewriters(newline: str) -> None:
    source = newline.join(
        ["from .legacy import ExecutionEngine", "from ..other import x", "print(1)", ""]
    ).encode()
    result = migrate_source(source, LEGACY, package="agentengine")
    assert result.method == ("libcst" if newline == "\n" else "text")
    expected = "from agentengine import UserExecutionEngine as ExecutionEngine"
    assert result.new.decode().split(newline)[:2] == [expected, "from ..other import x"]
    assert result.needs_person == []
    # Outside a package the import cannot be resolved, so nothing is claimed or changed.
    assert migrate_source(source, LEGACY, package=None).new == source
