"""The HTTP API against a real server: runs, errors, health, metrics, OpenAPI."""

from __future__ import annotations

import asyncio

from server_helpers import RunningServer, http, running_server, wait_run


async def test_run_lifecycle_over_http(srv: RunningServer) -> None:
    async with http(srv) as client:
        headers = srv.auth("alice")
        r = await client.post(
            "/v1/runs",
            json={"agent": "researcher", "input": {"question": "cursors"}},
            headers=headers,
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        assert r.headers["location"] == f"/v1/runs/{run_id}"
        body = await wait_run(client, run_id, headers)
        assert body["status"] == "succeeded"
        assert "cursor" in body["output"]
        assert "for alice" in body["output"]
        assert body["error"] is None
        assert body["agent"] == "researcher"
        listed = (await client.get("/v1/runs", headers=headers)).json()["runs"]
        assert [r["run_id"] for r in listed] == [run_id]


async def test_thread_id_is_kept_and_validated(srv: RunningServer) -> None:
    async with http(srv) as client:
        headers = srv.auth("alice")
        r = await client.post(
            "/v1/runs",
            json={"agent": "echo", "input": {"text": "hi"}, "thread_id": "t-42"},
            headers=headers,
        )
        assert r.status_code == 202
        assert r.json()["thread_id"] == "t-42"
        bad = await client.post(
            "/v1/runs",
            json={"agent": "echo", "input": {"text": "hi"}, "thread_id": "default"},
            headers=headers,
        )
        assert bad.status_code == 422
        assert "placeholder" in bad.json()["message"]


async def test_unknown_agent_is_404_with_the_names(srv: RunningServer) -> None:
    async with http(srv) as client:
        r = await client.post("/v1/runs", json={"agent": "nope"}, headers=srv.auth("alice"))
    assert r.status_code == 404
    body = r.json()
    assert body["error"] == "unknown_agent"
    assert {"researcher", "echo"} <= set(body["available"])
    assert "'nope'" in body["message"]
    assert "researcher" in body["message"]


async def test_invalid_requests_say_what_is_wrong(srv: RunningServer) -> None:
    headers = srv.auth("alice")
    async with http(srv) as client:
        cases = [
            ({"agent": "echo", "input": {}}, 422, "text"),
            ({"agent": "echo", "input": {"text": 5}}, 422, "text"),
            ({"agent": "echo", "input": [1]}, 422, "'input' must be an object, got list"),
            ({"agent": "echo", "inptu": {}}, 422, "'inptu'"),
            ({"input": {}}, 422, "agent"),
            ([1, 2], 422, "expected a JSON object"),
        ]
        for payload, status, needle in cases:
            r = await client.post("/v1/runs", json=payload, headers=headers)
            assert r.status_code == status, (payload, r.text)
            assert needle in r.json()["message"], (payload, r.json())
        r = await client.post("/v1/runs", content=b"{not json", headers=headers)
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_json"
        r = await client.post("/v1/runs", content=b"", headers=headers)
        assert r.status_code == 400
        big = b'{"agent": "echo", "input": {"text": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
        r = await client.post("/v1/runs", content=big, headers=headers)
        assert r.status_code == 413
        assert r.json()["error"] == "body_too_large"
        # Nothing of the above started a run.
        assert (await client.get("/v1/runs", headers=headers)).json()["runs"] == []


async def test_cancel_a_running_run_then_409(srv: RunningServer) -> None:
    headers = srv.auth("alice")
    async with http(srv) as client:
        r = await client.post(
            "/v1/runs", json={"agent": "sleeper", "input": {"seconds": 30}}, headers=headers
        )
        run_id = r.json()["run_id"]
        r = await client.post(f"/v1/runs/{run_id}/cancel", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        assert (await client.get(f"/v1/runs/{run_id}", headers=headers)).json()["status"] == (
            "cancelled"
        )
        again = await client.post(f"/v1/runs/{run_id}/cancel", headers=headers)
        assert again.status_code == 409
        assert again.json()["status"] == "cancelled"


async def test_too_many_runs_in_flight_is_429() -> None:
    with running_server(max_concurrent_per_user=2) as srv:
        headers = srv.auth("alice")
        async with http(srv) as client:
            for _ in range(2):
                r = await client.post(
                    "/v1/runs",
                    json={"agent": "sleeper", "input": {"seconds": 30}},
                    headers=headers,
                )
                assert r.status_code == 202
            r = await client.post(
                "/v1/runs", json={"agent": "echo", "input": {"text": "x"}}, headers=headers
            )
            assert r.status_code == 429
            assert r.headers["retry-after"] == "1"
            # Another user is not affected by alice's limit.
            r = await client.post(
                "/v1/runs", json={"agent": "echo", "input": {"text": "x"}}, headers=srv.auth("bob")
            )
            assert r.status_code == 202


async def test_health_metrics_and_openapi(srv: RunningServer) -> None:
    async with http(srv) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok", "dev": True}
        headers = srv.auth("alice")
        r = await client.post(
            "/v1/runs", json={"agent": "echo", "input": {"text": "x"}}, headers=headers
        )
        await wait_run(client, r.json()["run_id"], headers)
        await client.get("/v1/runs", headers={"Authorization": "Bearer nope"})
        text = (await client.get("/metrics")).text
        assert 'agentengine_runs_total{status="succeeded"} 1' in text
        assert "agentengine_server_runs_started_total 1" in text
        assert 'agentengine_server_connected_clients{transport="ws"} 0' in text
        assert "agentengine_server_auth_failures_total 1" in text
        assert "# TYPE agentengine_plugin_errors_total counter" in text
        doc = (await client.get("/openapi.json")).json()
        assert doc["openapi"].startswith("3.")
        for path in (
            "/v1/runs",
            "/v1/runs/{run_id}",
            "/v1/runs/{run_id}/cancel",
            "/v1/events",
            "/healthz",
            "/metrics",
            "/v1/dev/token",
        ):
            assert path in doc["paths"], path
        page = await client.get("/")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert (await client.get("/static/app.js")).status_code == 200
        assert (await client.get("/static/../app.py")).status_code == 404
        icon = await client.get("/favicon.ico")  # browsers ask for it: not a 404
        assert icon.status_code == 200
        assert icon.headers["content-type"] == "image/x-icon"
        assert icon.content.startswith(b"\x00\x00\x01\x00")  # an ICO file
        assert '<link rel="icon" href="/favicon.ico">' in page.text
        missing = await client.get("/v1/nothing")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"


async def test_plugin_errors_show_in_metrics() -> None:
    class Broken:
        name = "broken-observer"

        from agentengine import hookimpl

        @hookimpl
        def agentengine_engine_extensions(self, context, engine):  # type: ignore[no-untyped-def]
            class Ext:
                def on_event(self, event):  # type: ignore[no-untyped-def]
                    raise RuntimeError("observer bug")

            return Ext()

    with running_server(plugins=[Broken()]) as srv:
        headers = srv.auth("alice")
        async with http(srv) as client:
            r = await client.post(
                "/v1/runs", json={"agent": "echo", "input": {"text": "x"}}, headers=headers
            )
            assert (await wait_run(client, r.json()["run_id"], headers))["status"] == "succeeded"
            text = (await client.get("/metrics")).text
    assert 'agentengine_plugin_errors_total{plugin="broken-observer"}' in text


async def test_many_http_runs_of_many_users_concurrently(srv: RunningServer) -> None:
    async def user_runs(client, user: str) -> None:  # type: ignore[no-untyped-def]
        headers = srv.auth(user)
        ids = []
        for i in range(3):
            r = await client.post(
                "/v1/runs",
                json={"agent": "echo", "input": {"text": f"{user}-{i}"}},
                headers=headers,
            )
            assert r.status_code == 202
            ids.append(r.json()["run_id"])
        for i, run_id in enumerate(ids):
            body = await wait_run(client, run_id, headers)
            assert body["output"] == f"{user}-{i}"

    async with http(srv) as client:
        await asyncio.gather(*(user_runs(client, f"user-{n}") for n in range(10)))


def test_server_table_is_validated_and_env_overrides_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from agentengine import ConfigError, ExecutionEngineFactory
    from agentengine_server import create_app

    config = tmp_path / "agentengine.toml"
    config.write_text("[server]\nsend_buffer = 8\nslow_client_timeout = 0.5\n")
    factory = ExecutionEngineFactory(config=str(config), environ={}, load_entrypoints=False)
    state = create_app(factory, secret="x" * 32).state.agentengine
    assert state.settings.send_buffer == 8
    assert state.settings.slow_client_timeout == 0.5
    env = {"AGENTENGINE_SERVER__SEND_BUFFER": "16"}
    factory = ExecutionEngineFactory(config=str(config), environ=env, load_entrypoints=False)
    assert create_app(factory, secret="x" * 32).state.agentengine.settings.send_buffer == 16
    config.write_text("[server]\nsend_bufer = 8\n")
    factory = ExecutionEngineFactory(config=str(config), environ={}, load_entrypoints=False)
    with pytest.raises(ConfigError, match=r"\[server\].*send_bufer"):
        create_app(factory, secret="x" * 32)


async def test_outputs_json_cannot_hold_are_rendered_not_a_500(srv: RunningServer) -> None:
    headers = srv.auth("alice")
    async with http(srv) as client:
        r = await client.post("/v1/runs", json={"agent": "odd"}, headers=headers)
        body = await wait_run(client, r.json()["run_id"], headers)
    assert body["status"] == "succeeded"
    # The record holds what the streams carried: the terminal event's wire form of the output.
    assert body["output"] == {"nan": "NaN", "big": "Infinity", "set": [1], "when": [1970]}
