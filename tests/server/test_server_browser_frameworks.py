"""The web page in headless Chromium runs a framework agent (pydantic-ai, OpenAI Agents SDK)
shipped by a third-party distribution through an entry point: a real ``agentengine serve``
subprocess finds the distribution on its path, the page lists the agent, shows its ``message``
field, runs it and shows the whole timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from framework_helpers import installed
from playwright.sync_api import expect
from server.test_server_browser import page  # noqa: F401 - the Chromium page fixture
from server_helpers import serve_process

FIXTURES = Path(__file__).parents[1] / "fixtures"

# Both fixture distributions ship an agent with a scripted model that calls the agentengine
# tool ``shout`` and its framework's own tool ``count_letters`` on the message, then streams
# "<shout's result> has <count> letters." as its answer.
ADAPTERS = [
    pytest.param("pydanticai_dist", "speller", id="pydantic-ai"),
    pytest.param("openaiagents_dist", "oa_speller", id="openai-agents"),
]


@pytest.mark.parametrize(("distribution", "agent"), ADAPTERS)
def test_the_page_runs_a_framework_agent_from_a_distribution(
    page: Any,  # noqa: F811
    tmp_path: Path,
    distribution: str,
    agent: str,
) -> None:
    site = installed(FIXTURES / distribution, tmp_path)
    # No --plugin: the server finds the agent through the distribution's entry point only.
    with serve_process(site, "--dev", env={"AGENTENGINE_JWT_SECRET": "f" * 40}) as (_, port):
        base = f"http://127.0.0.1:{port}"
        page.goto(base + "/")
        page.fill("#user-name", "ann")
        page.click("#signin-dev button[type=submit]")
        page.wait_for_selector('#conn[data-state="live"]')

        # The page lists the framework agent, and its form asks for the message.
        expect(page.locator(f'#agent option[value="{agent}"]')).to_have_count(1)
        page.select_option("#agent", agent)
        expect(page.locator("#message-label")).to_have_text("message (required)")
        expect(page.locator("#message")).to_be_visible()

        page.fill("#message", "page")
        page.click("#send")
        answer = page.wait_for_selector("article.run .answer", timeout=30_000)
        assert answer.inner_text() == "PAGE! has 4 letters."
        card = page.locator("article.run").first
        assert card.locator(".badge").inner_text() == "succeeded"
        assert card.locator(".agent").inner_text() == agent
        run_id = card.get_attribute("data-run-id")

        items = card.locator("ol.timeline li").all()
        shown = [(int(li.get_attribute("data-seq")), li.get_attribute("data-type")) for li in items]
        details = [li.locator(".detail").inner_text() for li in items]

        # Seq 1..n without gaps; started first, completed last, exactly once.
        assert [s for s, _ in shown] == list(range(1, len(shown) + 1)), shown
        types = [t for _, t in shown]
        assert types[0] == "agent_started" and types[-1] == "agent_completed", types
        assert types.count("agent_completed") == 1
        # The streamed answer arrives as one batched thinking event, not one per token.
        assert types.count("agent_thinking") == 1, types
        assert details[types.index("agent_thinking")] == "PAGE! has 4 letters."
        # One pair of tool events per call: the agentengine tool and the framework's own
        # (the two calls of the OpenAI agent run in parallel, so completions in any order).
        executing = sorted(d for t, d in zip(types, details, strict=True) if t == "tool_executing")
        completed = sorted(d for t, d in zip(types, details, strict=True) if t == "tool_completed")
        assert len(executing) == 2 and len(completed) == 2, types
        assert executing[0].startswith("count_letters with ") and "page" in executing[0]
        assert executing[1].startswith("shout with ") and "page" in executing[1]
        assert completed[0].startswith("count_letters ok in ") and completed[0].endswith("→ 4")
        assert completed[1].startswith("shout ok in ") and completed[1].endswith("→ PAGE!")
        assert details[-1].startswith("succeeded in ")
        assert "page" in details[0]  # agent_started shows the input

        # The page shows what the server recorded for the run.
        token = page.evaluate("sessionStorage.getItem('agentengine.token')")
        record = httpx.get(
            f"{base}/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).json()
        assert record["status"] == "succeeded"
        assert record["agent"] == agent
        assert record["output"] == "PAGE! has 4 letters."
