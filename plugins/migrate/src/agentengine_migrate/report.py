"""Output of ``agentengine check``: linter text, JSON, SARIF 2.1.0, and the ruff equivalent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentengine_migrate.check import ScanReport
from agentengine_migrate.findings import RULES, Finding
from agentengine_migrate.spec import MigrationSpec

__all__ = [
    "SARIF_SCHEMA",
    "failing",
    "render_json",
    "render_ruff_config",
    "render_sarif",
    "render_text",
]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_INFO_URI = "https://github.com/agentengine/agentengine/tree/main/docs/migration.md"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentengine-migrate")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0"


def _context_note(finding: Finding) -> str:
    shown = [c for c in finding.context if c not in {"module", "markdown"}]
    if finding.in_deprecated_module is not None:
        shown.append(f"deprecated module {finding.in_deprecated_module}")
    return f" [in {', '.join(shown)}]" if shown else ""


def _levels(findings: list[Finding]) -> dict[str, int]:
    counts = {"error": 0, "warning": 0, "info": 0}
    for finding in findings:
        counts[finding.severity] += 1
    return counts


def failing(report: ScanReport) -> bool:
    """Whether ``check`` exits 1: an error or a warning (info findings alone do not fail)."""
    return any(f.severity != "info" for f in report.findings)


def render_text(report: ScanReport) -> str:
    """``path:line:col: CODE message`` per finding, then a summary line."""
    out = [f"{f.text()}{_context_note(f)}" for f in report.findings]
    levels = _levels(report.findings)
    errors, warnings, infos = levels["error"], levels["warning"], levels["info"]
    extras = []
    if report.suppressed:
        extras.append(f"{report.suppressed} suppressed by noqa")
    if report.allowed:
        extras.append(
            f"{report.allowed_findings} in {len(report.allowed)} allow-listed file(s): "
            + ", ".join(sorted(report.allowed))
        )
    tail = f" ({'; '.join(extras)})" if extras else ""
    if report.findings:
        out.append(
            f"Found {len(report.findings)} use(s) of deprecated paths ({errors} error(s), "
            f"{warnings} warning(s), {infos} info) in {report.files} file(s) scanned{tail}. "
            "`agentengine migrate` rewrites the fixable ones."
        )
    else:
        out.append(f"All clear: no deprecated paths in {report.files} file(s){tail}.")
    return "\n".join(out)


def _summary(report: ScanReport) -> dict[str, Any]:
    levels = _levels(report.findings)
    return {
        "files": report.files,
        "candidates": report.candidates,
        "findings": len(report.findings),
        "errors": levels["error"],
        "warnings": levels["warning"],
        "info": levels["info"],
        "in_deprecated_modules": sum(f.in_deprecated_module is not None for f in report.findings),
        "suppressed": report.suppressed,
        "allowed": dict(sorted(report.allowed.items())),
        "allowed_findings": report.allowed_findings,
        "unparsed": sorted(report.unparsed),
    }


def render_json(report: ScanReport) -> str:
    """``{"version": 1, "findings": [...], "summary": {...}}``."""
    body = {
        "version": 1,
        "findings": [f.to_dict() for f in report.findings],
        "summary": _summary(report),
    }
    return json.dumps(body, indent=2)


#: SARIF has no "info" level; its "note" is the same thing.
_SARIF_LEVELS = {"error": "error", "warning": "warning", "info": "note"}


def _fingerprint(finding: Finding) -> str:
    """Stable across line moves: the code, file, path and names (not the line)."""
    names = ",".join(n.name for n in finding.names)
    return f"{finding.code}:{finding.path}:{finding.deprecated}:{names}"


def render_sarif(report: ScanReport, cwd: Path) -> str:
    """A SARIF 2.1.0 log with one run, for code scanning (paths relative to ``cwd``)."""
    codes = list(RULES)
    rules = [
        {
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": rule.description},
            "fullDescription": {"text": rule.description},
            "helpUri": _INFO_URI,
            "defaultConfiguration": {"level": _SARIF_LEVELS[rule.severity]},
            "properties": {"tags": ["maintainability", "deprecation"]},
        }
        for rule in RULES.values()
    ]
    results = []
    for finding in report.findings:
        relative = not Path(finding.path).is_absolute()
        location: dict[str, Any] = {
            "uri": finding.path if relative else Path(finding.path).as_uri()
        }
        if relative:
            location["uriBaseId"] = "%SRCROOT%"
        region = {
            "startLine": finding.line,
            "startColumn": finding.col,
            "endLine": finding.end_line or finding.line,
            "endColumn": finding.end_col or finding.col + 1,
        }
        if (
            region["endLine"] == region["startLine"]
            and region["endColumn"] <= region["startColumn"]
        ):
            region["endColumn"] = region["startColumn"] + 1
        results.append(
            {
                "ruleId": finding.code,
                "ruleIndex": codes.index(finding.code),
                "level": _SARIF_LEVELS[finding.severity],
                "message": {"text": finding.message},
                "locations": [
                    {"physicalLocation": {"artifactLocation": location, "region": region}}
                ],
                "partialFingerprints": {"agentengineMigrate/v1": _fingerprint(finding)},
                "properties": {
                    "form": finding.form,
                    "context": list(finding.context),
                    "deprecated": finding.deprecated,
                    "replacement": finding.replacement,
                    "names": [n.name for n in finding.names],
                    "inDeprecatedModule": finding.in_deprecated_module,
                },
            }
        )
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "agentengine-migrate",
                        "version": _version(),
                        "informationUri": _INFO_URI,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": cwd.resolve().as_uri() + "/"}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2)


def render_ruff_config(spec: MigrationSpec) -> str:
    """The ruff ``banned-api`` table banning the same modules (TID251: the import half)."""
    lines = [
        "# The import half of `agentengine check`, for ruff (rule TID251).",
        f"# Generated from {spec.source} (presets: {', '.join(spec.presets) or 'none'}).",
        "# ruff does not see string references (patch and import targets, bare paths,",
        "# mentions), files that do not parse (merge conflicts) or Markdown: keep",
        "# `agentengine check` in CI for those.",
        "[tool.ruff.lint]",
        'extend-select = ["TID251"]',
        "",
        "[tool.ruff.lint.flake8-tidy-imports.banned-api]",
    ]
    for module in sorted(spec.modules):
        rule = spec.modules[module]
        advice = f"Deprecated: use {rule.describe_replacement()}; run `agentengine migrate`."
        lines.append(f"{json.dumps(module)}.msg = {json.dumps(advice)}")
    return "\n".join(lines) + "\n"
