"""Benchmark ``agentengine check`` / ``migrate`` against ruff's TID251 on a generated corpus.

    uv run python bench/migrate_bench.py [--files 10000] [--lines 400] [--keep DIR]

Generates a package tree of ordinary Python (default 10,000 files x ~400 lines = 4 million
lines) with a few hundred deprecated imports of the ``netra`` preset scattered in, in every
form both tools understand, and a few hundred string references only ``check`` sees (patch
targets, bare paths in lists, mentions in docstrings), then times, in the same run and on the
same files:

* ``ruff check --select TID251`` configured with the banned modules ``agentengine check
  --emit-ruff-config`` prints (the floor: a native linter that parses every file);
* ``agentengine check`` on the whole corpus, and on 50 files as a pre-commit hook would (twice:
  in the environment as it is, and with the bytecode of every module cached, as an installed
  package has it; ``uv sync`` compiles none and ``PYTHONDONTWRITEBYTECODE`` writes none, so
  that each run of the first kind compiles every module it imports);
* ``agentengine migrate`` on 100 files that need rewriting.

The two tools run alternately (ruff, check, ruff, check, ...) so that load from other work on
the machine falls on both alike; each figure is reported as min / median / max of its runs.
It prints whether both tools flagged the same import statements (same file, line and column,
the same number of times) and how many findings each reported. Nothing is asserted on time:
the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BIN = Path(sys.executable).parent
AGENTENGINE = str(BIN / "agentengine")
RUFF = shutil.which("ruff", path=str(BIN)) or shutil.which("ruff") or "ruff"

SUPERVISOR = "netra_backend.app.agents.supervisor"
DEPRECATED = [
    f"{SUPERVISOR}.execution_engine",
    f"{SUPERVISOR}.request_scoped_execution_engine",
    f"{SUPERVISOR}.mcp_execution_engine",
    f"{SUPERVISOR}.execution_factory",
    "netra_backend.app.agents.execution_engine_consolidated",
    "netra_backend.app.core.execution_engine",
    "netra_backend.app.core.managers.execution_engine_factory",
    "netra_backend.app.agents.base.executor",
]
NAMES = ["ExecutionEngine", "ExecutionEngineFactory", "get_execution_engine_factory"]

ORDINARY_HEAD = '''"""Module {i}: ordinary application code."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)
'''

ORDINARY_UNIT = '''

@dataclass
class Record{i}_{j}:
    """A record with a few fields."""

    name: str
    values: list[int] = field(default_factory=list)
    enabled: bool = True

    def total(self) -> int:
        # Sum only positive values; negative ones are corrections handled elsewhere.
        return sum(v for v in self.values if v > 0)

    def describe(self) -> str:
        state = "on" if self.enabled else "off"
        return f"{{self.name}} ({{state}}): {{self.total()}}"


def process_{j}(items: Iterable[Record{i}_{j}], limit: int = {limit}) -> dict[str, int]:
    """Total the enabled records, up to ``limit`` of them."""
    out: dict[str, int] = {{}}
    for count, item in enumerate(items):
        if count >= limit:
            logger.info("limit reached after %d items", count)
            break
        if not item.enabled:
            continue
        out[item.name] = item.total()
    return out


