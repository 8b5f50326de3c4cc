"""Findings, the codes they carry, and the statements of a file they let ``migrate`` change.

Imports (errors), placed where ruff's TID251 places them: one finding per ``from old import
...`` statement at its first line (the names it imports in ``names``), one per deprecated
module of an ``import a, b`` statement and per deprecated submodule of ``from pkg import
sub``, at that name::

    AEM001  `from old import Name, Other as O` (absolute or relative)
    AEM002  `import old` / `import old as x`
    AEM003  `from package import old_submodule`
    AEM004  `from old import *` (needs a person: which names are used is not visible)

String references, one code per kind so that a team can select them::

    AEM101  error    a mock.patch / monkeypatch target
    AEM102  error    importlib.import_module / __import__ / find_spec argument
    AEM103  warning  a sys.modules key
    AEM104  warning  a logger name
    AEM105  warning  a bare dotted path (in a list, dict, tuple, assignment, annotation, ...)
    AEM106  info     a mention inside a longer string (a message, a docstring)
    AEM107  info     a mention in a Markdown file

Files::

    AEM900  the file cannot be parsed (its import lines were scanned as text)
    AEM901  the file cannot be read or decoded
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = [
    "IMPORT_CODES",
    "RULES",
    "Finding",
    "ImportedName",
    "RewriteTargets",
    "Rule",
    "select_codes",
]

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One finding code: its name, level and description (SARIF ``rules``)."""

    code: str
    name: str
    severity: Severity
    description: str


_RULE_ROWS = (
    ("AEM001", "deprecated-from-import", "error", "Import of names from a deprecated module."),
    ("AEM002", "deprecated-module-import", "error", "Import of a deprecated module."),
    ("AEM003", "deprecated-submodule-import", "error", "Import of a deprecated submodule."),
    ("AEM004", "deprecated-star-import", "error", "Star import of a deprecated module."),
    ("AEM101", "deprecated-patch-target", "error", "A mock.patch target names a deprecated path."),
    ("AEM102", "deprecated-dynamic-import", "error", "Dynamic import of a deprecated module."),
    (
        "AEM103",
        "deprecated-sys-modules-key",
        "warning",
        "A sys.modules key names a deprecated module.",
    ),
    ("AEM104", "deprecated-logger-name", "warning", "A logger named after a deprecated module."),
    ("AEM105", "deprecated-bare-path", "warning", "A string that is a deprecated dotted path."),
    ("AEM106", "deprecated-path-mention", "info", "A string mentions a deprecated path."),
    ("AEM107", "deprecated-path-in-markdown", "info", "Markdown mentions a deprecated path."),
    ("AEM900", "unparseable-file", "error", "File cannot be parsed; imports scanned as text."),
    ("AEM901", "unreadable-file", "error", "File cannot be read or decoded."),
)
RULES: dict[str, Rule] = {row[0]: Rule(*row) for row in _RULE_ROWS}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ImportedName:
    """One name of an import statement (``--format json`` keeps them inside the finding)."""

    name: str
    asname: str | None
    line: int
    col: int
    deprecated: str
    replacement: str | None = None
    fixable: bool = False


@dataclass(frozen=True, slots=True)
class Finding:
    """One use of a deprecated path. Lines and columns are 1-based; columns count characters.

    ``names``: for an import statement, each name it imports with its own replacement.
    ``in_deprecated_module``: the module this file is, when it is itself deprecated (a shim).
    """

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
    names: tuple[ImportedName, ...] = ()
    in_deprecated_module: str | None = None

    @property
    def severity(self) -> Severity:
        """``error``, ``warning`` or ``info``: the level of the finding's code."""
        return RULES[self.code].severity

    def sort_key(self) -> tuple[str, int, int, str]:
        """Order: path, line, column, code."""
        return (self.path, self.line, self.col, self.code)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--format json``)."""
        data = asdict(self)
        data["context"] = list(self.context)
        data["names"] = [asdict(n) for n in self.names]
        data["severity"] = self.severity
        data["end_line"] = self.end_line or self.line
        data["end_col"] = self.end_col or self.col
        data["statement_line"] = self.statement_line or self.line
        data["statement_end_line"] = self.statement_end_line or data["statement_line"]
        return data

    def text(self) -> str:
        """The linter line: ``path:line:col: CODE message``."""
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"

    def referenced(self) -> tuple[str, ...]:
        """The deprecated dotted paths this finding refers to (per name for imports)."""
        if self.names:
            return tuple(n.deprecated for n in self.names)
        return (self.deprecated,) if self.deprecated else ()


#: The import codes (ruff's TID251 reports the same statements).
IMPORT_CODES = frozenset({"AEM001", "AEM002", "AEM003", "AEM004"})


def select_codes(select: Iterable[str] = (), ignore: Iterable[str] = ()) -> frozenset[str]:
    """The codes ``select`` and ``ignore`` leave (prefixes, as in ruff: ``AEM1`` is AEM1xx).

    An empty ``select`` selects every code; ``ALL`` too. Raises ``ValueError`` naming a
    selector that matches no code.
    """

    def matching(selector: str) -> set[str]:
        wanted = selector.strip().upper()
        found = set(RULES) if wanted == "ALL" else {c for c in RULES if c.startswith(wanted)}
        if not found or not wanted:
            raise ValueError(
                f"unknown code {selector!r}; known codes: {', '.join(RULES)} "
                "(a prefix such as AEM1 selects AEM101-AEM107)"
            )
        return found

    chosen: set[str] = set()
    for selector in select:
        chosen |= matching(selector)
    if not chosen:
        chosen = set(RULES)
    for selector in ignore:
        chosen -= matching(selector)
    return frozenset(chosen)


#: The codes of import statements ``migrate`` rewrites.
_REWRITTEN_IMPORTS = frozenset({"AEM001", "AEM002", "AEM003"})
#: The string references ``migrate`` rewrites when their path has a known replacement.
_REWRITTEN_STRINGS = frozenset({"AEM101", "AEM102"})


@dataclass(frozen=True, slots=True)
class RewriteTargets:
    """What ``migrate`` may change in one file: the statements ``check`` reported there.

    Both rewriters (libcst and text) take it, so they touch the same statements.
    """

    #: First lines of the import statements reported (AEM001-AEM003).
    import_lines: frozenset[int]
    #: Lines of the fixable patch and import targets reported (AEM101, AEM102).
    string_lines: frozenset[int]
    #: Whether imports inside ``pytest.raises`` blocks are rewritten too.
    include_raises: bool = False

    @classmethod
    def of(cls, findings: Iterable[Finding], *, include_raises: bool = False) -> RewriteTargets:
        """The targets of a file's (unsuppressed) findings."""
        imports: set[int] = set()
        strings: set[int] = set()
        for finding in findings:
            if finding.code in _REWRITTEN_IMPORTS:
                imports.add(finding.statement_line)
            elif finding.code in _REWRITTEN_STRINGS and finding.fixable:
                strings.add(finding.line)
        return cls(frozenset(imports), frozenset(strings), include_raises)
