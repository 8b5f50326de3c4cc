"""Scanning one file's source for uses of deprecated paths (``scan_source``; no file I/O).

``check.py`` runs this over many files. The hot path is written for files that do not use a
deprecated path, which is nearly all of them: each file's bytes are searched for the last
segment of every deprecated module (``bytes.find`` is a C loop); only files containing one are
parsed, and only the statements spanning a line that contains one are visited. Files that
cannot be parsed (merge-conflict markers, syntax newer than the running Python) are reported
and scanned line by line.
"""

from __future__ import annotations

import ast
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from agentengine_migrate.findings import Finding
from agentengine_migrate.spec import MigrationSpec, ModuleRule
from agentengine_migrate.syntax import (
    absolute_module,
    dotted_name,
    is_patch_call,
    is_raises_item,
    line_of,
    merge_conflict_line,
)

__all__ = ["FileScan", "might_use", "scan_source"]

_IMPORT_CALLS = frozenset({"import_module", "__import__", "find_spec"})
_LOGGER_CALLS = frozenset(
    {"getLogger", "logging.getLogger", "get_logger", "structlog.get_logger", "structlog.getLogger"}
)
_SYS_MODULES_METHODS = frozenset({"get", "pop", "setdefault", "__contains__", "__getitem__"})
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})
_NOQA_RE = re.compile(
    rb"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?", re.IGNORECASE
)


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


def _alias_statement(module: str, name: str, asname: str | None) -> str:
    alias = f" as {asname}" if asname and asname != name else ""
    return f"from {module} import {name}{alias}"


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
        self.findings: list[Finding] = []

    # -- helpers ---------------------------------------------------------------------------

    def _touches(self, first: int, last: int) -> bool:
        index = bisect_left(self.candidates, first)
        return index < len(self.candidates) and self.candidates[index] <= last

    def _col(self, line: int, byte_offset: int) -> int:
        if 0 < line <= len(self.lines):
            return len(self.lines[line - 1][:byte_offset].decode("utf-8", "replace")) + 1
        return byte_offset + 1

    def _add(self, node: ast.AST, statement: ast.AST | None, **kwargs: object) -> None:
        line = node.lineno  # type: ignore[attr-defined]
        end_line = getattr(node, "end_lineno", None) or line
        end_col = getattr(node, "end_col_offset", None)
        self.findings.append(
            Finding(
                path=self.display,
                line=line,
                col=self._col(line, node.col_offset),  # type: ignore[attr-defined]
                end_line=end_line,
                end_col=self._col(end_line, end_col) if end_col is not None else 0,
                statement_line=getattr(statement or node, "lineno", line),
                statement_end_line=getattr(statement or node, "end_lineno", None) or end_line,
                **kwargs,  # type: ignore[arg-type]
            )
        )

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

    def import_(self, node: ast.Import, ctx: tuple[str, ...]) -> None:
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
            self._add(
                alias,
                node,
                code="AEM002",
                message=f"`import {alias.name}{local}` is deprecated; {advice}",
                form=form,
                context=ctx or ("module",),
                deprecated=alias.name,
                replacement=replacement,
                fixable=bool(rule.replacement or rule.names),
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
            for alias in node.names:
                target = rule.target_for(alias.name) if module == rule.module else None
                local = alias.asname or alias.name
                if target is not None and target.name is not None:
                    advice = f"use `{_alias_statement(target.module, target.name, local)}`"
                else:
                    advice = (
                        f"no known replacement for `{alias.name}`; its module's names moved to "
                        f"{rule.describe_replacement()}{self._note(rule)}"
                    )
                self._add(
                    alias,
                    node,
                    code="AEM001",
                    message=(
                        f"`{_alias_statement(spelled, alias.name, alias.asname)}` is deprecated; "
                        f"{advice}"
                    ),
                    form=f"{relative}from-import",
                    context=context,
                    deprecated=f"{module}:{alias.name}",
                    replacement=str(target) if target is not None else None,
                    fixable=target is not None and "pytest.raises" not in ctx,
                )
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
                fixable=bool(sub_rule.replacement or sub_rule.names),
            )

    # -- string references -----------------------------------------------------------------

    def expressions(self, nodes: Iterable[ast.AST], ctx: tuple[str, ...]) -> None:
        for root in nodes:
            for node in ast.walk(root):
                if isinstance(node, ast.Call):
                    self.call(node, ctx)
                elif isinstance(node, ast.Subscript):
                    if dotted_name(node.value) == "sys.modules":
                        key = node.slice
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            self.module_string(key, "AEM103", "sys.modules key", ctx)
                elif isinstance(node, ast.Compare) and (
                    isinstance(node.left, ast.Constant)
                    and isinstance(node.left.value, str)
                    and len(node.ops) == 1
                    and isinstance(node.ops[0], ast.In | ast.NotIn)
                    and dotted_name(node.comparators[0]) == "sys.modules"
                ):
                    self.module_string(node.left, "AEM103", "sys.modules key", ctx)

    def call(self, node: ast.Call, ctx: tuple[str, ...]) -> None:
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
                self.patched_modules(node, ctx)
                return
            arg = _str_arg(node, "target")
            if arg is not None:
                self.patch_target(arg, name, ctx)
        elif last in _IMPORT_CALLS:
            arg = _str_arg(node, "name")
            if arg is not None:
                self.module_string(arg, "AEM102", f"{name}()", ctx)
        elif name in _LOGGER_CALLS:
            arg = _str_arg(node, "name")
            if arg is not None:
                self.module_string(arg, "AEM104", "logger name", ctx)
        elif name.startswith("sys.modules.") and last in _SYS_MODULES_METHODS:
            arg = _str_arg(node)
            if arg is not None:
                self.module_string(arg, "AEM103", "sys.modules key", ctx)

    def patched_modules(self, node: ast.Call, ctx: tuple[str, ...]) -> None:
        for arg in node.args[1:2]:
            if isinstance(arg, ast.Dict):
                for key in arg.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        self.module_string(key, "AEM103", "sys.modules key", ctx)

    def patch_target(self, arg: ast.Constant, call: str, ctx: tuple[str, ...]) -> None:
        target = str(arg.value)
        split = self.spec.split_dotted(target)
        if split is None:
            return
        rule, _ = split
        new = self.spec.replace_dotted(target)
        advice = f"patch `{new}`" if new else f"its names moved to {rule.describe_replacement()}"
        self._add(
            arg,
            None,
            code="AEM101",
            message=f"{call}() target `{target}` names a deprecated path; {advice}",
            form=f"{call}() target",
            context=ctx or ("module",),
            deprecated=target,
            replacement=new,
            fixable=new is not None,
        )

    def module_string(self, arg: ast.Constant, code: str, form: str, ctx: tuple[str, ...]) -> None:
        value = str(arg.value)
        rule = self.spec.rule_for(value)
        if rule is None:
            return
        self._add(
            arg,
            None,
            code=code,
            message=(
                f"{form} `{value}` names a deprecated module; its names moved to "
                f"{rule.describe_replacement()} (needs a person: dynamic use)"
            ),
            form=form,
            context=ctx or ("module",),
            deprecated=value,
            replacement=rule.replacement if value == rule.module else None,
        )


