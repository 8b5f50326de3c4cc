"""The README and docs examples are executed, so they cannot rot.

Convention: fenced blocks marked ``python`` are complete programs and are run; blocks marked
``py`` are fragments and are not.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from agentengine import parse_event
from invariants import check_run

ROOT = Path(__file__).resolve().parents[2]


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.DOTALL)


def test_readme_python_examples_run(tmp_path: Path) -> None:
    examples = blocks(ROOT / "README.md", "python")
    assert len(examples) >= 2
    for i, source in enumerate(examples):
        script = tmp_path / f"example_{i}.py"
        script.write_text(source)
        proc = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, f"README example {i} failed:\n{source}\n{proc.stderr}"


def test_readme_backend_example_output() -> None:
    source = blocks(ROOT / "README.md", "python")[0]
    proc = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=False
    )
    # structlog, unconfigured, prints log lines to stdout too (the factory's configuration line)
    lines = [line for line in proc.stdout.splitlines() if " [info     ] " not in line]
    assert lines[:5] == [
        "1 agent_started",
        "2 agent_thinking",
        "3 tool_executing",
        "4 tool_completed",
        "5 agent_completed",
    ]
    # Cursors are opaque: the sink's epoch, then the position (the tenth event of alice).
    assert re.fullmatch(r"resume later with after = [0-9a-f]{8}-10", lines[-1]), lines[-1]


def test_readme_plugin_example_registers_its_tool() -> None:
    namespace = {}
    exec(blocks(ROOT / "README.md", "python")[1], namespace)
    from agentengine import ExecutionEngineFactory

    factory = ExecutionEngineFactory(plugins=[namespace["WeatherPlugin"]()], load_entrypoints=False)
    assert "forecast" in factory.tools
    assert factory.tools.get("forecast").description == "The weather forecast for a city."


def test_events_doc_example_stream_is_real_and_valid() -> None:
    (stream,) = blocks(ROOT / "docs" / "events.md", "json")
    events = [parse_event(json.loads(line)) for line in stream.strip().splitlines()]
    check_run(events)
    assert {e.type for e in events} >= {
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    }
    # The documented stream is what the command it names produces today (ids and times aside).
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentengine",
            "run",
            "researcher",
            "--input",
            '{"question": "cursors"}',
            "--user",
            "alice",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    fresh = [json.loads(line) for line in proc.stdout.splitlines()]
    volatile = {"run_id", "thread_id", "ts", "tool_call_id", "duration_ms", "cursor"}
    assert [{k: v for k, v in e.items() if k not in volatile} for e in fresh] == [
        {k: v for k, v in e.to_wire().items() if k not in volatile} for e in events
    ]
    # Cursors name the sink's epoch (random per process), then the event's position.
    for listed in (fresh, [e.to_wire() for e in events]):
        assert [e["cursor"].split("-")[1] for e in listed] == [str(e["seq"]) for e in listed]
        assert len({e["cursor"].split("-")[0] for e in listed}) == 1


def test_docs_link_to_existing_files() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
