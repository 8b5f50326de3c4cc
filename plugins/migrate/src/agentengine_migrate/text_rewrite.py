"""Rewriting as text: the fallback of ``migrate`` for statements libcst does not reproduce
exactly (``cst_rewrite.NoRoundTripError``).

Only what can be rewritten exactly is: single ``from old import ...`` statements without a
comment or line continuation inside, and patch and import target strings.
"""

from __future__ import annotations

import ast

from agentengine_migrate.findings import RewriteTargets
from agentengine_migrate.spec import MigrationSpec
from agentengine_migrate.syntax import (
    absolute_module,
    dotted_name,
    is_import_call,
    is_patch_call,
    is_raises_item,
    string_target_replacement,
)

__all__ = ["text_rewrite"]


def text_rewrite(
    data: bytes, spec: MigrationSpec, package: str | None, targets: RewriteTargets
) -> bytes | None:
    """Rewrite single-statement ``from old import ...`` lines and patch targets as text.

    Used when libcst does not round-trip the file. Returns None when a statement to change
    holds a comment or a line continuation (rewriting it as text could lose something).
    """
    tree = ast.parse(data)
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    edits: list[tuple[int, int, bytes]] = []

    def offset(line: int, col: int) -> int:
        return starts[line - 1] + col

    raises_ranges = [
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if not targets.include_raises
        and isinstance(node, ast.With)
        and any(is_raises_item(i) for i in node.items)
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.lineno in targets.import_lines:
            if any(a <= node.lineno <= b for a, b in raises_ranges):
                continue
            module = absolute_module(node.module, node.level, package)
            if module is None:
                continue
            rule = spec.rule_for(module)
            if rule is None or module != rule.module:
                continue
            replacements = [rule.target_for(a.name) for a in node.names]
            if any(t is None or t.name is None for t in replacements):
                continue  # partly unknown: a person decides, libcst-free
            start = offset(node.lineno, node.col_offset)
            end = offset(node.end_lineno or node.lineno, node.end_col_offset or 0)
            segment = data[start:end]
            if b"#" in segment or b"\\" in segment:
                return None
            groups: dict[str, list[str]] = {}
            for alias, target in zip(node.names, replacements, strict=True):
                assert target is not None
                assert target.name is not None
                local = alias.asname or alias.name
                text = target.name if local == target.name else f"{target.name} as {local}"
                groups.setdefault(target.module, []).append(text)
            line_start = starts[node.lineno - 1]
            indent = data[line_start:start]
            line = data[line_start : starts[node.lineno]]
            newline = line[len(line.rstrip(b"\r\n")) :] or b"\n"
            separator = newline + indent if not indent.strip() else b"; "
            new = separator.join(
                f"from {m} import {', '.join(names)}".encode() for m, names in groups.items()
            )
            edits.append((start, end, new))
        elif isinstance(node, ast.Call) and node.args:
            name = dotted_name(node.func) or ""
            first = node.args[0]
            if (
                (is_patch_call(name) or is_import_call(name))
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and first.lineno in targets.string_lines
            ):
                new_target = string_target_replacement(spec, name, first.value)
                start = offset(first.lineno, first.col_offset)
                end = offset(first.end_lineno or first.lineno, first.end_col_offset or 0)
                literal = data[start:end]
                if new_target is None or literal[1:-1] != first.value.encode():
                    continue
                edits.append((start, end, literal[:1] + new_target.encode() + literal[-1:]))
    for start, end, new in sorted(edits, reverse=True):
        data = data[:start] + new + data[end:]
    return data
