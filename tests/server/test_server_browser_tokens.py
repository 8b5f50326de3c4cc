"""The web page keeps its connection across token expiry: in dev mode it refreshes its token
over the WebSocket (an ``auth`` frame) before the server would close the connection."""

from __future__ import annotations

from typing import Any

from agentengine_server import ServerSettings
from server.test_server_browser import page  # noqa: F401 - the Chromium page fixture
from server_helpers import running_server


def test_the_page_refreshes_its_dev_token_and_stays_live(page: Any) -> None:  # noqa: F811
    with running_server(dev=True, settings=ServerSettings(dev_token_ttl=3)) as srv:
        page.goto(srv.base_url + "/")
        page.fill("#user-name", "dora")
        page.click("#signin-dev button[type=submit]")
        page.wait_for_selector('#conn[data-state="live"]')
        first = page.evaluate("sessionStorage.getItem('agentengine.token')")
        # Past the first token's expiry (the server closes a connection whose token expired):
        page.wait_for_function(
            "t => ![null, t].includes(sessionStorage.getItem('agentengine.token'))",
            arg=first,
            timeout=20_000,
        )
        page.wait_for_timeout(3500)
        assert page.locator("#composer").is_visible()
        assert page.get_attribute("#conn", "data-state") == "live"
        assert page.inner_text("#who-name") == "dora"
        page.select_option("#agent", "echo")
        page.fill("#message", "still here")
        page.click("#send")
        answer = page.wait_for_selector("article.run .answer", timeout=20_000)
        assert answer.inner_text() == "still here"
        assert page.inner_text("#run-error") == ""
