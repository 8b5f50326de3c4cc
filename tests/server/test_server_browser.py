"""The web page in headless Chromium (Debian's package, driven by Playwright): sign in, run the
demo agent, watch the timeline, drop the network and resume without gaps."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from agentengine import AgentThinkingEvent, RunContext, agent, hookimpl
from playwright.sync_api import expect
from server_helpers import RunningServer, make_token, running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("AGENTENGINE_TEST_ARTIFACTS", "test-artifacts")) / "server"
FIVE = {"agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"}


@pytest.fixture
def page() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (apt-get install chromium); CI must run this")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
            viewport={"width": 1100, "height": 900},
        )
        try:
            pg = context.new_page()
            errors: list[str] = []
            pg.on("pageerror", lambda exc: errors.append(str(exc)))
            yield pg
            assert errors == [], errors
        finally:
            context.close()


@pytest.fixture
def dev_server() -> Iterator[RunningServer]:
    with running_server(dev=True) as srv:
        yield srv


def _timeline(page: Any, run_id: str) -> list[tuple[int, str]]:
    items = page.locator(f'article.run[data-run-id="{run_id}"] ol.timeline li')
    return [
        (int(li.get_attribute("data-seq")), li.get_attribute("data-type")) for li in items.all()
    ]


def test_sign_in_run_the_demo_agent_and_watch_the_timeline(page: Any, dev_server: Any) -> None:
    page.goto(dev_server.base_url + "/")
    page.fill("#user-name", "alice")
    page.click("#signin-dev button[type=submit]")
    page.wait_for_selector("#composer:not([hidden])")
    page.wait_for_selector('#conn[data-state="live"]')
    assert page.inner_text("#who-name") == "alice"
    page.select_option("#agent", "researcher")
    page.fill("#message", "how do cursors work")
    page.click("#send")
    answer = page.wait_for_selector("article.run .answer", timeout=20_000)
    run_id = page.locator("article.run").first.get_attribute("data-run-id")
    timeline = _timeline(page, run_id)
    assert {t for _, t in timeline} == FIVE
    assert [s for s, _ in timeline] == list(range(1, len(timeline) + 1))
    assert "for alice" in answer.inner_text()
    assert page.locator("article.run .badge").first.inner_text() == "succeeded"
    # Tool arguments and results are shown.
    assert "search_notes" in page.inner_text(f'article.run[data-run-id="{run_id}"]')
    assert "cursor" in page.inner_text(f'article.run[data-run-id="{run_id}"] .ev-tool_executing')

    # Several runs at once.
    page.select_option("#agent", "echo")
    for word in ("first", "second", "third"):
        page.fill("#message", word)
        page.click("#send")
    expect(page.locator("article.run .answer")).to_have_count(4, timeout=20_000)
    answers = page.locator("article.run .answer").all_inner_texts()
    assert {"first", "second", "third"} <= set(answers)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "timeline.png"), full_page=True)


def test_network_drop_resumes_without_gaps(page: Any, dev_server: Any) -> None:
    page.goto(dev_server.base_url + "/")
    page.fill("#user-name", "bob")
    page.click("#signin-dev button[type=submit]")
    page.wait_for_selector('#conn[data-state="live"]')
    token = page.evaluate("sessionStorage.getItem('agentengine.token')")
    headers = {"Authorization": f"Bearer {token}"}
    # A run started over HTTP shows up live.
    r = httpx.post(
        dev_server.base_url + "/v1/runs",
        json={"agent": "chatty", "input": {"count": 5}},
        headers=headers,
    )
    first = r.json()["run_id"]
    page.wait_for_selector(f'article.run[data-run-id="{first}"] .answer')
    # The network drops; meanwhile a run starts and finishes.
    page.click("#drop")
    page.wait_for_selector('#conn[data-state="off"]')
    r = httpx.post(
        dev_server.base_url + "/v1/runs",
        json={"agent": "chatty", "input": {"count": 12, "delay": 0.01}},
        headers=headers,
    )
    second = r.json()["run_id"]
    # The page reconnects by itself after the last cursor it saw and shows the whole run.
    page.wait_for_selector(f'article.run[data-run-id="{second}"] .answer', timeout=20_000)
    page.wait_for_selector('#conn[data-state="live"]')
    assert [s for s, _ in _timeline(page, second)] == list(range(1, 15))
    assert [s for s, _ in _timeline(page, first)] == list(range(1, 8))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "resumed.png"), full_page=True)


def test_production_mode_signs_in_with_a_pasted_token(page: Any) -> None:
    with running_server(dev=False) as srv:
        page.goto(srv.base_url + "/")
        page.wait_for_selector("#signin-token:not([hidden])")
        assert page.locator("#signin-dev").is_hidden()
        page.fill("#token-input", "not-a-token")
        page.click("#signin-token button[type=submit]")
        expect(page.locator("#signin-error")).to_contain_text("invalid token")
        page.fill("#token-input", make_token("carol"))
        page.click("#signin-token button[type=submit]")
        page.wait_for_selector('#conn[data-state="live"]')
        assert page.inner_text("#who-name") == "carol"
        page.select_option("#agent", "echo")
        page.fill("#message", "hello from carol")
        page.click("#send")
        answer = page.wait_for_selector("article.run .answer", timeout=20_000)
        assert answer.inner_text() == "hello from carol"


def test_an_unencodable_event_moves_the_resume_cursor_past_it(page: Any, dev_server: Any) -> None:
    """An event the server cannot encode reaches the page as an error item with its cursor:
    the page resumes after it on reconnect, so the item is not delivered (and shown) again."""
    srv = dev_server
    page.goto(srv.base_url + "/")
    page.fill("#user-name", "dora")
    page.click("#signin-dev button[type=submit]")
    page.wait_for_selector('#conn[data-state="live"]')

    async def publish_unencodable() -> str:
        # A lone surrogate in an event published straight to the sink (not built by an
        # engine, which makes values wire-safe): no transport can write it as UTF-8.
        event = AgentThinkingEvent(
            run_id="run-foreign", user_id="dora", thread_id="t-1", agent="a", seq=1,
            ts=datetime.now(UTC), text="bad \ud800 text", step=1,
        )  # fmt: skip
        srv.state.factory.events.publish(event)
        return str(event.cursor)

    cursor = srv.call(publish_unencodable())
    expect(page.locator("#run-error")).to_contain_text("could not be encoded")
    expect(page.locator("#cursor")).to_have_text(f"cursor {cursor}")
    # Reconnect: the stream resumes after the error item; a new run shows, the item does not.
    page.evaluate("document.getElementById('run-error').textContent = ''")
    page.click("#drop")
    page.wait_for_selector('#conn[data-state="off"]')
    page.wait_for_selector('#conn[data-state="live"]', timeout=20_000)
    token = page.evaluate("sessionStorage.getItem('agentengine.token')")
    r = httpx.post(
        srv.base_url + "/v1/runs",
        json={"agent": "echo", "input": {"text": "after the reconnect"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    run_id = r.json()["run_id"]
    page.wait_for_selector(f'article.run[data-run-id="{run_id}"] .answer', timeout=20_000)
    assert page.inner_text("#run-error") == ""


@agent(name="forecaster")
async def forecaster(
    run: RunContext,
    city: str,
    days: int = 1,
    unit: Literal["C", "F"] = "C",
    detailed: bool = False,
    note: str | None = None,
) -> str:
    """A forecast with several inputs of several types."""
    return f"{city} for {days} day(s) in °{unit}, detailed={detailed}, note={note}"


@agent(name="failing")
async def failing(run: RunContext, reason: str) -> str:
    """Fails with the reason given."""
    raise ValueError(reason)


class FormPlugin:
    name = "form-agents"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(forecaster)
        registry.add(failing)


def test_the_page_shows_a_form_for_every_input_of_the_agent(page: Any) -> None:
    with running_server(dev=True, plugins=[FormPlugin()]) as srv:
        page.goto(srv.base_url + "/")
        page.fill("#user-name", "erin")
        page.click("#signin-dev button[type=submit]")
        page.wait_for_selector('#conn[data-state="live"]')
        page.select_option("#agent", "forecaster")
        # The first required text input is the message box; every other one gets a field.
        expect(page.locator("#message-label")).to_have_text("city (required)")
        for name in ("days", "unit", "detailed", "note"):
            expect(page.locator(f'#fields [data-field="{name}"]')).to_have_count(1)
        page.fill("#message", "Oslo")
        page.fill('#fields [data-field="days"]', "3")
        page.select_option('#fields [data-field="unit"]', "F")
        page.select_option('#fields [data-field="detailed"]', "true")
        page.click("#send")
        answer = page.wait_for_selector("article.run .answer", timeout=20_000)
        assert answer.inner_text() == "Oslo for 3 day(s) in °F, detailed=True, note=None"

        # A value of the wrong type is refused on the page, naming the field.
        page.fill("#message", "Paris")
        page.fill('#fields [data-field="days"]', "1.5")
        page.click("#send")
        expect(page.locator("#run-error")).to_contain_text("days")
        expect(page.locator("article.run")).to_have_count(1)

        # An agent's error is shown with its type once.
        page.select_option("#agent", "failing")
        expect(page.locator("#fields [data-field]")).to_have_count(0)
        page.fill("#message", "no data")
        page.click("#send")
        page.wait_for_selector("article.run .ev-agent_error", timeout=20_000)
        shown = page.inner_text("article.run .ev-agent_error .detail")
        assert shown == "ValueError: no data"
