"""``agentengine migrate`` over many files: atomic writes, worker processes, the diffs and the
summary (``migrate_files``). One file's source is migrated by ``file_migration.py``."""

from __future__ import annotations

import difflib
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentengine_migrate.check import allowed_reason, deprecated_module_of_file, is_candidate
from agentengine_migrate.file_migration import FileMigration, migrate_source
from agentengine_migrate.file_scan import MARKDOWN_SUFFIXES, scan_source
from agentengine_migrate.files import IgnoreRules, display_path, package_of
from agentengine_migrate.findings import Finding
from agentengine_migrate.spec import MigrationSpec
from agentengine_migrate.workers import map_files

__all__ = ["MigrateResult", "migrate_files", "render_summary", "write_atomic"]


def write_atomic(path: Path, data: bytes, expected: bytes | None = None) -> None:
    """Replace ``path``'s content with ``data``: temporary file, fsync, rename.

    Keeps the permission bits; writes through a symlink to its target. With ``expected``,
    refuses (``RuntimeError``) when the file changed since it was read.
    """
    path = path.resolve()
    mode = stat.S_IMODE(path.stat().st_mode)
    if expected is not None and path.read_bytes() != expected:
        raise RuntimeError(f"{path} changed while it was being migrated; run migrate again")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".migrate")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass
class MigrateResult:
    """The outcome of ``migrate_files``."""

    files: int = 0
    changed: list[str] = field(default_factory=list)
    fixed: int = 0
    needs_person: list[Finding] = field(default_factory=list)
    #: Info-level findings (mentions in text) left as they are; they do not fail the run.
    mentions: list[Finding] = field(default_factory=list)
    untouched: dict[str, str] = field(default_factory=dict)
    left_alone: dict[str, str] = field(default_factory=dict)  # allow-listed / shim modules
    diffs: list[str] = field(default_factory=list)


def _diff(migration: FileMigration) -> str:
    old = migration.original.decode("utf-8", "replace").splitlines(keepends=True)
    new = migration.new.decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(old, new, f"a/{migration.display}", f"b/{migration.display}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _migrate_path(
    path: Path, display: str, spec: MigrationSpec, write: bool, include_raises: bool
) -> FileMigration:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return FileMigration(display, b"", b"", untouched=f"cannot read: {exc.strerror or exc}")
    if path.name.endswith(MARKDOWN_SUFFIXES):  # never rewritten: its mentions are listed
        scan = scan_source(data, spec, display=display, markdown=True)
        return FileMigration(display, data, data, needs_person=scan.findings)
    migration = migrate_source(
        data,
        spec,
        display=display,
        package=package_of(path),
        include_raises=include_raises,
        in_deprecated_module=deprecated_module_of_file(path, spec),
    )
    if write and migration.changed:
        try:
            write_atomic(path, migration.new, expected=data)
        except (OSError, RuntimeError) as exc:
            migration.untouched = f"not written: {exc}"
            migration.new = data
    return migration


#: Above this many files to rewrite, libcst work is spread over worker processes.
PARALLEL_THRESHOLD = 300


def migrate_files(
    files: Sequence[Path],
    spec: MigrationSpec,
    *,
    cwd: Path | None = None,
    allow: Sequence[str] = (),
    write: bool = True,
    include_raises: bool = False,
    include_shims: bool = False,
    jobs: int = 0,
) -> MigrateResult:
    """Migrate ``files`` (``write=False``: compute diffs only). Allow-listed files, and shim
    modules unless ``include_shims``, are left alone and listed."""
    cwd = cwd or Path.cwd()
    result = MigrateResult(files=len(files))
    allow_rules = IgnoreRules(spec.root, (*spec.allow, *allow))
    work: list[tuple[Path, str]] = []
    for path in files:
        if not is_candidate(path, spec) and deprecated_module_of_file(path, spec) is None:
            continue
        display = display_path(path, cwd)
        reason = allowed_reason(path, spec, allow_rules, include_shims=include_shims)
        if reason is not None:
            result.left_alone[display] = reason
            continue
        work.append((path, display))
    migrations = map_files(
        _migrate_path, work, (spec, write, include_raises), jobs=jobs, threshold=PARALLEL_THRESHOLD
    )
    for migration in migrations:
        if migration.changed:
            result.changed.append(migration.display)
            result.diffs.append(_diff(migration))
        result.fixed += migration.fixed
        for finding in migration.needs_person:
            target = result.mentions if finding.severity == "info" else result.needs_person
            target.append(finding)
        if migration.untouched:
            result.untouched[migration.display] = migration.untouched
    result.needs_person.sort(key=Finding.sort_key)
    result.mentions.sort(key=Finding.sort_key)
    return result


def render_summary(result: MigrateResult, *, wrote: bool) -> str:
    """The human summary: files changed, findings fixed, what needs a person."""
    verb = "changed" if wrote else "would change"
    lines = [
        (
            f"{len(result.changed)} file(s) {verb} of {result.files} scanned; "
            f"{result.fixed} finding(s) {'fixed' if wrote else 'fixable'}; "
            f"{len(result.needs_person)} need a person"
            + (
                f"; {len(result.mentions)} mention(s) in text left as they are."
                if result.mentions
                else "."
            )
        )
    ]
    for display, why in sorted(result.untouched.items()):
        lines.append(f"left unchanged: {display}: {why}")
    for display, why in sorted(result.left_alone.items()):
        lines.append(f"left alone ({why}): {display}")
    lines.extend(f.text() for f in result.needs_person)
    lines.extend(f.text() for f in result.mentions)
    return "\n".join(lines)
