"""Findings, the codes they carry, and the statements of a file they let ``migrate`` change.

Imports (errors)::

    AEM001  `from old import Name` (absolute or relative)
    AEM002  `import old` / `import old as x`
    AEM003  `from package import old_submodule`
    AEM004  `from old import *` (needs a person: which names are used is not visible)

String references (warnings: the string may be deliberate)::

    AEM101  a mock.patch / monkeypatch target
    AEM102  importlib.import_module / __import__ / find_spec argument
    AEM103  a sys.modules key
    AEM104  a logger name

Files::

    AEM900  the file cannot be parsed (its import lines were scanned as text)
    AEM901  the file cannot be read or decoded
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["RULES", "Finding", "RewriteTargets", "Rule"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One finding code: its name, level and description (SARIF ``rules``)."""

    code: str
    name: str
    severity: Severity
    description: str


_RULE_ROWS = (
    ("AEM001", "deprecated-from-import", "error", "Import of a name from a deprecated module."),
    ("AEM002", "deprecated-module-import", "error", "Import of a deprecated module."),
    ("AEM003", "deprecated-submodule-import", "error", "Import of a deprecated submodule."),
    ("AEM004", "deprecated-star-import", "error", "Star import of a deprecated module."),
    (
        "AEM101",
        "deprecated-patch-target",
        "warning",
        "A mock.patch target names a deprecated path.",
    ),
    ("AEM102", "deprecated-dynamic-import", "warning", "Dynamic import of a deprecated module."),
    (
        "AEM103",
        "deprecated-sys-modules-key",
        "warning",
        "A sys.modules key names a deprecated module.",
    ),
    ("AEM104", "deprecated-logger-name", "warning", "A logger named after a deprecated module."),
    ("AEM900", "unparseable-file", "error", "File cannot be parsed; imports scanned as text."),
    ("AEM901", "unreadable-file", "error", "File cannot be read or decoded."),
)
RULES: dict[str, Rule] = {row[0]: Rule(*row) for row in _RULE_ROWS}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Finding:
    """One use of a deprecated path. Lines and columns are 1-based; columns count characters."""

    path: str
    line: int
    col: int
    code: str
    message: str
    form: str = ""
    context: tuple[str, ...] = ()
    deprecated: str = ""
    replacement: str | None = None
    end_line: int = 0
    end_col: int = 0
    statement_line: int = 0
    statement_end_line: int = 0
    fixable: bool = False

    @property
    def severity(self) -> Severity:
        """``error`` for imports and unparseable files, ``warning`` for string references."""
        return RULES[self.code].severity

    def sort_key(self) -> tuple[str, int, int, str]:
        """Order: path, line, column, code."""
        return (self.path, self.line, self.col, self.code)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--format json``)."""
        data = asdict(self)
        data["context"] = list(self.context)
        data["severity"] = self.severity
        data["end_line"] = self.end_line or self.line
        data["end_col"] = self.end_col or self.col
        data["statement_line"] = self.statement_line or self.line
        data["statement_end_line"] = self.statement_end_line or data["statement_line"]
        return data

    def text(self) -> str:
        """The linter line: ``path:line:col: CODE message``."""
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"


#: The codes of import statements ``migrate`` rewrites (with patch targets, AEM101).
_IMPORT_CODES = frozenset({"AEM001", "AEM002", "AEM003"})


@dataclass(frozen=True, slots=True)
class RewriteTargets:
    """What ``migrate`` may change in one file: the statements ``check`` reported there.

    Both rewriters (libcst and text) take it, so they touch the same statements.
    """

    #: First lines of the import statements reported (AEM001-AEM003).
    import_lines: frozenset[int]
    #: Lines of the fixable ``mock.patch`` targets reported (AEM101).
    string_lines: frozenset[int]
    #: Whether imports inside ``pytest.raises`` blocks are rewritten too.
    include_raises: bool = False

    @classmethod
    def of(cls, findings: Iterable[Finding], *, include_raises: bool = False) -> RewriteTargets:
        """The targets of a file's (unsuppressed) findings."""
        imports: set[int] = set()
        strings: set[int] = set()
        for finding in findings:
            if finding.code in _IMPORT_CODES:
                imports.add(finding.statement_line)
            elif finding.code == "AEM101" and finding.fixable:
                strings.add(finding.line)
        return cls(frozenset(imports), frozenset(strings), include_raises)
