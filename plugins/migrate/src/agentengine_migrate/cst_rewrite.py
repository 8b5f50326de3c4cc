"""Rewriting the statements ``check`` reported with libcst, keeping every other byte.

Used by ``file_migration.py`` (which applies the safety rules around it). Only the top-level
statements that can change are parsed, each on its own, and each must be reproduced byte for
byte (else ``NoRoundTripError``, and the caller falls back to ``text_rewrite.py``). Local names
are kept (``from old import X`` -> ``from new import NewX as X``), and so are comments and
formatting.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst
from agentengine.errors import AgentEngineError

from agentengine_migrate.findings import RewriteTargets
from agentengine_migrate.spec import MigrationSpec, Target
from agentengine_migrate.syntax import (
    RAISES_CALLS,
    absolute_module,
    dotted_name,
    is_import_call,
    is_patch_call,
    line_of,
    string_target_replacement,
)

__all__ = ["NoRoundTripError", "cst_rewrite"]


def _dotted(node: cst.CSTNode) -> str | None:
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


def _expr(dotted: str) -> cst.Attribute | cst.Name:
    head, *rest = dotted.split(".")
    node: cst.Attribute | cst.Name = cst.Name(head)
    for part in rest:
        node = cst.Attribute(value=node, attr=cst.Name(part))
    return node


def _opens_raises(node: cst.With) -> bool:
    """Whether a ``with`` statement is a ``pytest.raises`` block."""
    return any(
        isinstance(item.item, cst.Call) and _dotted(item.item.func) in RAISES_CALLS
        for item in node.items
    )


@dataclass
class _ModuleBinding:
    """A local name bound to a deprecated module: ``import old as x``, ``from pkg import old``."""

    node_id: int
    alias_id: int
    old_module: str
    prefix: str  # what uses spell before ``.Name``: ``x`` or ``old.mod`` (plain ``import``)
    local: str | None  # the bound name for alias forms
    attrs: set[str] = field(default_factory=set)
    dynamic: bool = False
    new_module: str | None = None
    new_names: dict[str, str] = field(default_factory=dict)


class _Collector(cst.CSTVisitor):
    """First pass: which statements to rewrite, and how the bound names are used.

    libcst positions cost a full code generation per file, so the statements ``check``
    reported are identified by their ordinal instead: the n-th import (and the n-th
    ``patch("...")`` call) in source order is the same node for ``ast`` and for libcst.
    """

    def __init__(
        self,
        spec: MigrationSpec,
        package: str | None,
        allowed_imports: set[int],
        allowed_patches: set[int],
        include_raises: bool,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.package = package
        self.allowed_imports = allowed_imports
        self.allowed_patches = allowed_patches
        self.imports_seen = 0
        self.patches_seen = 0
        self.include_raises = include_raises
        self.raises_depth = 0
        # ImportFrom id -> [(alias id, Target or None)]
        self.from_plans: dict[int, list[tuple[int, Target | None]]] = {}
        self.from_bindings: dict[str, tuple[str, str]] = {}  # local -> (old module, old name)
        self.bindings: list[_ModuleBinding] = []
        self.patch_strings: dict[int, str] = {}  # SimpleString id -> new dotted target

    def _next_import_allowed(self) -> bool:
        index = self.imports_seen
        self.imports_seen += 1
        return index in self.allowed_imports

    def visit_With(self, node: cst.With) -> None:  # noqa: N802 (libcst dispatches on these names)
        if _opens_raises(node):
            self.raises_depth += 1

    def leave_With(self, original_node: cst.With) -> None:  # noqa: N802 (libcst dispatches on these names)
        if _opens_raises(original_node):
            self.raises_depth -= 1

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:  # noqa: N802 (libcst dispatches on these names)
        if not self._next_import_allowed() or isinstance(node.names, cst.ImportStar):
            return False
        if self.raises_depth and not self.include_raises:
            return False
        spelled = _dotted(node.module) if node.module is not None else None
        module = absolute_module(spelled, len(node.relative), self.package)
        if module is None:
            return False
        rule = self.spec.rule_for(module)
        if rule is not None:
            plan: list[tuple[int, Target | None]] = []
            for alias in node.names:
                name = _dotted(alias.name) or ""
                target = rule.target_for(name) if module == rule.module else None
                if target is not None and target.name is not None:
                    plan.append((id(alias), target))
                    local = _local_name(alias) or name
                    self.from_bindings[local] = (module, name)
                else:
                    plan.append((id(alias), None))
            self.from_plans[id(node)] = plan
            return False
        for alias in node.names:
            name = _dotted(alias.name) or ""
            full = f"{module}.{name}"
            if full in self.spec.modules:
                local = _local_name(alias) or name
                self.bindings.append(_ModuleBinding(id(node), id(alias), full, local, local))
        return False

    def visit_Import(self, node: cst.Import) -> bool:  # noqa: N802 (libcst dispatches on these names)
        if not self._next_import_allowed():
            return False
        if self.raises_depth and not self.include_raises:
            return False
        for alias in node.names:
            name = _dotted(alias.name) or ""
            if name in self.spec.modules:
                local = _local_name(alias)
                self.bindings.append(
                    _ModuleBinding(id(node), id(alias), name, local or name, local)
                )
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:  # noqa: N802 (libcst dispatches on these names)
        dotted = _dotted(node)
        if dotted is None:
            node.value.visit(self)
            return False
        for binding in self.bindings:
            if dotted == binding.prefix:
                binding.dynamic = True
            elif dotted.startswith(binding.prefix + "."):
                binding.attrs.add(dotted[len(binding.prefix) + 1 :].partition(".")[0])
        return False

    def visit_Name(self, node: cst.Name) -> None:  # noqa: N802 (libcst dispatches on these names)
        for binding in self.bindings:
            if node.value == binding.prefix.partition(".")[0]:
                binding.dynamic = True

    def visit_Call(self, node: cst.Call) -> None:  # noqa: N802 (libcst dispatches on these names)
        name = _dotted(node.func)
        if name is None or not _is_target_call(name) or not node.args:
            return
        first = node.args[0].value
        if not isinstance(first, cst.SimpleString | cst.ConcatenatedString):
            return
        if not isinstance(first.evaluated_value, str):  # bytes and f-strings: not for ast
            return
        index = self.patches_seen
        self.patches_seen += 1
        if index not in self.allowed_patches or not isinstance(first, cst.SimpleString):
            return
        value = first.evaluated_value
        if not isinstance(value, str) or first.raw_value != value:
            return
        new = string_target_replacement(self.spec, name, value)
        if new is not None:
            self.patch_strings[id(first)] = new

    def decide(self) -> None:
        """Settle each module binding: rewritable (one new module) or left for a person."""
        for binding in self.bindings:
            rule = self.spec.modules[binding.old_module]
            if binding.dynamic:
                continue
            targets = {a: rule.target_for(a) for a in binding.attrs}
            if any(t is None or t.name is None for t in targets.values()):
                continue
            modules = {t.module for t in targets.values() if t is not None}
            if not modules and rule.replacement:
                modules = {rule.replacement}
            if len(modules) != 1:
                continue
            binding.new_module = modules.pop()
            binding.new_names = {a: t.name for a, t in targets.items() if t and t.name}


def _local_name(alias: cst.ImportAlias) -> str | None:
    if alias.asname is None:
        return None
    name = alias.asname.name
    return name.value if isinstance(name, cst.Name) else None


def _closing_indent(node: cst.ImportFrom) -> cst.SimpleWhitespace:
    """The indentation of the closing parenthesis of a multi-line ``from ... import (...)``."""
    last = node.names[-1] if isinstance(node.names, Sequence) else None
    for ws in (
        getattr(getattr(last, "comma", None), "whitespace_after", None),
        node.rpar.whitespace_before if node.rpar is not None else None,
    ):
        if isinstance(ws, cst.ParenthesizedWhitespace):
            return ws.last_line
    return cst.SimpleWhitespace("")


def _fix_commas(
    aliases: list[cst.ImportAlias], node: cst.ImportFrom, original_last: cst.ImportAlias
) -> cst.ImportFrom:
    """``node`` holding ``aliases``, with the commas and closing parenthesis made valid."""
    out = []
    rpar = node.rpar
    for index, alias in enumerate(aliases):
        fixed = alias
        last = index == len(aliases) - 1
        if not last:
            if isinstance(alias.comma, cst.MaybeSentinel):
                space = cst.SimpleWhitespace(" ")
                fixed = alias.with_changes(comma=cst.Comma(whitespace_after=space))
        elif rpar is None:
            fixed = alias.with_changes(comma=cst.MaybeSentinel.DEFAULT)
        elif alias is not original_last and isinstance(alias.comma, cst.Comma):
            # This alias now closes the statement: keep its comment, put `)` where the
            # original closing parenthesis was.
            ws = alias.comma.whitespace_after
            if isinstance(ws, cst.ParenthesizedWhitespace):
                ws = ws.with_changes(last_line=_closing_indent(node))
                fixed = alias.with_changes(comma=alias.comma.with_changes(whitespace_after=ws))
                rpar = rpar.with_changes(whitespace_before=cst.SimpleWhitespace(""))
            else:
                fixed = alias.with_changes(comma=cst.MaybeSentinel.DEFAULT)
        out.append(fixed)
    return node.with_changes(names=out, rpar=rpar)


def _renamed(alias: cst.ImportAlias, new_name: str, local: str) -> cst.ImportAlias:
    if local == new_name:
        return alias.with_changes(name=cst.Name(new_name), asname=None)
    asname = alias.asname or cst.AsName(name=cst.Name(local))
    return alias.with_changes(name=cst.Name(new_name), asname=asname)


class _Rewriter(cst.CSTTransformer):
    """Second pass: apply what the collector decided."""

    def __init__(self, collector: _Collector) -> None:
        super().__init__()
        self.c = collector
        self.bindings_by_alias = {
            b.alias_id: b for b in collector.bindings if b.new_module is not None
        }
        self.rewritten_prefixes = [b for b in collector.bindings if b.new_module is not None]

    # -- imports ---------------------------------------------------------------------------

    def leave_ImportFrom(  # noqa: N802 (libcst dispatches on these names)
        self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
    ) -> cst.BaseSmallStatement | cst.FlattenSentinel[cst.BaseSmallStatement]:
        if isinstance(original_node.names, cst.ImportStar) or isinstance(
            updated_node.names, cst.ImportStar
        ):
            return updated_node
        plan = dict(self.c.from_plans.get(id(original_node), ()))
        originals = list(original_node.names)
        if not plan and not any(id(a) in self.bindings_by_alias for a in originals):
            return updated_node
        original_last = updated_node.names[-1]
        groups: dict[str, list[cst.ImportAlias]] = {}
        order: list[tuple[str, str]] = []  # (kind, key) in first-appearance order
        kept: list[cst.ImportAlias] = []
        extra: dict[str, cst.BaseSmallStatement] = {}
        for orig, alias in zip(originals, updated_node.names, strict=True):
            name = _dotted(orig.name) or ""
            local = _local_name(orig) or name
            target = plan.get(id(orig))
            binding = self.bindings_by_alias.get(id(orig))
            if target is not None and target.name is not None:
                if target.module not in groups:
                    groups[target.module] = []
                    order.append(("group", target.module))
                groups[target.module].append(_renamed(alias, target.name, local))
            elif binding is not None and binding.new_module is not None:
                parent, _, leaf = binding.new_module.rpartition(".")
                stmt: cst.BaseSmallStatement
                if parent:
                    renamed = _renamed(alias, leaf, local)
                    stmt = cst.ImportFrom(
                        module=_expr(parent),
                        names=[renamed.with_changes(comma=cst.MaybeSentinel.DEFAULT)],
                    )
                else:
                    asname = None if local == leaf else cst.AsName(name=cst.Name(local))
                    stmt = cst.Import(names=[cst.ImportAlias(name=cst.Name(leaf), asname=asname)])
                key = f"binding:{id(orig)}"
                extra[key] = stmt
                order.append(("extra", key))
            else:
                if not kept:
                    order.append(("kept", ""))
                kept.append(alias)
        statements: list[cst.BaseSmallStatement] = []
        for kind, key in order:
            if kind == "group":
                moved = updated_node.with_changes(
                    module=_expr(key), relative=(), semicolon=cst.MaybeSentinel.DEFAULT
                )
                statements.append(_fix_commas(groups[key], moved, original_last))
            elif kind == "kept":
                stay = updated_node.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)
                statements.append(_fix_commas(kept, stay, original_last))
            else:
                statements.append(extra[key])
        if len(statements) == 1:
            return statements[0].with_changes(semicolon=updated_node.semicolon)
        return cst.FlattenSentinel(statements)

    def leave_Import(self, original_node: cst.Import, updated_node: cst.Import) -> cst.Import:  # noqa: N802 (libcst dispatches on these names)
        names = []
        changed = False
        for orig, alias in zip(original_node.names, updated_node.names, strict=True):
            binding = self.bindings_by_alias.get(id(orig))
            if binding is None or binding.new_module is None:
                names.append(alias)
                continue
            changed = True
            local = binding.local
            asname = alias.asname if local and local != binding.new_module else None
            names.append(alias.with_changes(name=_expr(binding.new_module), asname=asname))
        return updated_node.with_changes(names=names) if changed else updated_node

    def leave_SimpleStatementLine(  # noqa: N802 (libcst dispatches on these names)
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.FlattenSentinel[cst.SimpleStatementLine]:
        if len(original_node.body) != 1 or len(updated_node.body) <= 1:
            return updated_node
        # One import became several: one per line, each keeping the line's trailing comment
        # (a type-ignore or noqa pragma applies to each of them).
        lines = [
            updated_node.with_changes(
                body=[stmt.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)],
                leading_lines=updated_node.leading_lines if index == 0 else [],
            )
            for index, stmt in enumerate(updated_node.body)
        ]
        return cst.FlattenSentinel(lines)

    # -- uses ------------------------------------------------------------------------------

    def leave_Attribute(  # noqa: N802 (libcst dispatches on these names)
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        dotted = _dotted(original_node)
        if dotted is None:
            return updated_node
        for binding in self.rewritten_prefixes:
            prefix = binding.prefix
            if not dotted.startswith(prefix + ".") or "." in dotted[len(prefix) + 1 :]:
                continue
            attr = dotted[len(prefix) + 1 :]
            new_name = binding.new_names.get(attr, attr)
            if binding.local is not None:
                return updated_node.with_changes(attr=cst.Name(new_name))
            assert binding.new_module is not None
            replacement = _expr(f"{binding.new_module}.{new_name}")
            return replacement.with_changes(lpar=updated_node.lpar, rpar=updated_node.rpar)
        return updated_node

    def _old_qualname(self, func: cst.BaseExpression) -> tuple[str, str] | None:
        dotted = _dotted(func)
        if dotted is None:
            return None
        if dotted in self.c.from_bindings:
            return self.c.from_bindings[dotted]
        for binding in self.rewritten_prefixes:
            if dotted.startswith(binding.prefix + "."):
                attr = dotted[len(binding.prefix) + 1 :]
                if "." not in attr:
                    return (binding.old_module, attr)
        return None

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:  # noqa: N802 (libcst dispatches on these names)
        old = self._old_qualname(original_node.func)
        if old is None:
            return updated_node
        rewrite = self.c.spec.calls.get(old)
        if rewrite is None:
            return updated_node
        return updated_node.with_changes(
            func=cst.Attribute(value=updated_node.func, attr=cst.Name(rewrite.attribute))
        )

    def leave_SimpleString(  # noqa: N802 (libcst dispatches on these names)
        self, original_node: cst.SimpleString, updated_node: cst.SimpleString
    ) -> cst.SimpleString:
        new = self.c.patch_strings.get(id(original_node))
        if new is None:
            return updated_node
        quote = updated_node.quote
        return updated_node.with_changes(value=f"{updated_node.prefix}{quote}{new}{quote}")


def _first_arg(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    return call.keywords[0].value if call.keywords else None


def _is_target_call(name: str) -> bool:
    """A call whose first argument is a patch or import target (rewritten when reported)."""
    return is_patch_call(name) or is_import_call(name)


def _is_ast_patch_with_string(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    name = dotted_name(node.func)
    first = _first_arg(node)
    return (
        name is not None
        and _is_target_call(name)
        and isinstance(first, ast.Constant)
        and isinstance(first.value, str)
    )


class NoRoundTripError(AgentEngineError):
    """libcst does not reproduce a statement to change byte for byte."""


_BOM = b"\xef\xbb\xbf"


def cst_rewrite(
    data: bytes, spec: MigrationSpec, package: str | None, targets: RewriteTargets
) -> bytes:
    """Rewrite with libcst, parsing only the top-level statements that can change.

    Each such statement (its exact lines) is parsed on its own and must round-trip byte for
    byte (else ``NoRoundTripError``); every other byte of the file is copied as it is. Parsing a
    few statements instead of the whole module is what keeps ``migrate`` fast.
    """
    bom = data.startswith(_BOM)
    if bom:
        data = data[len(_BOM) :]
    encoding = tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    config = cst.PartialParserConfig(encoding="utf-8" if encoding == "utf-8-sig" else encoding)
    tree = ast.parse(data)
    lines = data.splitlines(keepends=True)
    # Line ranges of the top-level statements; statements sharing a line (`a; b`) merge.
    ranges: list[tuple[int, int]] = []
    for node in tree.body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])
        last = node.end_lineno or node.lineno
        if ranges and first <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(last, ranges[-1][1]))
        else:
            ranges.append((first, last))
    # Lines that may change: the reported ones, and every line naming a name they bind.
    import_lines, string_lines = targets.import_lines, targets.string_lines
    relevant = set(import_lines) | set(string_lines)
    locals_: set[str] = set()
    for found in ast.walk(tree):
        if isinstance(found, ast.Import | ast.ImportFrom) and found.lineno in import_lines:
            relevant.update(range(found.lineno, (found.end_lineno or found.lineno) + 1))
            for alias in found.names:
                locals_.add((alias.asname or alias.name).partition(".")[0])
    if locals_:
        names = b"|".join(re.escape(n.encode()) for n in locals_)
        pattern = re.compile(rb"\b(?:" + names + rb")\b")
        for match in pattern.finditer(data):
            relevant.add(line_of(data, match.start()))
    chosen = [(a, b) for a, b in ranges if any(a <= n <= b for n in relevant)]

    def within(line: int) -> bool:
        return any(a <= line <= b for a, b in chosen)

    imports = sorted(
        (
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom) and within(n.lineno)
        ),
        key=lambda n: (n.lineno, n.col_offset),
    )
    patches = sorted(
        (
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and _is_ast_patch_with_string(n) and within(n.lineno)
        ),
        key=lambda n: (n.lineno, n.col_offset),
    )
    allowed_imports = {k for k, n in enumerate(imports) if n.lineno in import_lines}
    allowed_patches = {
        k
        for k, n in enumerate(patches)
        if (arg := _first_arg(n)) is not None and arg.lineno in string_lines
    }
    collector = _Collector(spec, package, allowed_imports, allowed_patches, targets.include_raises)
    parsed: list[cst.Module] = []
    for a, b in chosen:
        chunk = b"".join(lines[a - 1 : b])
        module = cst.parse_module(chunk, config)
        if module.bytes != chunk:
            raise NoRoundTripError
        parsed.append(module)
        module.visit(collector)
    if collector.imports_seen != len(imports) or collector.patches_seen != len(patches):
        raise RuntimeError("libcst and ast disagree on the imports of this file")
    collector.decide()
    rewriter = _Rewriter(collector)
    pieces: list[bytes] = [_BOM] if bom else []
    cursor = 1
    for (a, b), module in zip(chosen, parsed, strict=True):
        pieces.append(b"".join(lines[cursor - 1 : a - 1]))
        pieces.append(module.visit(rewriter).bytes)
        cursor = b + 1
    pieces.append(b"".join(lines[cursor - 1 :]))
    return b"".join(pieces)