# -- files that do not parse ---------------------------------------------------------------

_TEXT_FROM_RE = re.compile(
    rb"^[ \t]*from[ \t]+(?P<module>\.*[\w.]*)[ \t]+import[ \t]+"
    rb"(?P<names>\([^)]*\)|[^\n#;]*(?:\\\r?\n[^\n#;]*)*)",
    re.MULTILINE,
)
_TEXT_IMPORT_RE = re.compile(rb"^[ \t]*import[ \t]+(?P<names>[^\n#;]+)", re.MULTILINE)
_TEXT_STRING_RE = re.compile(
    rb"(?P<call>[\w.]+)\(\s*[\"'](?P<value>[\w.]+)[\"']|sys\.modules\[\s*[\"'](?P<key>[\w.]+)[\"']"
)


def _text_scan(
    spec: MigrationSpec, display: str, data: bytes, package: Callable[[], str | None]
) -> list[Finding]:
    """Imports and string references of a file ``ast`` cannot parse, found line by line."""
    lines = data.splitlines()
    out: list[Finding] = []

    def line_col(offset: int) -> tuple[int, int]:
        line = line_of(data, offset)
        start = max(data.rfind(b"\n", 0, offset), data.rfind(b"\r", 0, offset)) + 1
        return line, len(data[start:offset].decode("utf-8", "replace")) + 1

    for match in _TEXT_FROM_RE.finditer(data):
        raw_module = match["module"].decode()
        level = len(raw_module) - len(raw_module.lstrip("."))
        names_text = re.sub(rb"#[^\n]*", b"", match["names"]).strip(b"()\\ \t\r\n")
        names = [n.split() for n in re.split(rb"[,\\\s]*,[,\\\s]*", names_text) if n.strip()]
        source = "\n".join(f"from {raw_module} import {b' '.join(n).decode()}" for n in names if n)
        if not source:
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        line, col = line_col(match.start("module"))
        scanner = _FileScanner(spec, display, lines, [line], package)
        for stmt in tree.body:
            assert isinstance(stmt, ast.ImportFrom)
            stmt.level = level
            scanner.import_from(stmt, ("unparsed file",))
        out.extend(_moved(f, line, col) for f in scanner.findings)
    for match in _TEXT_IMPORT_RE.finditer(data):
        text = match["names"].decode("utf-8", "replace").strip().rstrip("\\").strip()
        try:
            tree = ast.parse(f"import {text}")
        except SyntaxError:
            continue
        line, col = line_col(match.start("names"))
        scanner = _FileScanner(spec, display, lines, [line], package)
        stmt = tree.body[0]
        assert isinstance(stmt, ast.Import)
        scanner.import_(stmt, ("unparsed file",))
        out.extend(_moved(f, line, col) for f in scanner.findings)
    for match in _TEXT_STRING_RE.finditer(data):
        line, col = line_col(match.start())
        scanner = _FileScanner(spec, display, lines, [line], package)
        if match["key"] is not None:
            source = f"sys.modules[{match['key'].decode()!r}]"
        else:
            source = f"{match['call'].decode()}({match['value'].decode()!r})"
        tree = ast.parse(source)
        scanner.expressions(tree.body, ("unparsed file",))
        out.extend(_moved(f, line, col) for f in scanner.findings)
    return out


