"""The removal gate (``agentengine check --removal-report``): may a deprecated module go?

For each deprecated module asked about, from one scan: the importers and string references
still left (these block its removal, including those in allow-listed files and those a
``# noqa`` hides, since they break all the same when the module is deleted), the references
from files that are removed with it (its own files and those of other modules asked about:
they do not block), and mentions in text (info: listed, they do not block). A module is
"safe to remove" when nothing blocks it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agentengine_migrate.check import ScanReport
from agentengine_migrate.findings import IMPORT_CODES, Finding
from agentengine_migrate.spec import MigrationSpec

__all__ = ["ModuleRemoval", "removal_report", "render_removal_json", "render_removal_text"]


@dataclass
class ModuleRemoval:
    """What is left of one deprecated module before it can be deleted."""

    module: str
    #: The module's own files found among those scanned (display paths).
    files: list[str] = field(default_factory=list)
    #: Imports of the module (or its submodules) outside the modules removed with it.
    importers: list[Finding] = field(default_factory=list)
    #: Patch and import targets, sys.modules keys, logger names and bare paths naming it.
    references: list[Finding] = field(default_factory=list)
    #: References from files that are deleted together with it (they do not block).
    removed_with_it: list[Finding] = field(default_factory=list)
    #: Mentions in text: docstrings, messages, Markdown (info; they do not block).
    mentions: list[Finding] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        """True when no importer and no string reference is left."""
        return not self.importers and not self.references


def _within(path: str, module: str) -> bool:
    return path == module or path.startswith(module + ".")


def _refers_to(finding: Finding, module: str) -> bool:
    return any(_within(ref.replace(":", "."), module) for ref in finding.referenced())


def unknown_modules(spec: MigrationSpec, modules: Iterable[str]) -> list[str]:
    """The names in ``modules`` that are not deprecated modules of the spec."""
    return [m for m in modules if m not in spec.modules]


def removal_report(
    report: ScanReport, spec: MigrationSpec, modules: Sequence[str] = ()
) -> list[ModuleRemoval]:
    """The gate for ``modules`` (default: every deprecated module of the spec), from a scan
    made with every code selected (``scan_files(..., every_code=True)``)."""
    asked = list(modules) or sorted(spec.modules)
    findings = [*report.findings, *report.allowed_list, *report.suppressed_list]
    out = []
    for module in asked:
        entry = ModuleRemoval(module)
        entry.files = sorted(p for p, m in report.module_files.items() if _within(m, module))
        for finding in findings:
            if not _refers_to(finding, module):
                continue
            home = finding.in_deprecated_module
            if finding.severity == "info":
                entry.mentions.append(finding)
            elif home is not None and any(_within(home, m) for m in asked):
                entry.removed_with_it.append(finding)
            elif finding.code in IMPORT_CODES:
                entry.importers.append(finding)
            else:
                entry.references.append(finding)
        for found in (entry.importers, entry.references, entry.removed_with_it, entry.mentions):
            found.sort(key=Finding.sort_key)
        out.append(entry)
    return out


def _why(finding: Finding, report: ScanReport) -> str:
    notes = []
    if finding in report.suppressed_list:
        notes.append("suppressed by noqa, still breaks")
    if finding in report.allowed_list:
        notes.append("allow-listed, still breaks")
    if finding.in_deprecated_module is not None:
        notes.append(f"in deprecated module {finding.in_deprecated_module}")
    return f" [{'; '.join(notes)}]" if notes else ""


def render_removal_text(entries: Sequence[ModuleRemoval], report: ScanReport) -> str:
    """Per module: safe to remove, or what is left; then one summary line."""
    out: list[str] = []
    for entry in entries:
        files = f" (module files: {', '.join(entry.files)})" if entry.files else ""
        extra = []
        if entry.removed_with_it:
            extra.append(f"{len(entry.removed_with_it)} from modules removed with it")
        if entry.mentions:
            extra.append(f"{len(entry.mentions)} mention(s) in text")
        tail = f"; {', '.join(extra)} (do not block)" if extra else ""
        if entry.safe:
            out.append(f"{entry.module}: safe to remove{files}{tail}")
        else:
            out.append(
                f"{entry.module}: NOT safe to remove: {len(entry.importers)} importer(s), "
                f"{len(entry.references)} string reference(s) left{files}{tail}"
            )
        out.extend(f"  {f.text()}{_why(f, report)}" for f in (*entry.importers, *entry.references))
        out.extend(f"  (removed with it) {f.text()}" for f in entry.removed_with_it)
        out.extend(f"  (mention) {f.text()}" for f in entry.mentions)
    safe = sum(e.safe for e in entries)
    out.append(
        f"Removal report: {safe} of {len(entries)} module(s) safe to remove "
        f"({report.files} file(s) scanned)."
    )
    return "\n".join(out)


def render_removal_json(entries: Sequence[ModuleRemoval], report: ScanReport) -> str:
    """``{"version": 1, "modules": [...], "summary": {...}}``."""
    body = {
        "version": 1,
        "modules": [
            {
                "module": e.module,
                "safe": e.safe,
                "files": e.files,
                "importers": [f.to_dict() for f in e.importers],
                "references": [f.to_dict() for f in e.references],
                "removed_with_it": [f.to_dict() for f in e.removed_with_it],
                "mentions": [f.to_dict() for f in e.mentions],
            }
            for e in entries
        ],
        "summary": {
            "files": report.files,
            "modules": len(entries),
            "safe": sum(e.safe for e in entries),
        },
    }
    return json.dumps(body, indent=2)
