"""Properties of ``migrate`` on generated files: compiles, idempotent, touches only its lines."""

from __future__ import annotations

import ast
import difflib

from agentengine_migrate.file_migration import migrate_source
from agentengine_migrate.file_scan import scan_source
from agentengine_migrate.spec import build_spec
from hypothesis import HealthCheck, given, settings, strategies as st

SPECS = {"legacy": build_spec({}), "netra": build_spec({}, presets=["netra"])}
OLD_MODULES = {
    "legacy": ["agentengine.legacy"],
    "netra": [
        "netra_backend.app.agents.supervisor.execution_engine",
        "netra_backend.app.core.managers.execution_engine_factory",
        "netra_backend.app.agents.base.executor",
    ],
}
NAMES = [
    "ExecutionEngine",
    "ExecutionEngineFactory",
    "ExecutionFactory",
    "BaseExecutionEngine",
    "get_execution_engine_factory",
    "user_execution_engine",
    "UnknownThing",
]
# Every line a rewrite may touch mentions one of these; ordinary lines never do.
MARKERS = ("legacy", "netra", "Execution", "execution", "Unknown", "OLD", ")")

ORDINARY = st.sampled_from(
    [
        "x = 1\n",
        "def helper(a, b=2):\n    return a + b  # sum\n",
        "class Thing:\n    '''Doc.'''\n\n    value = [1, 2,\n             3]\n",
        "# a comment line\n",
        "\n",
        "import os\n",
        "from collections import OrderedDict as OD\n",
        "if os.environ:\n    y = {'k': 'v'}\n",
        "text = 'plain string, nothing deprecated'\n",
        "async def coro():\n    await something()\n",
    ]
)


@st.composite
def deprecated_block(draw: st.DrawFn, preset: str) -> str:
    module = draw(st.sampled_from(OLD_MODULES[preset]))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    aliased = [
        f"{n} as {n}_OLD" if draw(st.booleans()) and n != "UnknownThing" else n for n in names
    ]
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return f"from {module} import {', '.join(aliased)}\n"
    if kind == 1:
        body = "".join(f"    {a},  # note {i}\n" for i, a in enumerate(aliased))
        return f"from {module} import (  # open\n{body})\n"
    if kind == 2:
        return f"def fn_{len(names)}():\n    from {module} import {aliased[0]}\n    return 1\n"
    if kind == 3:
        return (
            f"try:\n    from {module} import {', '.join(aliased)}\nexcept ImportError:\n    pass\n"
        )
    if kind == 4:
        return f"if TYPE_CHECKING:\n    from {module} import {aliased[0]}\n"
    if kind == 5:
        return f"with pytest.raises(ImportError):\n    from {module} import {aliased[0]}\n"
    if kind == 6:
        return f"mock.patch('{module}.{names[0]}')\n"
    if kind == 7:
        local = names[0] if "as" not in aliased[0] else f"{names[0]}_OLD"
        return f"from {module} import {aliased[0]}\nExecution_obj = {local}(1, 2, 3)\n"
    return f"import {module} as OLD_mod\nExecution_use = OLD_mod.{names[0]}\n"


@st.composite
def source_file(draw: st.DrawFn) -> tuple[str, bytes]:
    preset = draw(st.sampled_from(sorted(SPECS)))
    blocks = draw(st.lists(st.one_of(ORDINARY, deprecated_block(preset)), min_size=1, max_size=10))
    text = "".join(blocks)
    if draw(st.booleans()):  # Windows line endings must survive too
        text = text.replace("\n", "\r\n")
    return preset, text.encode()


def _touchable_lines(data: bytes, preset: str) -> set[int]:
    """Lines a correct rewrite may change: statements with findings, and marked lines."""
    lines = data.splitlines()
    touchable = {i for i, line in enumerate(lines, 1) if any(m.encode() in line for m in MARKERS)}
    findings = scan_source(data, SPECS[preset]).findings
    statements = {f.statement_line for f in findings}
    for node in ast.walk(ast.parse(data)):
        if isinstance(node, ast.Import | ast.ImportFrom) and node.lineno in statements:
            touchable.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return touchable


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(source_file())
def test_migrate_output_compiles_is_idempotent_and_local(case: tuple[str, bytes]) -> None:
    preset, data = case
    spec = SPECS[preset]
    compile(data, "generated", "exec")  # the generator only makes valid files
    first = migrate_source(data, spec)
    assert first.untouched is None, first.untouched
    compile(first.new, "migrated", "exec")
    second = migrate_source(first.new, spec)
    assert second.new == first.new, "a second pass changed the file"
    # Every byte outside the changed lines is identical.
    touchable = _touchable_lines(data, preset)
    old_lines = data.splitlines(keepends=True)
    new_lines = first.new.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag in {"replace", "delete"}:
            for number in range(i1 + 1, i2 + 1):
                assert number in touchable, f"line {number} changed: {old_lines[number - 1]!r}"
    # A name import or patch target with a known replacement is never left behind, except
    # inside pytest.raises (module imports depend on how the module object is used).
    leftover = scan_source(first.new, spec).findings
    assert all(
        f.code not in {"AEM001", "AEM101"} or not f.fixable or "pytest.raises" in f.context
        for f in leftover
    ), leftover


TRICKY_TAILS = st.sampled_from(
    [
        'x = """\nfrom agentengine.legacy import Gone\n"""\n',  # col-0 text inside a string
        "y = (\n1,\n)\n",  # col-0 lines inside brackets
        "try:\n    import os\nexcept ImportError:\n    pass\n",
        "if x:\n    pass\nelse:\n    pass\n",
        "@decorator\ndef g():\n    pass\n",
        "z = 1 + \\\n2\n",
        "class C:\n    '''Docs naming agentengine.legacy.ExecutionEngine.'''\n",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source_file(), st.lists(TRICKY_TAILS, max_size=4), st.booleans())
def test_parsing_only_a_prefix_finds_exactly_what_a_whole_parse_finds(
    case: tuple[str, bytes], tails: list[str], tail_first: bool
) -> None:
    """check parses a file only up to its last hit when that part is a module on its own."""
    from agentengine_migrate import file_scan

    preset, data = case
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    extra = "".join(tails).encode().replace(b"\n", newline)
    data = extra + data if tail_first else data + extra
    spec = SPECS[preset]
    prefix = scan_source(data, spec)
    original = file_scan._parse_prefix
    file_scan._parse_prefix = lambda data, last_line: None  # type: ignore[assignment]
    try:
        whole = scan_source(data, spec)
    finally:
        file_scan._parse_prefix = original
    assert prefix.findings == whole.findings
    assert prefix.suppressed_findings == whole.suppressed_findings
    assert prefix.parsed == whole.parsed
