"""Scanning one file's source for uses of deprecated paths (``scan_source``; no file I/O).

``check.py`` runs this over many files. The hot path is written for files that do not use a
deprecated path, which is nearly all of them: each file's bytes are searched for the last
segment of every deprecated module (``bytes.find`` is a C loop); only files containing one are
parsed, and only the statements spanning a line that contains one are visited (and when the
file up to its last such line is a module on its own, only that part is parsed). Files that
cannot be parsed (merge-conflict markers, syntax newer than the running Python) are reported
and scanned line by line.

Findings are placed where ruff's TID251 places them (one per ``from old import ...``
statement, at its first line), and ``# noqa`` is read as ruff reads it: on the line where the
finding starts, or, when that line ends with a backslash continuation or lies in a multi-line
string, on the last line of the continuation or the string.
"""

from __future__ import annotations

import ast
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from agentengine_migrate.findings import IMPORT_CODES, Finding, ImportedName
from agentengine_migrate.spec import MigrationSpec, ModuleRule
from agentengine_migrate.syntax import (
    absolute_module,
    dotted_name,
    is_import_call,
    is_patch_call,
    is_raises_item,
    line_of,
    merge_conflict_line,
)

__all__ = ["FileScan", "might_use", "scan_source"]

_LOGGER_CALLS = frozenset(
    {"getLogger", "logging.getLogger", "get_logger", "structlog.get_logger", "structlog.getLogger"}
)
_SYS_MODULES_METHODS = frozenset({"get", "pop", "setdefault", "__contains__", "__getitem__"})
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})
_NOQA_RE = re.compile(rb"#\s*noqa", re.IGNORECASE)
# ruff's syntax: codes are upper case, separated by commas and/or spaces.
_NOQA_CODES_RE = re.compile(rb"\s*(?P<codes>[A-Z]+[0-9]+(?:(?:\s*,\s*|\s+)[A-Z]+[0-9]+)*)")
#: A noqa directive naming TID251 (ruff's banned-api rule) also suppresses the same import
#: finding here.
_RUFF_EQUIVALENT = {"TID251": IMPORT_CODES}


