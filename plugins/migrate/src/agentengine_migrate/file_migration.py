"""Migrating one file's source (``migrate_source``; no file I/O): the safety rules.

``migrate.py`` runs this over many files; ``cst_rewrite.py`` and ``text_rewrite.py`` do the
rewriting itself.

The safety rules, in the order they are applied to each file:

1. A file ``ast`` cannot parse (merge-conflict markers, newer syntax) is left as it is.
2. Only the top-level statements that can change are parsed with libcst, each on its own; each
   must be reproduced byte for byte, and every other byte is copied as it is. When a statement
   does not round-trip, the import lines are rewritten as text where that is exact (no comments
   or continuations inside the statement); otherwise the file is left and reported. A lossy
   round trip is never written.
3. Only statements ``check`` reported (and not suppressed with ``noqa``) are touched; local
   names are kept (``from old import X`` -> ``from new import NewX as X``).
4. The result must compile; it is written to a temporary file in the same directory with the
   original permissions, then renamed over the original (never a half-written file).
5. What is left afterwards is exactly what ``check`` still finds in the new text: dynamic uses,
   star imports, imports asserted to fail (inside ``pytest.raises``), unknown names. A second
   run therefore changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import libcst as cst

from agentengine_migrate.cst_rewrite import NoRoundTripError, cst_rewrite
from agentengine_migrate.file_scan import scan_source
from agentengine_migrate.findings import Finding, RewriteTargets
from agentengine_migrate.spec import MigrationSpec
from agentengine_migrate.syntax import merge_conflict_line
from agentengine_migrate.text_rewrite import text_rewrite

__all__ = ["FileMigration", "migrate_source"]


@dataclass
class FileMigration:
    """What migrating one file's text did."""

    display: str
    original: bytes
    new: bytes
    fixed: int = 0
    needs_person: list[Finding] = field(default_factory=list)
    untouched: str | None = None  # why the file was left as it was
    method: str = "libcst"

    @property
    def changed(self) -> bool:
        """True when the text changed."""
        return self.new != self.original


def _person_reason(finding: Finding) -> Finding:
    if "pytest.raises" in finding.context:
        why = "asserted to fail inside pytest.raises; left alone (--include-raises rewrites it)"
    elif finding.code == "AEM004":
        why = "star import: a person must list the names used"
    elif finding.code == "AEM102":
        why = "no module replaces it as a whole: a person must decide"
    elif finding.code in {"AEM103", "AEM104"}:
        why = "dynamic use: a person must decide"
    elif finding.code == "AEM105":
        why = "a bare path: it may be there on purpose (a list of deprecated paths)"
    elif finding.code in {"AEM106", "AEM107"}:
        why = "a mention in text"
    elif finding.code in {"AEM002", "AEM003"}:
        why = "the module object is used directly or its names moved to several modules"
    else:
        why = "no known replacement"
    return replace(finding, message=f"{finding.message} [left: {why}]")


def migrate_source(
    data: bytes,
    spec: MigrationSpec,
    *,
    display: str = "<string>",
    package: str | Callable[[], str | None] | None = None,
    include_raises: bool = False,
    in_deprecated_module: str | None = None,
) -> FileMigration:
    """Migrate one file's bytes (no I/O). See the module docstring for the safety rules.

    ``in_deprecated_module``: the module this file is, when it is itself deprecated (its
    findings are marked so).
    """
    package_name = package() if callable(package) else package
    marked = in_deprecated_module
    before = scan_source(
        data, spec, display=display, package=package_name, in_deprecated_module=marked
    )
    result = FileMigration(display, data, data)
    if not before.findings:
        return result
    if not before.parsed:
        conflict = merge_conflict_line(data)
        result.untouched = (
            f"merge-conflict markers at line {conflict}; resolve the conflict, then migrate"
            if conflict
            else "cannot be parsed by this Python; migrate it with a Python that can"
        )
        result.needs_person = [f for f in before.findings if f.code != "AEM900"]
        return result
    targets = RewriteTargets.of(before.findings, include_raises=include_raises)
    new: bytes | None
    try:
        new = cst_rewrite(data, spec, package_name, targets)
    except (NoRoundTripError, cst.ParserSyntaxError, UnicodeDecodeError):
        new = None
    except SyntaxError as exc:  # after what check parsed (it stops after its last hit)
        result.untouched = f"cannot be parsed (line {exc.lineno}: {exc.msg}); fix it, then migrate"
        result.needs_person = list(before.findings)
        return result
    except Exception as exc:  # a rewriter bug leaves the file as it was, reported
        result.untouched = f"internal error while rewriting ({type(exc).__name__}: {exc})"
        result.needs_person = list(before.findings)
        return result
    if new is None:
        result.method = "text"
        new = text_rewrite(data, spec, package_name, targets)
        if new is None:
            result.untouched = (
                "libcst does not reproduce a statement to change byte for byte, and it holds "
                "a comment or line continuation, so it cannot be rewritten as text either; "
                "rewrite it by hand"
            )
            result.needs_person = list(before.findings)
            return result
    try:
        compile(new, display, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # a bug here must never reach the disk
        result.untouched = f"the rewritten text would not compile ({exc}); left unchanged"
        result.needs_person = list(before.findings)
        return result
    after = scan_source(
        new, spec, display=display, package=package_name, in_deprecated_module=marked
    )
    result.new = new
    result.fixed = len(before.findings) - len(after.findings)
    result.needs_person = [_person_reason(f) for f in after.findings]
    return result
