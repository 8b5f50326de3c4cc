"""The example of docs/mcp.md runs as written (with the real mcp-server-time)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

DOC = Path(__file__).parents[2] / "docs" / "mcp.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_example_with_mcp_server_time_runs(tmp_path: Path) -> None:
    toml = next(b for b in _blocks("toml") if 'command = "mcp-server-time"' in b)
    script = next(b for b in _blocks("python") if "asyncio.run(main())" in b)
    (tmp_path / "agentengine.toml").write_text(toml)
    (tmp_path / "example.py").write_text(script)
    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^In Asia/Tokyo it is \d{4}-\d\d-\d\dT", done.stdout, re.MULTILINE)


async def test_the_in_process_example_configures_a_working_server() -> None:
    from agentengine import UserExecutionContext
    from agentengine_mcp import MCPPlugin

    from .conftest import make_factory

    snippet = next(b for b in _blocks("python") if '"server": calc' in b)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOC), "exec"), namespace)
    (plugin,) = [i.plugin for i in namespace["factory"].plugin_infos if i.name == "mcp"]
    assert isinstance(plugin, MCPPlugin)
    (server,) = plugin.servers
    assert server.server is namespace["calc"]
    assert server.transport == "in-process"
    async with (
        make_factory({"name": "calc", "server": namespace["calc"]}) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("u")) as engine,
    ):
        result = await engine.execute_agent("call", {"tool": "calc.add", "args": {"a": 1, "b": 2}})
    assert result.output == 3