def load_{j}(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith("#")]
'''

EXECUTOR_UNIT = """

def run_parallel(jobs):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor() as executor:
        return list(executor.map(str, jobs))
"""


# The scan alone, in-process, on the pre-commit sample: what the command costs without
# the interpreter start and imports. Best of five.
IN_PROCESS_SCAN = """
import sys, time
from pathlib import Path
from agentengine_migrate.spec import build_spec
from agentengine_migrate.check import scan_files

spec = build_spec({}, presets=["netra"])
files = [Path(p).resolve() for p in sys.argv[1:]]
best = float("inf")
for _ in range(5):
    start = time.perf_counter()
    scan_files(files, spec, jobs=1)
    best = min(best, time.perf_counter() - start)
print(best)
"""


def string_snippet(rng: random.Random) -> str:
    """A string reference ruff does not see: a patch target, bare paths, or a mention."""
    module = rng.choice(DEPRECATED)
    name = rng.choice(NAMES)
    forms = [
        f'\n\ndef test_patched():\n    with mock.patch("{module}.{name}"):\n        pass\n',
        f'\n\nLEGACY_PATHS = ["{module}", "{module}.{name}"]\n',
        f'\n\ndef explain():\n    """Replaces {module}.{name}, which is deprecated."""\n',
    ]
    return rng.choice(forms)


def deprecated_snippet(rng: random.Random, in_supervisor: bool) -> tuple[str, int]:
    """A deprecated import in one of the forms; returns (text, statements)."""
    module = rng.choice(DEPRECATED)
    name = rng.choice(NAMES)
    leaf = module.rpartition(".")[2]
    parent = module.rpartition(".")[0]
    forms = [
        f"from {module} import {name}\n",
        f"from {module} import {name} as Legacy{name}\n",
        f"from {module} import (\n    {name},  # the old one\n    {rng.choice(NAMES)},\n)\n",
        f"import {module}\n",
        f"import {module} as legacy_mod\n",
        f"from {parent} import {leaf}\n",
        f"def lazy():\n    from {module} import {name}\n    return {name}\n",
        f"try:\n    from {module} import {name}\nexcept ImportError:\n    {name} = None\n",
        f"if TYPE_CHECKING:\n    from {module} import {name}\n",
        f"from {module} import *\n",
    ]
    if in_supervisor:
        forms.append(
            f"from .{rng.choice(['execution_engine', 'execution_factory'])} import {name}\n"
        )
    return rng.choice(forms), 1


def generate(root: Path, files: int, lines: int, deprecated: int, seed: int = 7) -> dict[str, int]:
    """Write the corpus; return {relative path: number of deprecated import statements}."""
    rng = random.Random(seed)
    unit_lines = ORDINARY_UNIT.count("\n")
    units = max(1, (lines - ORDINARY_HEAD.count("\n")) // unit_lines)
    packages = [f"netra_backend/app/pkg{i:03d}" for i in range(100)]
    packages.append("netra_backend/app/agents/supervisor")
    for package in ["netra_backend", "netra_backend/app", "netra_backend/app/agents", *packages]:
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    planted = set(rng.sample(range(files), deprecated))
    with_strings = set(rng.sample(range(files), deprecated))
    expected: dict[str, int] = {}
    for i in range(files):
        package = packages[i % len(packages)]
        rel = f"{package}/module_{i:05d}.py"
        parts = [ORDINARY_HEAD.format(i=i)]
        insert_at = rng.randrange(units) if i in planted else -1
        for j in range(units):
            if j == insert_at:
                text, count = deprecated_snippet(rng, package.endswith("supervisor"))
                parts.append("\n" + text)
                expected[rel] = expected.get(rel, 0) + count
            parts.append(ORDINARY_UNIT.format(i=i, j=j, limit=rng.randrange(10, 1000)))
        if i % 20 == 0:
            parts.append(EXECUTOR_UNIT)  # realistic near-misses for the byte prefilter
        if i in with_strings:
            parts.append(string_snippet(rng))
        (root / rel).write_text("".join(parts))
    return expected


def timed(
    command: list[str], cwd: Path, runs: int, env: dict[str, str] | None = None
) -> tuple[list[float], subprocess.CompletedProcess[str]]:
    times = []
    result: subprocess.CompletedProcess[str] | None = None
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, check=False, env=env
        )
        times.append(time.perf_counter() - start)
    assert result is not None
    return times, result


def alternating(
    commands: dict[str, list[str]], cwd: Path, runs: int, env: dict[str, str] | None = None
) -> tuple[dict[str, list[float]], dict[str, subprocess.CompletedProcess[str]]]:
    """Run each command once per round, ``runs`` rounds: load falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    for _ in range(runs):
        for name, command in commands.items():
            took, results[name] = timed(command, cwd, 1, env)
            times[name].extend(took)
    return times, results


def spread(times: list[float], scale: float = 1.0, unit: str = "s", digits: int = 2) -> str:
    """``min / median / max`` of a list of durations."""
    values = [t * scale for t in (min(times), statistics.median(times), max(times))]
    return " / ".join(f"{v:.{digits}f}" for v in values) + f" {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=420)
    parser.add_argument("--deprecated", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="Generate the corpus here and keep it.")
    args = parser.parse_args()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="aem-bench-"))
    corpus = workdir / "corpus"
    if corpus.exists():
        shutil.rmtree(corpus)
    corpus.mkdir(parents=True)
    start = time.perf_counter()
    expected = generate(corpus, args.files, args.lines, args.deprecated)
    total_lines = sum(p.read_bytes().count(b"\n") for p in corpus.rglob("*.py"))
    print(
        f"corpus: {args.files} files, {total_lines:,} lines, {sum(expected.values())} "
        f"deprecated import statements in {len(expected)} files "
        f"(generated in {time.perf_counter() - start:.1f}s)"
    )
    ruff_config = subprocess.run(
        [AGENTENGINE, "check", "--preset", "netra", "--emit-ruff-config"],
        capture_output=True,
        text=True,
        check=True,
        cwd=workdir,
    ).stdout
    (corpus / "pyproject.toml").write_text(
        ruff_config.replace('extend-select = ["TID251"]', 'select = ["TID251"]')
    )

    full, runs = alternating(
        {
            "ruff": [RUFF, "check", "--no-cache", "--output-format", "json", "."],
            "check": [AGENTENGINE, "check", "--preset", "netra", "--format", "json", "."],
        },
        corpus,
        args.runs,
    )
    ruff_time, ours_time = min(full["ruff"]), min(full["check"])
    ratios = [c / r for c, r in zip(full["check"], full["ruff"], strict=True)]
    ruff_found = json.loads(runs["ruff"].stdout)
    ruff_lines = Counter(
        (
            str(Path(d["filename"]).resolve().relative_to(corpus.resolve())),
            d["location"]["row"],
            d["location"]["column"],
        )
        for d in ruff_found
        if d["code"] == "TID251"
    )
    ours = json.loads(runs["check"].stdout)
    our_lines = Counter(
        (f["path"], f["line"], f["col"])
        for f in ours["findings"]
        if f["code"] in {"AEM001", "AEM002", "AEM003", "AEM004"}
    )
    same = ruff_lines == our_lines
    strings = len(ours["findings"]) - sum(our_lines.values())
    print(
        f"ruff check --select TID251 : {spread(full['ruff'])}  "
        f"({sum(ruff_lines.values())} findings)"
    )
    print(
        f"agentengine check          : {spread(full['check'])}  "
        f"({len(ours['findings'])} findings: {sum(our_lines.values())} imports, {strings} "
        f"string references; {ours['summary']['candidates']} candidate files parsed)"
    )
    print(
        f"ratio check / ruff per round: {spread(ratios, unit='x')} (best against best "
        f"{ours_time / ruff_time:.2f}x; target <= 1.5x)"
    )
    print(f"identical import findings  : {same}")
    if not same:
        print("  only ruff:", sorted((ruff_lines - our_lines).elements())[:10])
        print("  only ours:", sorted((our_lines - ruff_lines).elements())[:10])

    # A pre-commit run: 50 files, a few of them with findings.
    all_files = sorted(str(p.relative_to(corpus)) for p in corpus.rglob("module_*.py"))
    rng = random.Random(1)
    sample = rng.sample(sorted(expected), 5) + rng.sample(all_files, 45)
    precommit = {
        "floor": [sys.executable, "-c", "pass"],
        "check": [AGENTENGINE, "check", "--preset", "netra", *sample],
        "module": [
            sys.executable,
            "-m",
            "agentengine_migrate",
            "check",
            "--preset",
            "netra",
            *sample,
        ],
        "ruff": [RUFF, "check", "--no-cache", *sample],
    }
    small, _ = alternating(precommit, corpus, args.runs * 3)
    # The same with every module's bytecode cached (in a directory of its own, so that the
    # environment is left as it is): what a pip-installed or compiled environment does.
    cached_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached_env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    for command in precommit.values():  # warm-up: writes the bytecode
        timed(command, corpus, 1, cached_env)
    cached, _ = alternating(precommit, corpus, args.runs * 3, cached_env)
    pc_time = min(small["check"])
    in_process = subprocess.run(
        [sys.executable, "-c", IN_PROCESS_SCAN, *sample],
        cwd=corpus,
        capture_output=True,
        text=True,
        check=True,
    )
    scan_ms = float(in_process.stdout) * 1000
    bytecode = "not written" if sys.flags.dont_write_bytecode else "written"
    print(f"scan of 50 files in-process: {scan_ms:6.1f}ms (best of 5)")
    for label, figures in [(f"as is (bytecode {bytecode})", small), ("bytecode cached", cached)]:
        print(f"pre-commit, 50 files, {label}:")
        print(f"  python -c pass (floor)     : {spread(figures['floor'], 1000, 'ms', 0)}")
        print(f"  ruff                       : {spread(figures['ruff'], 1000, 'ms', 0)}")
        print(
            f"  agentengine check          : {spread(figures['check'], 1000, 'ms', 0)}  "
            "(target <= 150ms)"
        )
        print(f"  python -m agentengine_migrate check: {spread(figures['module'], 1000, 'ms', 0)}")

    # migrate: 100 files that need rewriting, on a copy.
    target = workdir / "to-migrate"
    if target.exists():
        shutil.rmtree(target)
    for rel in sorted(expected)[:100]:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / rel, target / rel)
    for init in corpus.rglob("__init__.py"):
        dest = target / init.relative_to(corpus)
        if dest.parent.exists():
            dest.write_text("")
    start = time.perf_counter()
    migrated = subprocess.run(
        [AGENTENGINE, "migrate", "--preset", "netra", "."],
        cwd=target,
        capture_output=True,
        text=True,
        check=False,
    )
    migrate_time = time.perf_counter() - start
    summary = migrated.stdout.splitlines()[0] if migrated.stdout else migrated.stderr
    print(f"agentengine migrate, 100 files: {migrate_time:5.2f}s  (target <= 10s): {summary}")
    durations = {
        "ruff_full_s": [round(t, 3) for t in full["ruff"]],
        "check_full_s": [round(t, 3) for t in full["check"]],
        "ratio_best": round(ours_time / ruff_time, 3),
        "ratio_median": round(statistics.median(ratios), 3),
        "identical_import_findings": same,
        "ruff_findings": sum(ruff_lines.values()),
        "check_findings": len(ours["findings"]),
        "precommit_50_ms": [round(t * 1000) for t in small["check"]],
        "precommit_50_module_ms": [round(t * 1000) for t in small["module"]],
        "precommit_50_cached_ms": [round(t * 1000) for t in cached["check"]],
        "precommit_50_module_cached_ms": [round(t * 1000) for t in cached["module"]],
        "python_floor_cached_ms": round(min(cached["floor"]) * 1000),
        "precommit_50_scan_in_process_ms": round(scan_ms, 1),
        "python_floor_ms": round(min(small["floor"]) * 1000),
        "precommit_best_ms": round(pc_time * 1000),
        "migrate_100_s": round(migrate_time, 2),
    }
    print(json.dumps(durations))
    if args.keep is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