def _str_arg(call: ast.Call, keyword: str | None = None) -> ast.Constant | None:
    if call.args:
        first = call.args[0]
    else:
        found = [k.value for k in call.keywords if k.arg == keyword] if keyword else []
        if not found:
            return None
        first = found[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first
    return None


def _handler_names(handler: ast.ExceptHandler) -> set[str]:
    kind = handler.type
    if kind is None:
        return set()
    nodes = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    return {(dotted_name(n) or "").rpartition(".")[2] for n in nodes}


def _is_type_checking(test: ast.expr) -> bool:
    return (dotted_name(test) or "").rpartition(".")[2] == "TYPE_CHECKING"


def _alias_text(name: str, asname: str | None) -> str:
    return f"{name} as {asname}" if asname and asname != name else name


def _alias_statement(module: str, name: str, asname: str | None) -> str:
    return f"from {module} import {_alias_text(name, asname)}"


def _from_statement(module: str, names: Sequence[tuple[str, str | None]]) -> str:
    return f"from {module} import {', '.join(_alias_text(n, a) for n, a in names)}"


#: A found use before selection and ``noqa``: the finding and the line its ``noqa`` is on.
_Found = tuple[Finding, int]


class _FileScanner:
    """Visits the statements of one parsed file that span a candidate line."""

    def __init__(
        self,
        spec: MigrationSpec,
        display: str,
        lines: Sequence[bytes],
        candidates: list[int],
        package: Callable[[], str | None],
    ) -> None:
        self.spec = spec
        self.display = display
        self.lines = lines
        self.candidates = candidates
        self.package = package
        self.found: list[_Found] = []

    # -- helpers ---------------------------------------------------------------------------

    def _touches(self, first: int, last: int) -> bool:
        index = bisect_left(self.candidates, first)
        return index < len(self.candidates) and self.candidates[index] <= last

    def _col(self, line: int, byte_offset: int) -> int:
        if 0 < line <= len(self.lines):
            return len(self.lines[line - 1][:byte_offset].decode("utf-8", "replace")) + 1
        return byte_offset + 1

    def _noqa_line(self, line: int) -> int:
        """ruff's noqa line: past the backslash continuations that start at ``line``."""
        while 0 < line < len(self.lines) and self.lines[line - 1].endswith(b"\\"):
            line += 1
        return line

    def _add(
        self,
        node: ast.AST,
        statement: ast.AST | None,
        *,
        noqa: int | None = None,
        at: tuple[int, int, int, int] | None = None,
        **kwargs: object,
    ) -> None:
        """Record a finding at ``node`` (or at ``at``: line, col, end line, end col)."""
        if at is not None:
            line, col, end_line, end_col = at
        else:
            line = node.lineno  # type: ignore[attr-defined]
            col = self._col(line, node.col_offset)  # type: ignore[attr-defined]
            end_line = getattr(node, "end_lineno", None) or line
            end_offset = getattr(node, "end_col_offset", None)
            end_col = self._col(end_line, end_offset) if end_offset is not None else 0
        finding = Finding(
            path=self.display,
            line=line,
            col=col,
            end_line=end_line,
            end_col=end_col,
            statement_line=getattr(statement or node, "lineno", line),
            statement_end_line=getattr(statement or node, "end_lineno", None) or end_line,
            **kwargs,  # type: ignore[arg-type]
        )
        self.found.append((finding, self._noqa_line(noqa or line)))

    @staticmethod
    def _note(rule: ModuleRule) -> str:
        return f" ({rule.message})" if rule.message else ""

    # -- statements ------------------------------------------------------------------------

    def statements(self, body: Iterable[ast.stmt], ctx: tuple[str, ...]) -> None:
        for node in body:
            first = node.lineno
            decorators = getattr(node, "decorator_list", None)
            if decorators:
                first = min(first, *(d.lineno for d in decorators))
            if not self._touches(first, node.end_lineno or node.lineno):
                continue
            if isinstance(node, ast.Import):
                self.import_(node, ctx)
            elif isinstance(node, ast.ImportFrom):
                self.import_from(node, ctx)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.expressions([*node.decorator_list, node.args], ctx)
                if node.returns is not None:
                    self.expressions([node.returns], ctx)
                self.statements(node.body, (*ctx, "function"))
            elif isinstance(node, ast.ClassDef):
                self.expressions([*node.decorator_list, *node.bases, *node.keywords], ctx)
                self.statements(node.body, (*ctx, "class"))
            elif isinstance(node, ast.If):
                self.expressions([node.test], ctx)
                inner = (*ctx, "if TYPE_CHECKING") if _is_type_checking(node.test) else ctx
                self.statements(node.body, inner)
                self.statements(node.orelse, ctx)
            elif isinstance(node, ast.Try | ast.TryStar):
                caught = set().union(*(_handler_names(h) for h in node.handlers))
                guarded = bool(caught & _IMPORT_ERRORS)
                self.statements(node.body, (*ctx, "try/except ImportError") if guarded else ctx)
                for handler in node.handlers:
                    inner = (*ctx, "except ImportError") if guarded else ctx
                    self.statements(handler.body, inner)
                self.statements(node.orelse, ctx)
                self.statements(node.finalbody, ctx)
            elif isinstance(node, ast.With | ast.AsyncWith):
                self.expressions([i.context_expr for i in node.items], ctx)
                raises = any(is_raises_item(i) for i in node.items)
                self.statements(node.body, (*ctx, "pytest.raises") if raises else ctx)
            elif isinstance(node, ast.For | ast.AsyncFor):
                self.expressions([node.target, node.iter], ctx)
                self.statements(node.body, ctx)
                self.statements(node.orelse, ctx)
            elif isinstance(node, ast.While):
                self.expressions([node.test], ctx)
                self.statements(node.body, ctx)
                self.statements(node.orelse, ctx)
            elif isinstance(node, ast.Match):
                self.expressions([node.subject], ctx)
                for case in node.cases:
                    if case.guard is not None:
                        self.expressions([case.guard], ctx)
                    self.statements(case.body, ctx)
            else:
                self.expressions([node], ctx)

    # -- imports ---------------------------------------------------------------------------

    def _name_detail(self, alias: ast.alias, **kwargs: object) -> ImportedName:
        return ImportedName(
            name=alias.name,
            asname=alias.asname,
            line=alias.lineno,
            col=self._col(alias.lineno, alias.col_offset),
            **kwargs,  # type: ignore[arg-type]
        )

    def import_(self, node: ast.Import, ctx: tuple[str, ...]) -> None:
        # `import a, b` imports two modules, as `import a; import b` would: one finding per
        # deprecated module, at its name (where ruff's TID251 puts it).
        for alias in node.names:
            rule = self.spec.rule_for(alias.name)
            if rule is None:
                continue
            form = "import-as" if alias.asname else "import"
            local = f" as {alias.asname}" if alias.asname else ""
            if rule.replacement and alias.name == rule.module:
                replacement: str | None = rule.replacement
                advice = f"use `import {rule.replacement}{local}`"
            else:
                replacement = None
                advice = f"its names moved to {rule.describe_replacement()}"
            fixable = bool(rule.replacement or rule.names)
            self._add(
                alias,
                node,
                code="AEM002",
                message=f"`import {alias.name}{local}` is deprecated; {advice}",
                form=form,
                context=ctx or ("module",),
                deprecated=alias.name,
                replacement=replacement,
                fixable=fixable,
                names=(
                    self._name_detail(
                        alias, deprecated=alias.name, replacement=replacement, fixable=fixable
                    ),
                ),
            )

    def import_from(self, node: ast.ImportFrom, ctx: tuple[str, ...]) -> None:
        package = self.package() if node.level else None  # found only when needed
        module = absolute_module(node.module, node.level, package)
        if module is None:
            return
        relative = "relative " if node.level else ""
        spelled = "." * node.level + (node.module or "")
        context = ctx or ("module",)
        rule = self.spec.rule_for(module)
        if rule is not None:
            if any(a.name == "*" for a in node.names):
                self._add(
                    node,
                    node,
                    code="AEM004",
                    message=(
                        f"`from {spelled} import *` imports a deprecated module; import the "
                        f"names used from {rule.describe_replacement()}{self._note(rule)}"
                    ),
                    form=f"{relative}star-import",
                    context=context,
                    deprecated=module,
                )
                return
            self._deprecated_from(node, module, spelled, rule, f"{relative}from-import", context)
            return
        for alias in node.names:
            full = f"{module}.{alias.name}"
            sub_rule = self.spec.modules.get(full)
            if sub_rule is None:
                continue
            if sub_rule.replacement:
                parent, _, leaf = sub_rule.replacement.rpartition(".")
                local = alias.asname or alias.name
                new = (
                    _alias_statement(parent, leaf, local)
                    if parent
                    else f"import {leaf}" + (f" as {local}" if local != leaf else "")
                )
                advice = f"use `{new}`"
            else:
                advice = f"its names moved to {sub_rule.describe_replacement()}"
            fixable = bool(sub_rule.replacement or sub_rule.names)
            # One finding per deprecated submodule, at its name (as ruff's TID251).
            self._add(
                alias,
                node,
                code="AEM003",
                message=(
                    f"`{_alias_statement(spelled, alias.name, alias.asname)}` imports a deprecated "
                    f"module; {advice}"
                ),
                form=f"{relative}from-submodule",
                context=context,
                deprecated=full,
                replacement=sub_rule.replacement,
                fixable=fixable,
                names=(
                    self._name_detail(
                        alias, deprecated=full, replacement=sub_rule.replacement, fixable=fixable
                    ),
                ),
            )

    def _deprecated_from(
        self,
        node: ast.ImportFrom,
        module: str,
        spelled: str,
        rule: ModuleRule,
        form: str,
        context: tuple[str, ...],
    ) -> None:
        """One finding for the whole statement, at its first line, each name inside it."""
        raises = "pytest.raises" in context
        details: list[ImportedName] = []
        groups: dict[str, list[tuple[str, str | None]]] = {}
        unknown: list[str] = []
        for alias in node.names:
            target = rule.target_for(alias.name) if module == rule.module else None
            known = target is not None and target.name is not None
            details.append(
                self._name_detail(
                    alias,
                    deprecated=f"{module}:{alias.name}",
                    replacement=str(target) if target is not None else None,
                    fixable=known and not raises,
                )
            )
            if target is not None and target.name is not None:
                local = alias.asname or alias.name
                groups.setdefault(target.module, []).append((target.name, local))
            else:
                unknown.append(alias.name)
        advice = []
        if groups:
            uses = "; ".join(f"`{_from_statement(m, names)}`" for m, names in groups.items())
            advice.append(f"use {uses}")
        if unknown:
            listed = ", ".join(f"`{n}`" for n in unknown)
            advice.append(
                f"no known replacement for {listed}; its module's names moved to "
                f"{rule.describe_replacement()}{self._note(rule)}"
            )
        statement = _from_statement(spelled, [(a.name, a.asname) for a in node.names])
        single = details[0] if len(details) == 1 else None
        self._add(
            node,
            node,
            code="AEM001",
            message=f"`{statement}` is deprecated; {'; '.join(advice)}",
            form=form,
            context=context,
            deprecated=module if single is None else single.deprecated,
            replacement=None if single is None else single.replacement,
            fixable=all(d.fixable for d in details),
            names=tuple(details),
        )

    # -- string references -----------------------------------------------------------------

    def expressions(self, nodes: Iterable[ast.AST], ctx: tuple[str, ...]) -> None:
        handled: set[int] = set()  # string constants already reported by a specific rule
        for root in nodes:
            for node in ast.walk(root):  # breadth first: a call before its arguments
                if isinstance(node, ast.Call):
                    self.call(node, ctx, handled)
                elif isinstance(node, ast.Subscript):
                    if dotted_name(node.value) == "sys.modules":
                        key = node.slice
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            self.reference(key, "AEM103", "sys.modules key", ctx, handled)
                elif isinstance(node, ast.Compare) and (
                    isinstance(node.left, ast.Constant)
                    and isinstance(node.left.value, str)
                    and len(node.ops) == 1
                    and isinstance(node.ops[0], ast.In | ast.NotIn)
                    and dotted_name(node.comparators[0]) == "sys.modules"
                ):
                    self.reference(node.left, "AEM103", "sys.modules key", ctx, handled)
                elif (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in handled
                ):
                    self.text_string(node, ctx)

    def call(self, node: ast.Call, ctx: tuple[str, ...], handled: set[int]) -> None:
        name = dotted_name(node.func)
        if name is None:
            return
        last = name.rpartition(".")[2]
        if is_patch_call(name):
            first = node.args[0] if node.args else None
            names_sys_modules = first is not None and (
                dotted_name(first) == "sys.modules"
                or (isinstance(first, ast.Constant) and first.value == "sys.modules")
            )
            if names_sys_modules and name.endswith("dict"):
                self.patched_modules(node, ctx, handled)
                return
            arg = _str_arg(node, "target")
            if arg is not None:
                self.reference(arg, "AEM101", f"{name}() target", ctx, handled)
        elif is_import_call(name):
            arg = _str_arg(node, "name")
            if arg is not None:
                self.reference(arg, "AEM102", f"{name}()", ctx, handled)
        elif name in _LOGGER_CALLS:
            arg = _str_arg(node, "name")
            if arg is not None:
                self.reference(arg, "AEM104", "logger name", ctx, handled)
        elif name.startswith("sys.modules.") and last in _SYS_MODULES_METHODS:
            arg = _str_arg(node)
            if arg is not None:
                self.reference(arg, "AEM103", "sys.modules key", ctx, handled)

    def patched_modules(self, node: ast.Call, ctx: tuple[str, ...], handled: set[int]) -> None:
        for arg in node.args[1:2]:
            if isinstance(arg, ast.Dict):
                for key in arg.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        self.reference(key, "AEM103", "sys.modules key", ctx, handled)

    def reference(
        self,
        node: ast.Constant,
        code: str,
        form: str,
        ctx: tuple[str, ...],
        handled: set[int] | None = None,
        *,
        value: str | None = None,
        at: tuple[int, int, int, int] | None = None,
    ) -> None:
        """Report the string ``node`` (or ``value``, written inside it ``at``) as a reference
        of kind ``code`` (see ``_REFERENCES``) when it names a deprecated path."""
        text = str(node.value) if value is None else value
        kind = _REFERENCES[code]
        resolved = kind.resolve(self.spec, text)
        if resolved is None:
            return
        if handled is not None:  # reported: not a bare path or a mention too
            handled.add(id(node))
        new, advice = resolved
        self._add(
            node,
            None,
            noqa=node.end_lineno,
            at=at,
            code=code,
            message=kind.message.format(form=form, value=text, advice=advice),
            form=form,
            context=ctx or ("module",),
            deprecated=text,
            replacement=new,
            fixable=kind.fixable and new is not None,
        )

    def text_string(self, node: ast.Constant, ctx: tuple[str, ...]) -> None:
        """Any other string: a bare dotted path (AEM105), or mentions inside text (AEM106)."""
        value = str(node.value)
        pattern = self.spec.mention_pattern
        if pattern.fullmatch(value):
            self.reference(node, "AEM105", "bare path", ctx)
            return
        cursor = (node.lineno, node.col_offset)
        for match in pattern.finditer(value):
            at, cursor = self._locate(node, match.group(), cursor)
            self.reference(node, "AEM106", "mention in a string", ctx, value=match.group(), at=at)

    def _locate(
        self, node: ast.Constant, text: str, cursor: tuple[int, int]
    ) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
        """Where ``text`` is written inside the string literal ``node``, from ``cursor`` on."""
        needle = text.encode()
        last = node.end_lineno or node.lineno
        line, offset = cursor
        while line <= last and 0 < line <= len(self.lines):
            source = self.lines[line - 1]
            end = node.end_col_offset if line == last and node.end_col_offset else len(source)
            found = source.find(needle, offset, end)
            if found != -1:
                col = self._col(line, found)
                end_col = self._col(line, found + len(needle))
                return (line, col, line, end_col), (line, found + len(needle))
            line, offset = line + 1, 0
        start = node.lineno
        return (start, self._col(start, node.col_offset), start, 0), cursor


def replace_reference(spec: MigrationSpec, reference: str) -> str | None:
    """The new spelling of a deprecated path in text (``a.b.C`` or ``a.b:C``), or None."""
    module, colon, rest = reference.partition(":")
    if not colon:
        return spec.replace_dotted(reference)
    rule = spec.modules.get(module)
    if rule is None:
        return spec.replace_dotted(reference.replace(":", "."))
    head, _, tail = rest.partition(".")
    target = rule.target_for(head)
    if target is None:
        return None
    if target.name is None:
        return f"{target.module}:{rest}"
    return f"{target.module}:{target.name}" + (f".{tail}" if tail else "")


def _patch_target(spec: MigrationSpec, value: str) -> tuple[str | None, str] | None:
    split = spec.split_dotted(value)
    if split is None:
        return None
    new = spec.replace_dotted(value)
    return new, f"patch `{new}`" if new else f"its names moved to {split[0].describe_replacement()}"


def _import_target(spec: MigrationSpec, value: str) -> tuple[str | None, str] | None:
    rule = spec.rule_for(value)
    if rule is None:
        return None
    exact = spec.modules.get(value)
    new = exact.replacement if exact is not None else None
    if new:
        return new, f"import `{new}`"
    moved = rule.describe_replacement()
    return None, f"its names moved to {moved} (needs a person: no module replaces it as a whole)"


def _dynamic_use(spec: MigrationSpec, value: str) -> tuple[str | None, str] | None:
    rule = spec.rule_for(value)
    if rule is None:
        return None
    new = rule.replacement if value == rule.module else None
    return new, f"its names moved to {rule.describe_replacement()} (needs a person: dynamic use)"


def _mention(spec: MigrationSpec, value: str) -> tuple[str | None, str]:
    new = replace_reference(spec, value)
    return new, f"the new path is `{new}`" if new else "no known replacement"


@dataclass(frozen=True, slots=True)
class _Reference:
    """How one kind of string reference is reported: ``resolve`` gives the replacement (None:
    unknown) and the advice, or None when the string names no deprecated path; ``message`` is
    formatted with ``form``, ``value`` and ``advice``; only patch and import targets with a
    known replacement are ``fixable`` (what ``migrate`` rewrites)."""

    resolve: Callable[[MigrationSpec, str], tuple[str | None, str] | None]
    message: str
    fixable: bool = False


_DYNAMIC = _Reference(_dynamic_use, "{form} `{value}` names a deprecated module; {advice}")
_REFERENCES = {
    "AEM101": _Reference(_patch_target, "{form} `{value}` names a deprecated path; {advice}", True),
    "AEM102": _Reference(
        _import_target, "{form} `{value}` imports a deprecated module; {advice}", True
    ),
    "AEM103": _DYNAMIC,
    "AEM104": _DYNAMIC,
    "AEM105": _Reference(_mention, "string `{value}` is a deprecated path; {advice}"),
    "AEM106": _Reference(_mention, "text mentions the deprecated path `{value}`; {advice}"),
    "AEM107": _Reference(_mention, "Markdown mentions the deprecated path `{value}`; {advice}"),
}


# -- files that do not parse ---------------------------------------------------------------

_TEXT_FROM_RE = re.compile(
    rb"^[ \t]*from[ \t]+(?P<module>\.*[\w.]*)[ \t]+import[ \t]+"
    rb"(?P<names>\([^)]*\)|[^\n#;]*(?:\\\r?\n[^\n#;]*)*)",
    re.MULTILINE,
)
_TEXT_IMPORT_RE = re.compile(rb"^[ \t]*import[ \t]+(?P<names>[^\n#;]+)", re.MULTILINE)
_TEXT_STRING_RE = re.compile(
    rb"(?:(?P<call>[\w.]+)\(\s*|(?P<sub>sys\.modules\[\s*))?"
    rb"(?P<quote>[\"'])(?P<value>[^\"'\\\r\n]*)(?P=quote)"
)


def _text_scan(
    spec: MigrationSpec, display: str, data: bytes, package: Callable[[], str | None]
) -> list[_Found]:
    """Imports and string references of a file ``ast`` cannot parse, found line by line."""
    lines = data.splitlines()
    out: list[_Found] = []

    def line_col(offset: int) -> tuple[int, int]:
        line = line_of(data, offset)
        start = max(data.rfind(b"\n", 0, offset), data.rfind(b"\r", 0, offset)) + 1
        return line, len(data[start:offset].decode("utf-8", "replace")) + 1

    def fragment(source: str, offset: int, visit: Callable[[_FileScanner, ast.stmt], None]) -> None:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return
        line, col = line_col(offset)
        scanner = _FileScanner(spec, display, lines, [line], package)
        for stmt in tree.body:
            visit(scanner, stmt)
        for finding, _ in scanner.found:
            out.append((_moved(finding, line, col), line))

    def visit_from(level: int) -> Callable[[_FileScanner, ast.stmt], None]:
        def visit(scanner: _FileScanner, stmt: ast.stmt) -> None:
            assert isinstance(stmt, ast.ImportFrom)
            stmt.level = level
            scanner.import_from(stmt, ("unparsed file",))

        return visit

    def visit_import(scanner: _FileScanner, stmt: ast.stmt) -> None:
        assert isinstance(stmt, ast.Import)
        scanner.import_(stmt, ("unparsed file",))

    def visit_expression(scanner: _FileScanner, stmt: ast.stmt) -> None:
        scanner.expressions([stmt], ("unparsed file",))

    for match in _TEXT_FROM_RE.finditer(data):
        raw_module = match["module"].decode()
        level = len(raw_module) - len(raw_module.lstrip("."))
        names_text = re.sub(rb"#[^\n]*", b"", match["names"]).strip(b"()\\ \t\r\n")
        names = [n.split() for n in re.split(rb"[,\\\s]*,[,\\\s]*", names_text) if n.strip()]
        listed = ", ".join(b" ".join(n).decode() for n in names if n)
        if listed:
            # One statement, as in the file: one finding for all its names.
            source = f"from {raw_module.lstrip('.') or '_'} import ({listed})"
            if not raw_module.lstrip("."):
                source = f"from . import ({listed})"
            fragment(source, match.start(), visit_from(level))
    for match in _TEXT_IMPORT_RE.finditer(data):
        text = match["names"].decode("utf-8", "replace").strip().rstrip("\\").strip()
        fragment(f"import {text}", match.start("names"), visit_import)
    pattern = spec.mention_pattern
    for match in _TEXT_STRING_RE.finditer(data):
        value = match["value"].decode("utf-8", "replace")
        if not pattern.search(value):
            continue
        if match["sub"] is not None:
            source = f"sys.modules[{value!r}]"
        elif match["call"] is not None:
            source = f"{match['call'].decode()}({value!r})"
        else:
            source = f"({value!r})"
        fragment(source, match.start(), visit_expression)
    return out


def _moved(finding: Finding, line: int, col: int) -> Finding:
    """A finding of a re-parsed fragment, placed where the fragment was in the file."""
    names = tuple(replace(n, line=line, col=col) for n in finding.names)
    return replace(
        finding,
        line=line,
        col=col,
        statement_line=line,
        statement_end_line=line,
        end_line=line,
        end_col=0,
        names=names,
    )


# -- Markdown ------------------------------------------------------------------------------

MARKDOWN_SUFFIXES = (".md", ".markdown")


def _markdown_scan(spec: MigrationSpec, display: str, data: bytes) -> list[_Found]:
    """Every mention of a deprecated path in a Markdown file (AEM107)."""
    text = data.decode("utf-8", "replace")
    out: list[_Found] = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in spec.mention_pattern.finditer(line):
            mention = match.group()
            new, advice = _mention(spec, mention)
            finding = Finding(
                path=display,
                line=number,
                col=match.start() + 1,
                end_line=number,
                end_col=match.end() + 1,
                code="AEM107",
                message=_REFERENCES["AEM107"].message.format(value=mention, advice=advice),
                form="mention in Markdown",
                context=("markdown",),
                deprecated=mention,
                replacement=new,
            )
            out.append((finding, number))
    return out


# -- one file ------------------------------------------------------------------------------


def _noqa_codes(line: bytes) -> set[str] | None:
    """None: no (valid) noqa; empty set: a bare ``# noqa``; else the codes listed.

    As ruff reads it: ``# noqa: CODE, CODE`` with upper-case codes; a colon followed by no
    valid code is an invalid directive that suppresses nothing.
    """
    for match in _NOQA_RE.finditer(line):
        rest = line[match.end() :]
        if rest[:1] == b":":
            codes = _NOQA_CODES_RE.match(rest, 1)
            if codes is None:
                return None
            return {c.decode() for c in re.split(rb"[\s,]+", codes["codes"]) if c}
        if rest[:1].isalnum() or rest[:1] == b"_":
            continue  # `noqa` followed by a letter is another word, not a directive
        return set()
    return None


def _suppressed(code: str, noqa_line: int, lines: Sequence[bytes]) -> bool:
    if not 0 < noqa_line <= len(lines):
        return False
    text = lines[noqa_line - 1]
    if b"noqa" not in text.lower():
        return False
    codes = _noqa_codes(text)
    if codes is None:
        return False
    if not codes or code in codes:
        return True
    return any(code in _RUFF_EQUIVALENT.get(c, ()) for c in codes)


def _hit_may_matter(data: bytes, pos: int, modules: frozenset[bytes]) -> bool:
    """Whether the segment found at ``pos`` can be part of an import, a string or a mention.

    Everything ``check`` reports sits on a line holding ``import`` or a quote, on the
    continuation of an import (after a backslash, or inside its parentheses), or spells a
    deprecated module's whole dotted path (a mention inside a multi-line string). Most other
    hits are ordinary names (``executor = ...``), and skipping their files saves a parse.
    """
    start = data.rfind(b"\n", 0, pos) + 1
    end = data.find(b"\n", pos)
    line = data[start : len(data) if end == -1 else end]
    if b"import" in line or b'"' in line or b"'" in line:
        return True
    if data[:start].rstrip(b"\r\n").endswith(b"\\"):
        return True
    last = data.rfind(b"import", 0, start)
    if last != -1:
        between = data[last:start]
        if b"(" in between and b")" not in between:
            return True
    return _spells_module(data, pos, modules)


_DOTTED_TAIL_RE = re.compile(rb"[\w.]+\Z")
_DOTTED_HEAD_RE = re.compile(rb"[\w.]*")


def _spells_module(data: bytes, pos: int, modules: frozenset[bytes]) -> bool:
    """Whether the dotted word around ``pos`` starts with a deprecated module's path."""
    if not modules:
        return False
    back = _DOTTED_TAIL_RE.search(data, max(0, pos - 256), pos)
    first = back.start() if back is not None else pos
    ahead = _DOTTED_HEAD_RE.match(data, pos)
    last = ahead.end() if ahead is not None else pos
    parts = data[first:last].split(b".")
    return any(b".".join(parts[:cut]) in modules for cut in range(2, len(parts) + 1))


def might_use(
    data: bytes, segments: Sequence[bytes], modules: frozenset[bytes] = frozenset()
) -> bool:
    """The byte prefilter: can ``data`` use a deprecated path at all? (No parsing.)

    ``modules``: the deprecated module paths, to also catch mentions in multi-line strings.
    """
    for segment in segments:
        pos = data.find(segment)
        while pos != -1:
            if _hit_may_matter(data, pos, modules):
                return True
            pos = data.find(segment, pos + len(segment))
    return False


def _candidate_lines(data: bytes, segments: Sequence[bytes]) -> list[int]:
    hits: set[int] = set()
    for segment in segments:
        start = data.find(segment)
        while start != -1:
            hits.add(line_of(data, start))
            start = data.find(segment, start + 1)
    return sorted(hits)


#: A line that may open a top-level statement: a name, a keyword or a decorator at column 0.
_TOP_LEVEL_RE = re.compile(rb"^[A-Za-z_@]", re.MULTILINE)


def _parse_prefix(data: bytes, last_line: int) -> ast.Module | None:
    """The statements up to the first top-level one after ``last_line``, or None.

    Parsing costs most of a scan, and the hits are usually near the top (imports), so only
    the part of the file up to them is parsed when that part is a module on its own. A cut
    inside a string, brackets, a backslash continuation, or between a ``try`` and its
    ``except`` does not parse, so a prefix that parses ends exactly between two top-level
    statements and its tree is the first part of the whole file's, with the same lines and
    columns. None (parse the whole file) when no such cut is found soon, or when the file
    has merge-conflict markers (which must be reported as such).
    """
    if last_line <= 0:
        return None
    start = 0
    for _ in range(last_line):
        start = data.find(b"\n", start) + 1
        if start == 0:
            return None
    for attempt, match in enumerate(_TOP_LEVEL_RE.finditer(data, start)):
        cut = match.start()
        if attempt == 3 or cut > len(data) * 3 // 4:
            return None  # not worth it: the whole file is parsed instead
        if attempt == 0 and merge_conflict_line(data) is not None:
            return None
        try:
            return ast.parse(data[:cut])
        except (SyntaxError, ValueError):
            continue
    return None


@dataclass
class FileScan:
    """The outcome for one file: findings reported, and those a ``# noqa`` suppressed."""

    display: str
    findings: list[Finding] = field(default_factory=list)
    suppressed_findings: list[Finding] = field(default_factory=list)
    parsed: bool = True

    @property
    def suppressed(self) -> int:
        """How many findings ``# noqa`` suppressed."""
        return len(self.suppressed_findings)


def scan_source(
    data: bytes,
    spec: MigrationSpec,
    *,
    display: str = "<string>",
    package: Callable[[], str | None] | str | None = None,
    segments: Sequence[bytes] | None = None,
    in_deprecated_module: str | None = None,
    markdown: bool = False,
    every_code: bool = False,
) -> FileScan:
    """Scan one file's bytes; ``package`` resolves relative imports (a name or a callable).

    ``in_deprecated_module``: the module this file is, when it is itself deprecated (its
    findings are marked). ``markdown``: the file is Markdown (mentions only, AEM107).
    ``every_code``: report every code, whatever the spec's ``select``/``ignore``.
    """
    result = FileScan(display)
    segments = spec.last_segments() if segments is None else segments
    # A deprecated module's own file is read whole: its relative imports of its siblings
    # (`from .names import X`) name deprecated modules without spelling them.
    whole = in_deprecated_module is not None
    if not whole and not might_use(data, segments, spec.module_bytes):
        return result
    lines = data.splitlines()
    found: list[_Found]
    if markdown:
        found = _markdown_scan(spec, display, data)
    else:
        if not callable(package):
            fixed = package

            def package_name() -> str | None:
                return fixed

            package = package_name
        candidates = list(range(1, len(lines) + 1)) if whole else _candidate_lines(data, segments)
        try:
            tree = None if whole else _parse_prefix(data, candidates[-1] if candidates else 0)
            if tree is None:
                tree = ast.parse(data, filename=display)
        except (SyntaxError, ValueError) as exc:
            result.parsed = False
            conflict = merge_conflict_line(data)
            if conflict is not None:
                line, col, why = conflict, 1, "merge-conflict markers"
            elif isinstance(exc, SyntaxError):
                line, col = exc.lineno or 1, exc.offset or 1
                why = f"SyntaxError: {exc.msg} (syntax newer than this Python, or broken)"
            else:
                line, col, why = 1, 1, f"{type(exc).__name__}: {exc}"
            unparsed = Finding(
                path=display,
                line=line,
                col=col,
                code="AEM900",
                message=f"cannot parse the file ({why}); its import lines were scanned as text",
                form="file",
                context=("unparsed file",),
            )
            found = [(unparsed, line), *_text_scan(spec, display, data, package)]
        else:
            scanner = _FileScanner(spec, display, lines, candidates, package)
            scanner.statements(tree.body, ())
            found = scanner.found
    codes = spec.codes
    for raw, noqa_line in found:
        if not every_code and raw.code not in codes:
            continue
        finding = raw
        if in_deprecated_module is not None:
            finding = replace(raw, in_deprecated_module=in_deprecated_module)
        if _suppressed(finding.code, noqa_line, lines):
            result.suppressed_findings.append(finding)
        else:
            result.findings.append(finding)
    result.findings.sort(key=Finding.sort_key)
    return result