def _moved(finding: Finding, line: int, col: int) -> Finding:
    """A finding of a re-parsed fragment, placed where the fragment was in the file."""
    return replace(
        finding,
        line=line,
        col=col,
        statement_line=line,
        statement_end_line=line,
        end_line=line,
        end_col=0,
    )


# -- one file ------------------------------------------------------------------------------


def _noqa_codes(line: bytes) -> set[str] | None:
    """None: no noqa; empty set: a bare ``# noqa``; else the codes listed."""
    match = _NOQA_RE.search(line)
    if match is None:
        return None
    codes = match["codes"]
    if codes is None:
        return set()
    return {c.decode().upper() for c in re.split(rb"[\s,]+", codes) if c}


def _suppressed(finding: Finding, lines: Sequence[bytes]) -> bool:
    first = finding.statement_line or finding.line
    for number in {finding.line, first, finding.statement_end_line or finding.end_line}:
        if 0 < number <= len(lines) and b"noqa" in lines[number - 1].lower():
            codes = _noqa_codes(lines[number - 1])
            if codes is not None and (not codes or finding.code in codes):
                return True
    return False


def _hit_may_matter(data: bytes, pos: int) -> bool:
    """Whether the segment found at ``pos`` can be part of an import or a string.

    Everything ``check`` reports sits on a line holding ``import`` or a quote, or on the
    continuation of an import (after a backslash, or inside its parentheses). Most other
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
        return b"(" in between and b")" not in between
    return False


def might_use(data: bytes, segments: Sequence[bytes]) -> bool:
    """The byte prefilter: can ``data`` use a deprecated path at all? (No parsing.)"""
    for segment in segments:
        pos = data.find(segment)
        while pos != -1:
            if _hit_may_matter(data, pos):
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


@dataclass
class FileScan:
    """The outcome for one file."""

    display: str
    findings: list[Finding] = field(default_factory=list)
    suppressed: int = 0
    parsed: bool = True


def scan_source(
    data: bytes,
    spec: MigrationSpec,
    *,
    display: str = "<string>",
    package: Callable[[], str | None] | str | None = None,
    segments: Sequence[bytes] | None = None,
) -> FileScan:
    """Scan one file's bytes; ``package`` resolves relative imports (a name or a callable)."""
    result = FileScan(display)
    segments = spec.last_segments() if segments is None else segments
    if not might_use(data, segments):
        return result
    if not callable(package):
        fixed = package

        def package_name() -> str | None:
            return fixed

        package = package_name
    lines = data.splitlines()
    try:
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
        findings = [
            Finding(
                path=display,
                line=line,
                col=col,
                code="AEM900",
                message=f"cannot parse the file ({why}); its import lines were scanned as text",
                form="file",
                context=("unparsed file",),
            ),
            *_text_scan(spec, display, data, package),
        ]
    else:
        scanner = _FileScanner(spec, display, lines, _candidate_lines(data, segments), package)
        scanner.statements(tree.body, ())
        findings = scanner.findings
    for finding in findings:
        if _suppressed(finding, lines):
            result.suppressed += 1
        else:
            result.findings.append(finding)
    result.findings.sort(key=Finding.sort_key)
    return result
