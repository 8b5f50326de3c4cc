"""Golden before/after files: ``golden/<case>.before`` migrates to ``golden/<case>.after``."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from agentengine_migrate.file_migration import migrate_source
from agentengine_migrate.file_scan import scan_source
from agentengine_migrate.spec import build_spec, load_spec
from migrate_helpers import Cli

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = tomllib.loads((GOLDEN / "cases.toml").read_text())
CASES = sorted(p.stem for p in GOLDEN.glob("*.before"))
# Files left as they were, on purpose: the rewrite could not be exact.
LEFT_UNCHANGED = {"merge_conflict", "cr_comment_inside", "star_and_dynamic", "shim_conflicted"}
UNPARSEABLE = {"merge_conflict", "shim_conflicted"}


def _spec(case: str):
    settings = SETTINGS.get(case, {})
    if "spec" in settings:
        return load_spec(GOLDEN / settings["spec"])
    return build_spec({}, presets=settings.get("presets"))


def _shim_module(case: str) -> str | None:
    """The module a shim case's file is (``package.case``), for the deprecated-module mark."""
    settings = SETTINGS.get(case, {})
    return f"{settings['package']}.{case}" if settings.get("shim") else None


def test_every_form_has_a_golden_case() -> None:
    assert set(CASES) >= {
        "from_import", "aliases", "multiline_comments", "both_styles", "module_alias",
        "relative", "guarded", "mock_patch", "star_and_dynamic", "merge_conflict",
        "no_roundtrip", "no_roundtrip_comment", "noqa", "semicolons", "netra_mixed",
        "cr_line_endings", "cr_comment_inside", "string_kinds", "shim_chain",
        "shim_conflicted", "noqa_statement", "multiline_guarded_aliases",
    }  # fmt: skip
    for case in CASES:
        assert (GOLDEN / f"{case}.after").is_file(), f"golden/{case}.after is missing"


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    before = (GOLDEN / f"{case}.before").read_bytes()
    after = (GOLDEN / f"{case}.after").read_bytes()
    spec = _spec(case)
    package = SETTINGS.get(case, {}).get("package")
    shim = _shim_module(case)
    result = migrate_source(before, spec, display=case, package=package, in_deprecated_module=shim)
    assert result.new == after
    assert (result.new == before) == (case in LEFT_UNCHANGED)
    if shim is not None:  # each finding is marked as inside a deprecated module
        assert result.needs_person
        assert {f.in_deprecated_module for f in result.needs_person} == {shim}
    # A second pass is a no-op.
    again = migrate_source(result.new, spec, display=case, package=package)
    assert again.new == result.new
    if case not in UNPARSEABLE:
        compile(result.new, case, "exec")
        # Whatever is still reported is exactly what the summary lists for a person.
        remaining = scan_source(result.new, spec, display=case, package=package).findings
        assert [(f.line, f.code) for f in remaining] == [
            (f.line, f.code) for f in result.needs_person
        ]


def test_files_libcst_does_not_roundtrip() -> None:
    import libcst

    def load(case: str) -> bytes:
        return (GOLDEN / f"{case}.before").read_bytes()

    for case in ("no_roundtrip", "no_roundtrip_comment", "cr_line_endings", "cr_comment_inside"):
        assert libcst.parse_module(load(case)).bytes != load(case), f"{case} round-trips"
    # The statements to change round-trip on their own: libcst rewrites them, exactly.
    for case in ("no_roundtrip", "no_roundtrip_comment"):
        assert migrate_source(load(case), _spec(case)).method == "libcst"
    # With lone CR line endings not even a statement round-trips: the text fallback ...
    assert migrate_source(load("cr_line_endings"), _spec("cr_line_endings")).method == "text"
    # ... which refuses a statement holding a comment: the file is left and reported.
    left = migrate_source(load("cr_comment_inside"), _spec("cr_comment_inside"))
    assert left.untouched is not None
    assert "byte for byte" in left.untouched
    assert [f.code for f in left.needs_person] == ["AEM001"]


def test_golden_end_to_end_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    """The same cases, migrated in place on disk by `agentengine migrate`."""
    groups: dict[tuple[tuple[str, ...], str, bool], list[str]] = {}
    for case in CASES:
        settings = SETTINGS.get(case, {})
        key = (tuple(settings.get("presets", ())), settings.get("spec", ""), "shim" in settings)
        groups.setdefault(key, []).append(case)
    for index, ((presets, spec_file, shims), cases) in enumerate(sorted(groups.items())):
        root = tmp_path / f"group{index}"
        for case in cases:
            package = SETTINGS.get(case, {}).get("package")
            directory = root / package.replace(".", "/") if package else root
            directory.mkdir(parents=True, exist_ok=True)
            if package:
                (directory / "__init__.py").write_text("")
            shutil.copyfile(GOLDEN / f"{case}.before", directory / f"{case}.py")
        options = [arg for p in presets for arg in ("--preset", p)]
        if spec_file:
            options += ["--spec", str(GOLDEN / spec_file)]
        if shims:
            options.append("--include-shims")
        result = cli("migrate", *options, ".", cwd=root)
        pending = any(
            f.severity != "info"
            for c in cases
            for f in migrate_source(
                (GOLDEN / f"{c}.before").read_bytes(),
                _spec(c),
                package=SETTINGS.get(c, {}).get("package"),
            ).needs_person
        )
        assert result.returncode == (1 if pending else 0), result.stdout + result.stderr
        for case in cases:
            package = SETTINGS.get(case, {}).get("package")
            directory = root / package.replace(".", "/") if package else root
            migrated = (directory / f"{case}.py").read_bytes()
            assert migrated == (GOLDEN / f"{case}.after").read_bytes(), case
        second = cli("migrate", *options, ".", cwd=root)
        assert second.stdout.startswith("0 file(s) changed"), second.stdout
