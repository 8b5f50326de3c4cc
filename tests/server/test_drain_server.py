"""The bundled server drains through the public ``ShutdownDrain``: once it begins, the server
stops listening, and a kept-alive connection's new runs get ``503`` with ``Retry-After``."""

from __future__ import annotations

import socket
import time

import httpx
from server_helpers import running_server

ENDLESS = {"agent": "sleeper", "input": {"seconds": 3600}}


def test_the_servers_drain_refuses_connections_and_answers_runs_503_with_retry_after() -> None:
    with (
        running_server(drain_timeout=1.0) as srv,
        httpx.Client(base_url=srv.base_url, timeout=30) as client,
    ):
        r = client.post("/v1/runs", json=ENDLESS, headers=srv.auth("alice"))
        assert r.status_code == 202, r.text
        srv.loop.call_soon_threadsafe(srv.server.drain.start)
        deadline = time.monotonic() + 30
        while client.get("/healthz").status_code == 200:  # the same kept-alive connection
            assert time.monotonic() < deadline, "the drain did not begin"
            time.sleep(0.02)
        refused = client.post("/v1/runs", json=ENDLESS, headers=srv.auth("bob"))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "shutting_down"
        assert int(refused.headers["retry-after"]) >= 1
        # New connections are refused while draining (the listening socket is closed).
        with socket.socket() as probe:
            probe.settimeout(5)
            assert probe.connect_ex(("127.0.0.1", srv.port)) != 0
        srv.call(srv.server.drain.wait())
        assert srv.state.factory.closed
