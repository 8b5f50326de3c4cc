"""``agentengine mcp status`` and the MCP lines of ``agentengine plugins``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from agentengine.cli.main import main
from click.testing import CliRunner

from .conftest import SERVER

CONFIG = f"""
[[mcp.servers]]
name = "srv"
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(SERVER))}, "stdio"]
env = {{ MCP_TEST_IDENTITY = "{{metadata[mcp_token]}}" }}
deny = ["secret", "grow"]

[[mcp.servers]]
name = "broken"
command = "agentengine-no-such-mcp-server"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "agentengine.toml"
    path.write_text(CONFIG)
    return path


def _invoke(config_file: Path, *args: str, stdout_only: bool = False) -> tuple[int, str]:
    """Exit code and output (``stdout_only``: without standard error, where logs go)."""
    runner = CliRunner()
    result = runner.invoke(main, list(args), env={"AGENTENGINE_CONFIG": str(config_file)})
    return result.exit_code, result.stdout if stdout_only else result.output


def test_status_connects_to_each_server_and_reports_failures(config_file: Path) -> None:
    code, out = _invoke(config_file, "mcp", "status", "--meta", "mcp_token=t1")
    assert code == 1, out
    assert "srv [stdio]" in out
    assert ": connected" in out
    assert "tools (4): srv.add, srv.fail, srv.slow, srv.whoami" in out
    assert "broken [stdio] agentengine-no-such-mcp-server: failed" in out
    assert "error: MCP server 'broken' (stdio: agentengine-no-such-mcp-server) failed" in out


def test_status_json_and_server_filter(config_file: Path) -> None:
    code, out = _invoke(
        config_file,
        *("mcp", "status", "--json", "--server", "srv", "--meta", "mcp_token=t"),
        stdout_only=True,
    )
    assert code == 0, out
    (entry,) = json.loads(out)["servers"]
    assert entry["server"] == "srv"
    assert entry["state"] == "connected"
    assert entry["prefix"] == "srv."
    assert entry["protocol"]


def test_status_names_a_missing_per_user_value(config_file: Path) -> None:
    code, out = _invoke(config_file, "mcp", "status", "--server", "srv")
    assert code == 1
    assert "no metadata['mcp_token']" in out
    assert "--meta" in _invoke(config_file, "mcp", "status", "--help")[1]


def test_status_usage_errors(config_file: Path, tmp_path: Path) -> None:
    code, out = _invoke(config_file, "mcp", "status", "--server", "nope")
    assert code == 2
    assert "no enabled server named nope" in out
    code, out = _invoke(config_file, "mcp", "status", "--meta", "novalue")
    assert code == 2
    assert "expected KEY=VALUE" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[mcp.servers]]\nname = "x"\nurl = "ftp://nowhere"\n')
    code, out = _invoke(bad, "mcp", "status")
    assert code == 2
    assert "server 'x': url must start with http://" in out


def test_plugins_shows_each_servers_state(config_file: Path) -> None:
    code, out = _invoke(config_file, "plugins")
    assert code == 0, out
    assert "mcp (agentengine-mcp 0.1.0) [entrypoint] ok" in out, out
    assert "status: srv: idle (stdio: " in out
    assert (
        "status: broken: misconfigured (command 'agentengine-no-such-mcp-server' is not "
        "found on PATH)" in out
    )
    _code, out = _invoke(config_file, "plugins", "--json", stdout_only=True)
    (mcp_info,) = [p for p in json.loads(out)["plugins"] if p["name"] == "mcp"]
    assert {s["name"]: s["state"] for s in mcp_info["status"]} == {
        "srv": "idle",
        "broken": "misconfigured",
    }
