"""A third-party distribution shipping an OpenAI Agents SDK agent through an entry point works with
``agentengine run`` and ``agentengine serve`` (real subprocesses, real sockets)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
from agentengine import parse_event
from agentengine.testing import assert_run_invariants
from server_helpers import AGENTENGINE, serve_env, serve_process

FIXTURE = Path(__file__).parents[1] / "fixtures" / "openaiagents_dist"
SECRET = "o" * 40


def installed(tmp_path: Path) -> Path:
    """The fixture distribution, as installed, in a folder of its own for PYTHONPATH."""
    site = tmp_path / "site"
    shutil.copytree(FIXTURE, site)
    return site


def test_agentengine_run_runs_the_framework_agent(tmp_path: Path) -> None:
    site = installed(tmp_path)
    proc = subprocess.run(
        [AGENTENGINE, "run", "oa_speller", "--input", '{"message": "hello"}', "--json"],
        env=serve_env(site),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    events = [parse_event(json.loads(line)) for line in proc.stdout.splitlines() if line.strip()]
    assert_run_invariants(events)
    assert [(e.type, getattr(e, "tool", None)) for e in events] == [
        ("agent_started", None),
        ("tool_executing", "shout"),
        ("tool_completed", "shout"),
        ("tool_executing", "count_letters"),
        ("tool_completed", "count_letters"),
        ("agent_thinking", None),
        ("agent_completed", None),
    ]
    assert events[-1].output == "HELLO! has 5 letters."  # type: ignore[union-attr]


def test_agentengine_serve_runs_the_framework_agent_over_http(tmp_path: Path) -> None:
    site = installed(tmp_path)
    with serve_process(site, "--dev", env={"AGENTENGINE_JWT_SECRET": SECRET}) as (_proc, port):
        base = f"http://127.0.0.1:{port}"
        token = httpx.post(f"{base}/v1/dev/token", json={"user": "ann"}, timeout=10).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        agents = httpx.get(f"{base}/v1/agents", headers=headers, timeout=10).json()["agents"]
        speller = next(a for a in agents if a["name"] == "oa_speller")
        assert speller["input_schema"]["required"] == ["message"]  # what the page's form shows
        r = httpx.post(
            f"{base}/v1/runs",
            json={"agent": "oa_speller", "input": {"message": "serve"}},
            headers=headers,
            timeout=10,
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        events: list[dict[str, Any]] = []
        with httpx.stream(
            "GET", f"{base}/v1/events?after=0", headers=headers, timeout=httpx.Timeout(30)
        ) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line.removeprefix("data:").strip())
                    if event.get("run_id") == run_id:
                        events.append(event)
                        if event["type"] == "agent_completed":
                            break
        record = httpx.get(f"{base}/v1/runs/{run_id}", headers=headers, timeout=10).json()
    assert record["status"] == "succeeded", record
    assert record["output"] == "SERVE! has 5 letters."
    parsed = [parse_event(e) for e in events]
    assert_run_invariants(parsed)
    assert {e.user_id for e in parsed} == {"ann"}
    assert [e["tool"] for e in events if e["type"] == "tool_completed"] == [
        "shout",
        "count_letters",
    ]
