"""``agentengine check`` over many files: the prefilter, worker processes, allow-lists and shim
modules (``scan_files``). One file's source is scanned by ``file_scan.py``; the removal report
built from a scan is ``removal.py``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentengine_migrate.file_scan import MARKDOWN_SUFFIXES, FileScan, might_use, scan_source
from agentengine_migrate.files import (
    PYTHON_SUFFIXES,
    IgnoreRules,
    display_path,
    module_name_of,
    package_of,
    relative_posix,
)
from agentengine_migrate.findings import Finding
from agentengine_migrate.spec import MigrationSpec
from agentengine_migrate.workers import map_files

__all__ = [
    "ScanReport",
    "allowed_reason",
    "deprecated_module_of_file",
    "is_allow_listed",
    "is_candidate",
    "scan_files",
]

#: Above this many candidate files, parsing is spread over worker processes.
PARALLEL_THRESHOLD = 200


def _scan_path(path: Path, display: str, spec: MigrationSpec, every_code: bool) -> FileScan:
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
    return scan_source(
        data,
        spec,
        display=display,
        package=lambda: package_of(path),
        in_deprecated_module=deprecated_module_of_file(path, spec),
        markdown=path.name.endswith(MARKDOWN_SUFFIXES),
        every_code=every_code,
    )


@dataclass
class ScanReport:
    """The outcome of a whole run.

    ``findings`` are reported (shim modules included, marked ``in_deprecated_module``);
    ``allowed_list`` (allow-listed files) and ``suppressed_list`` (``# noqa``) are only counted
    in the summary, but the removal report counts them: they break when a module goes.
    ``module_files``: the scanned files that are deprecated modules (display path -> module).
    """

    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    candidates: int = 0
    allowed: dict[str, str] = field(default_factory=dict)
    allowed_list: list[Finding] = field(default_factory=list)
    suppressed_list: list[Finding] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)
    module_files: dict[str, str] = field(default_factory=dict)

    @property
    def suppressed(self) -> int:
        """How many findings ``# noqa`` suppressed."""
        return len(self.suppressed_list)

    @property
    def allowed_findings(self) -> int:
        """How many findings were in allow-listed files."""
        return len(self.allowed_list)


def is_candidate(path: Path, spec: MigrationSpec) -> bool:
    """Whether the file at ``path`` passes the byte prefilter (unreadable files do)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return True  # reported as unreadable by the scan
    return might_use(data, spec.last_segments(), spec.module_bytes)


def deprecated_module_of_file(path: Path, spec: MigrationSpec) -> str | None:
    """The module ``path`` is when it is itself deprecated (a shim), or None.

    A submodule of a deprecated package is deprecated too (``agentengine/legacy/names.py``).
    """
    if not path.name.endswith(PYTHON_SUFFIXES):
        return None
    text = path.as_posix()
    if not any(segment in text for segment in spec.last_segment_names()):
        return None  # cheap: a deprecated module's file has its last segment in its path
    module = module_name_of(path)
    if module is None or spec.rule_for(module) is None:
        return None
    return module


def scan_files(
    files: Sequence[Path],
    spec: MigrationSpec,
    *,
    cwd: Path | None = None,
    allow: Sequence[str] = (),
    jobs: int = 0,
    every_code: bool = False,
) -> ScanReport:
    """Scan ``files``; findings in allow-listed files are counted, not reported.

    Files that are deprecated modules themselves (shims) are reported, each finding marked
    with the module (``in_deprecated_module``). ``jobs``: worker processes for parsing (0: one
    per CPU, only when there are many candidates; 1: none; N: N workers). ``every_code``:
    ignore the spec's ``select``/``ignore`` (the removal report counts everything).
    """
    cwd = cwd or Path.cwd()
    report = ScanReport(files=len(files))
    shims: set[Path] = set()
    for path in files:
        module = deprecated_module_of_file(path, spec)
        if module is not None:
            shims.add(path)
            report.module_files[display_path(path, cwd)] = module
    candidates = [p for p in files if p in shims or is_candidate(p, spec)]
    report.candidates = len(candidates)
    allow_rules = IgnoreRules(spec.root, (*spec.allow, *allow))
    work = [(p, display_path(p, cwd)) for p in candidates]
    scans = map_files(_scan_path, work, (spec, every_code), jobs=jobs, threshold=PARALLEL_THRESHOLD)
    for path, scan in zip(candidates, scans, strict=True):
        if is_allow_listed(path, spec, allow_rules):
            if scan.findings or scan.suppressed_findings:
                report.allowed[scan.display] = "allow-list"
                report.allowed_list.extend(scan.findings)
                report.allowed_list.extend(scan.suppressed_findings)
            continue
        report.findings.extend(scan.findings)
        report.suppressed_list.extend(scan.suppressed_findings)
        if not scan.parsed:
            report.unparsed.append(scan.display)
    report.findings.sort(key=Finding.sort_key)
    return report


def is_allow_listed(path: Path, spec: MigrationSpec, allow_rules: IgnoreRules) -> bool:
    """Whether ``path`` is in the spec's ``allow`` list (or ``--allow``)."""
    relative = relative_posix(path.resolve(), spec.root)
    return (
        relative is not None
        and bool(allow_rules.patterns)
        and bool(allow_rules.verdict(relative, False))
    )


def allowed_reason(
    path: Path, spec: MigrationSpec, allow_rules: IgnoreRules, *, include_shims: bool = False
) -> str | None:
    """Why ``migrate`` leaves ``path`` alone (allow-list, or it is a shim module), or None."""
    if is_allow_listed(path, spec, allow_rules):
        return "allow-list"
    module = deprecated_module_of_file(path, spec)
    if module is not None and not include_shims:
        return f"shim module {module}; --include-shims migrates it"
    return None
