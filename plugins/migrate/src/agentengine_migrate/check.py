"""``agentengine check`` over many files: the prefilter, worker processes, allow-lists and shim
modules (``scan_files``). One file's source is scanned by ``file_scan.py``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentengine_migrate.file_scan import FileScan, might_use, scan_source
from agentengine_migrate.files import (
    IgnoreRules,
    display_path,
    module_name_of,
    package_of,
    relative_posix,
)
from agentengine_migrate.findings import Finding
from agentengine_migrate.spec import MigrationSpec
from agentengine_migrate.workers import map_files

__all__ = ["ScanReport", "allowed_reason", "is_candidate", "scan_files"]

#: Above this many candidate files, parsing is spread over worker processes.
PARALLEL_THRESHOLD = 200


def _scan_path(path: Path, display: str, spec: MigrationSpec) -> FileScan:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return FileScan(
            display,
            [
                Finding(
                    path=display,
                    line=1,
                    col=1,
                    code="AEM901",
                    message=f"cannot read the file: {exc.strerror or exc}",
                    form="file",
                )
            ],
            parsed=False,
        )
    return scan_source(data, spec, display=display, package=lambda: package_of(path))


@dataclass
class ScanReport:
    """The outcome of a whole run."""

    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    candidates: int = 0
    suppressed: int = 0
    allowed: dict[str, str] = field(default_factory=dict)
    allowed_findings: int = 0
    unparsed: list[str] = field(default_factory=list)


def is_candidate(path: Path, segments: Sequence[bytes]) -> bool:
    """Whether the file at ``path`` passes the byte prefilter (unreadable files do)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return True  # reported as unreadable by the scan
    return might_use(data, segments)


def scan_files(
    files: Sequence[Path],
    spec: MigrationSpec,
    *,
    cwd: Path | None = None,
    allow: Sequence[str] = (),
    jobs: int = 0,
) -> ScanReport:
    """Scan ``files``; findings in allow-listed files and shim modules are counted, not reported.

    ``jobs``: worker processes for parsing (0: one per CPU, only when there are many
    candidates; 1: none; N: N workers).
    """
    cwd = cwd or Path.cwd()
    segments = spec.last_segments()
    report = ScanReport(files=len(files))
    candidates = [p for p in files if is_candidate(p, segments)]
    report.candidates = len(candidates)
    allow_rules = IgnoreRules(spec.root, (*spec.allow, *allow))
    work = [(p, display_path(p, cwd)) for p in candidates]
    scans = map_files(_scan_path, work, (spec,), jobs=jobs, threshold=PARALLEL_THRESHOLD)
    for path, scan in zip(candidates, scans, strict=True):
        reason = allowed_reason(path, spec, allow_rules)
        if reason is not None and scan.findings:
            report.allowed[scan.display] = reason
            report.allowed_findings += len(scan.findings)
            continue
        report.findings.extend(scan.findings)
        report.suppressed += scan.suppressed
        if not scan.parsed:
            report.unparsed.append(scan.display)
    report.findings.sort(key=Finding.sort_key)
    return report


def allowed_reason(path: Path, spec: MigrationSpec, allow_rules: IgnoreRules) -> str | None:
    """Why ``path`` may use deprecated paths (allow-list, or it is a shim module), or None."""
    relative = relative_posix(path.resolve(), spec.root)
    if relative is not None and allow_rules.patterns and allow_rules.verdict(relative, False):
        return "allow-list"
    module = module_name_of(path)
    if module is not None and module in spec.modules:
        return f"shim module {module}"
    return None
