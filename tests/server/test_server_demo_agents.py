"""Which servers offer the demo agents: ``agentengine serve --dev`` does, a production
``agentengine serve`` does not (unless its configuration enables them: see test_plugins)."""

from __future__ import annotations

from pathlib import Path

import httpx
from server_helpers import make_token, serve_process

SECRET = "q" * 48


def agent_names(port: int) -> set[str]:
    headers = {"Authorization": f"Bearer {make_token('alice', secret=SECRET)}"}
    r = httpx.get(f"http://127.0.0.1:{port}/v1/agents", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return {a["name"] for a in r.json()["agents"]}


def test_only_dev_servers_offer_the_demo_agents(tmp_path: Path) -> None:
    env = {"AGENTENGINE_JWT_SECRET": SECRET}
    with (
        serve_process(tmp_path, env=env) as (prod, prod_port),
        serve_process(tmp_path, "--dev", env=env) as (_, dev_port),
    ):
        assert not {"echo", "researcher"} & agent_names(prod_port)
        assert {"echo", "researcher"} <= agent_names(dev_port)
        prod.terminate()
        output = prod.communicate(timeout=30)[0]
    # The production server said which configuration it ran on.
    assert "no configuration file found" in output
