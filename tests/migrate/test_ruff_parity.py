"""``agentengine check`` against ruff's TID251 on a generated tree: the same statements flagged,
at the same lines and columns, the same number of times, with the same ``# noqa`` honoured.

The tree (a few hundred files, fixed seed) holds every import form both tools read, shims that
import each other (relative imports inside a deprecated package included), ``noqa`` comments
where ruff reads them and where it does not, string references (which only ``check`` reports)
and a file with merge-conflict markers (which neither parses; ``check`` scans it as text).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from migrate_helpers import Cli, write

SUPERVISOR = "netra_backend.app.agents.supervisor"
NETRA = [
    f"{SUPERVISOR}.execution_engine",
    f"{SUPERVISOR}.execution_factory",
    f"{SUPERVISOR}.mcp_execution_engine",
    "netra_backend.app.core.execution_engine",
    "netra_backend.app.core.managers.execution_engine_factory",
    "netra_backend.app.agents.base.executor",
]
NAMES = ["ExecutionEngine", "ExecutionEngineFactory", "get_execution_engine_factory", "Other"]
IMPORT_CODES = {"AEM001", "AEM002", "AEM003", "AEM004"}


def _snippet(rng: random.Random, in_supervisor: bool) -> str:
    module = rng.choice(NETRA)
    parent, _, leaf = module.rpartition(".")
    a, b = rng.sample(NAMES, 2)
    forms = [
        f"from {module} import {a}\n",
        f"from {module} import {a} as Old{a}, {b}\n",
        f"from {module} import (\n    {a},  # old\n    {b} as B2,\n)\n",
        f"from {module} import \\\n    {a}\n",
        f"import {module}\n",
        f"import os, {module} as legacy_mod, {rng.choice(NETRA)}\n",
        f"import os, \\\n    {module}\n",
        f"from {parent} import {leaf}\n",
        f"from {parent} import (\n    os_thing,\n    {leaf} as sub,\n)\n",
        f"def lazy():\n    from {module} import {a}\n    return {a}\n",
        f"try:\n    from {module} import {a}\nexcept ImportError:\n    {a} = None\n",
        f"if TYPE_CHECKING:\n    from {module} import {a}\n",
        f"from {module} import *\n",
        f"x = 1; from {module} import {a}\n",
        f"class K:\n    from {module} import {a}\n",
        # Suppressions where both tools read them, and where neither does (closing paren).
        f"from {module} import {a}  # noqa: TID251\n",
        f"from {module} import {a}  # noqa\n",
        f"from {module} import (  # noqa: TID251, AEM001\n    {a},\n)\n",
        f"from {module} import (\n    {a},\n)  # noqa: TID251\n",
        f"from {module} import \\\n    {a}  # noqa: TID251\n",
        # Strings: only check reports them.
        f"PATHS = ['{module}', '{module}:{a}']\n",
        f"mock.patch('{module}.{a}')\n",
        f'"""Moved out of {module}."""\n',
    ]
    if in_supervisor:
        forms.append(f"from .{leaf if parent == SUPERVISOR else 'execution_engine'} import {a}\n")
    return rng.choice(forms)


def _tree(root: Path, files: int, seed: int = 16) -> None:
    rng = random.Random(seed)
    packages = [f"netra_backend/app/pkg{i}" for i in range(8)]
    packages += [
        "netra_backend/app/agents/supervisor",
        "netra_backend/app/agents/base",
        "netra_backend/app/core/managers",
        "tests/unit",
    ]
    content: dict[str, str] = {}
    for package in packages:
        parts = package.split("/")
        for depth in range(1, len(parts) + 1):
            content["/".join(parts[:depth]) + "/__init__.py"] = ""
    for i in range(files):
        package = packages[i % len(packages)]
        chunks = ["import os\nfrom typing import TYPE_CHECKING\nfrom unittest import mock\n"]
        for _ in range(rng.randrange(0, 4)):
            chunks.append(f"\n\ndef f_{rng.randrange(1000)}():\n    return os.sep\n")
            chunks.append("\n" + _snippet(rng, package.endswith("supervisor")))
        content[f"{package}/m{i:04d}.py"] = "".join(chunks)
    # Shims: deprecated modules re-exporting each other, absolutely and relatively.
    content[f"{SUPERVISOR.replace('.', '/')}/execution_engine.py"] = (
        "from netra_backend.app.core.execution_engine import ExecutionEngine\n"
        "from .execution_factory import ExecutionEngineFactory\n"
    )
    content[f"{SUPERVISOR.replace('.', '/')}/execution_factory.py"] = (
        "from .user_execution_engine import UserExecutionEngine as ExecutionEngine\n"
        "from . import execution_engine\n"
    )
    content["netra_backend/app/core/execution_engine.py"] = (
        "from netra_backend.app.agents.supervisor.execution_engine import (\n"
        "    ExecutionEngine,\n"
        ")\n"
    )
    content["agentengine/__init__.py"] = ""
    content["agentengine/legacy/__init__.py"] = "from .names import X\nfrom . import names\n"
    content["agentengine/legacy/names.py"] = "X = 1\n"
    content["app/uses_legacy.py"] = (
        "from agentengine.legacy import ExecutionEngine\nimport agentengine.legacy.names\n"
    )
    # Neither tool parses this one; check scans it as text.
    content["netra_backend/app/pkg0/conflicted.py"] = (
        "<<<<<<< HEAD\n"
        f"from {NETRA[0]} import ExecutionEngine\n"
        "=======\n"
        f"from {NETRA[1]} import (\n    ExecutionEngineFactory,\n)\n"
        ">>>>>>> branch\n"
    )
    write(root, content)


def _ruff() -> str:
    return shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))


def test_import_findings_match_ruff_tid251_on_a_generated_tree(cli: Cli, tmp_path: Path) -> None:
    _tree(tmp_path, 300)
    presets = ["--preset", "netra", "--preset", "agentengine-legacy"]
    config = cli("check", *presets, "--emit-ruff-config").stdout
    (tmp_path / "pyproject.toml").write_text(
        config.replace('extend-select = ["TID251"]', 'select = ["TID251"]')
    )
    ran = subprocess.run(
        [_ruff(), "check", "--no-cache", "--output-format", "json", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    diagnostics = json.loads(ran.stdout)
    theirs = Counter(
        (Path(d["filename"]).relative_to(tmp_path).as_posix(), d["location"]["row"],
         d["location"]["column"])
        for d in diagnostics
        if d["code"] == "TID251"
    )  # fmt: skip
    unparsed_by_ruff = {
        Path(d["filename"]).relative_to(tmp_path).as_posix()
        for d in diagnostics
        if d["code"] != "TID251"
    }
    assert unparsed_by_ruff == {"netra_backend/app/pkg0/conflicted.py"}
    result = cli("check", *presets, "--format", "json", ".")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    findings = report["findings"]
    ours = Counter(
        (f["path"], f["line"], f["col"])
        for f in findings
        if f["code"] in IMPORT_CODES and f["path"] not in unparsed_by_ruff
    )
    assert sum(theirs.values()) > 300  # the tree exercises the comparison
    assert ours == theirs
    # Strictly more: string references, and the conflicted file's imports, scanned as text.
    codes = Counter(f["code"] for f in findings)
    assert codes["AEM101"] and codes["AEM105"] and codes["AEM106"]
    conflicted = [f for f in findings if f["path"] in unparsed_by_ruff]
    assert [(f["line"], f["code"]) for f in conflicted] == [
        (1, "AEM900"),
        (2, "AEM001"),
        (4, "AEM001"),
    ]
    # The shims are reported, marked as inside a deprecated module.
    shims = {f["path"]: f["in_deprecated_module"] for f in findings if f["in_deprecated_module"]}
    assert shims == {
        "agentengine/legacy/__init__.py": "agentengine.legacy",
        "netra_backend/app/agents/supervisor/execution_engine.py": f"{SUPERVISOR}.execution_engine",
        "netra_backend/app/agents/supervisor/execution_factory.py": (
            f"{SUPERVISOR}.execution_factory"
        ),
        "netra_backend/app/core/execution_engine.py": "netra_backend.app.core.execution_engine",
    }
