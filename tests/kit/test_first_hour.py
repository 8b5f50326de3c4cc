"""A plugin author's first hour, with real processes, from outside the workspace.

The commands are those of docs/writing-plugins.md ("Your first plugin") and the scaffold's
README, run as written, each in a shell, in a temporary folder that holds (a link to) this
checkout as ``agentengine/``: render a plugin with ``new-plugin``, run the next steps it prints
(its own tests pass), install it next to the library in an application project, find it in
``agentengine plugins --json`` (also after another ``uv sync``), run its agent for two users,
and serve it with ``agentengine serve --dev``, streaming each user's events over WebSocket.

Needs uv, and the packages of the workspace's lock in uv's cache (any machine that ran ``uv
sync`` for this checkout has them): uv resolves offline first, and asks the package index only
if the cache lacks something.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from first_hour_commands import COMMANDS
from server_helpers import free_port
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[2]
FIVE = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


def _env(offline: bool) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENTENGINE_", "VIRTUAL_ENV", "UV_", "PYTHONPATH"))
    }
    env["UV_NO_PROGRESS"] = "1"
    if offline:
        env["UV_OFFLINE"] = "1"
    return env


class Shell:
    """Runs commands as a user types them, following their ``cd``s."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.ran: list[str] = []

    def __call__(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        assert command in COMMANDS or command.startswith("next: "), command
        done = self._run(command, offline=True, timeout=timeout)
        said = (done.stderr + done.stdout).lower()
        if done.returncode != 0 and ("network" in said or "offline" in said):
            done = self._run(command, offline=False, timeout=timeout)  # the cache lacked one
        assert done.returncode == 0, f"$ {command}\n{done.stdout}\n{done.stderr}"
        for target in re.findall(r"(?:^|&& )cd (\S+)", command):
            self.cwd = (self.cwd / target).resolve()
        self.ran.append(command)
        return done

    def _run(self, command: str, offline: bool, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=_env(offline),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


async def _stream_one_run(port: int, user: str, name: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        minted = await client.post("/v1/dev/token", json={"user": user})
        assert minted.status_code == 200, minted.text
        token = minted.json()["token"]
    url = f"ws://127.0.0.1:{port}/v1/ws"
    frames: list[dict[str, Any]] = []
    async with connect(url, subprotocols=["bearer", token], open_timeout=30) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps({"type": "run", "agent": "acme_weather", "input": {"name": name}, "id": 1})
        )
        async with asyncio.timeout(30):
            while not frames or frames[-1].get("type") != "agent_completed":
                frames.append(json.loads(await ws.recv()))
    return [f for f in frames if f.get("type") in FIVE]


@pytest.mark.slow
def test_a_plugin_authors_first_hour_with_real_processes(tmp_path: Path) -> None:
    if shutil.which("uv") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("uv is required for this test (pip install uv)")
        pytest.skip("uv is not installed")
    (tmp_path / "agentengine").symlink_to(ROOT, target_is_directory=True)
    sh = Shell(tmp_path)

    # 1. Render the plugin; run the next steps exactly as printed: its own tests pass.
    made = sh("uv run --project agentengine agentengine new-plugin acme-weather")
    (printed,) = [line for line in made.stdout.splitlines() if line.startswith("next: ")]
    assert printed == "next: cd acme-weather && uv sync && uv run pytest"
    tested = sh(printed.removeprefix("next: "))
    assert "3 passed" in tested.stdout, tested.stdout
    pyproject = (tmp_path / "acme-weather" / "pyproject.toml").read_text()
    assert '"agentengine-core>=0.1.0"' in pyproject
    assert "Remove this table once agentengine-core is published" in pyproject
    assert f'agentengine-core = {{ path = "{ROOT.resolve() / "core"}", editable = true }}' in (
        pyproject
    )

    # 2. In the plugin's own environment: check it, list it, run it.
    assert (
        "ok"
        in sh("uv run agentengine check-plugin agentengine_acme_weather:AcmeWeatherPlugin").stdout
    )
    assert (
        "acme-weather (agentengine-acme-weather 0.1.0) [entrypoint] ok"
        in sh("uv run agentengine plugins").stdout
    )
    ran = sh("""uv run agentengine run acme_weather --input '{"name": "Ada"}' --user ada""")
    assert '[ada] #5  agent_completed succeeded: "Hello, Ada!"' in ran.stdout, ran.stdout

    # 3. An application next to it depends on agentengine, the server and the plugin.
    sh.cwd = tmp_path
    sh("uv init --app weather-app && cd weather-app")
    sh("uv add --editable ../agentengine/core ../agentengine/plugins/server ../acme-weather")
    for _ in range(2):  # listed, and still listed after another sync
        listed = json.loads(sh("uv run agentengine plugins --json").stdout)
        plugins = {p["name"]: p for p in listed["plugins"]}
        assert plugins["acme-weather"]["distribution"] == "agentengine-acme-weather"
        assert plugins["acme-weather"]["agents"] == ["acme_weather"]
        assert plugins["acme-weather"]["error"] is None
        assert "server" in plugins
        sh("uv sync")

    # 4. Its agent for two users, from the application.
    for user, name in [("ada", "Ada"), ("bob", "Zoë")]:
        done = subprocess.run(
            ["uv", "run", "agentengine", "run", "acme_weather", "--input",
             json.dumps({"name": name}, ensure_ascii=False), "--user", user],
            cwd=sh.cwd, env=_env(offline=True), capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert all(line.startswith(f"[{user}] #") for line in lines), lines
        assert lines[-1].endswith(f'succeeded: "Hello, {name}!"'), lines

    # 5. Served: each user streams only their own run's events over WebSocket.
    port = free_port()
    command = "uv run agentengine serve --dev"
    assert command in COMMANDS
    server = subprocess.Popen(
        ["bash", "-c", f"exec {command} --port {port}"],
        cwd=sh.cwd,
        env=_env(offline=True),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "agentengine serve --dev did not come up"
            time.sleep(0.2)

        async def both() -> list[list[dict[str, Any]]]:
            return list(
                await asyncio.gather(
                    _stream_one_run(port, "ada", "Ada"), _stream_one_run(port, "bob", "Bob")
                )
            )

        for user, name, events in zip(
            ("ada", "bob"), ("Ada", "Bob"), asyncio.run(both()), strict=True
        ):
            assert [e["type"] for e in events] == FIVE
            assert {e["user_id"] for e in events} == {user}
            assert events[-1]["output"] == f"Hello, {name}!"
            assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    assert set(sh.ran) | {printed.removeprefix("next: "), command} >= set(COMMANDS) - {
        "uv run agentengine serve --dev"
    }
