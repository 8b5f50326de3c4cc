"""Finished-run records are bounded per user, over all users (count and bytes, least recently
active users first) and forgotten after an idle TTL, against a real server with small limits."""

from __future__ import annotations

from typing import Any

import httpx
from agentengine_server import ServerSettings
from server_helpers import RunningServer, eventually, http, running_server, wait_run


async def _run_echo(
    srv: RunningServer, client: httpx.AsyncClient, user: str, text: str = "hi"
) -> str:
    headers = srv.auth(user)
    r = await client.post(
        "/v1/runs", json={"agent": "echo", "input": {"text": text}}, headers=headers
    )
    assert r.status_code == 202, r.text
    run_id: str = r.json()["run_id"]
    await wait_run(client, run_id, headers)
    return run_id


async def _listed(srv: RunningServer, client: httpx.AsyncClient, user: str) -> list[str]:
    r = await client.get("/v1/runs", headers=srv.auth(user))
    assert r.status_code == 200, r.text
    runs: list[dict[str, Any]] = r.json()["runs"]
    return [run["run_id"] for run in runs]


async def test_records_are_bounded_per_user_and_over_all_users() -> None:
    settings = ServerSettings(finished_runs_kept=3, max_finished_runs=4)
    with running_server(dev=True, settings=settings) as srv:
        async with http(srv) as client:
            a = [await _run_echo(srv, client, "alice") for _ in range(4)]
            assert await _listed(srv, client, "alice") == a[1:]  # per user: 3
            b = [await _run_echo(srv, client, "bob") for _ in range(2)]
            # Over all users at most 4: alice, the least recently active, lost her oldest.
            assert await _listed(srv, client, "alice") == a[2:]
            assert await _listed(srv, client, "bob") == b
            r = await client.get(f"/v1/runs/{a[1]}", headers=srv.auth("alice"))
            assert r.status_code == 404
            a.append(await _run_echo(srv, client, "alice"))
            # Now bob is the least recently active one.
            assert await _listed(srv, client, "alice") == a[2:]
            assert await _listed(srv, client, "bob") == b[1:]
            assert srv.state.runs.finished_count == 4


async def test_records_are_bounded_in_bytes_over_all_users() -> None:
    settings = ServerSettings(finished_runs_max_bytes=7000)
    with running_server(dev=True, settings=settings) as srv:
        async with http(srv) as client:
            runs = [
                await _run_echo(srv, client, user, "x" * 2000) for user in ("al", "bo", "cy", "di")
            ]
            # Each record counts as its 2 KB output plus 1 KiB: only the two most recent fit.
            assert await _listed(srv, client, "al") == []
            assert await _listed(srv, client, "bo") == []
            assert await _listed(srv, client, "cy") == [runs[2]]
            assert await _listed(srv, client, "di") == [runs[3]]
            assert srv.state.runs.finished_bytes <= 7000
            # Users left without records are forgotten entirely.
            assert set(srv.state.runs.user_ids()) == {"cy", "di"}


async def test_idle_users_are_forgotten_after_the_ttl_but_not_while_a_run_is_going() -> None:
    settings = ServerSettings(finished_runs_ttl=0.5)
    with running_server(dev=True, settings=settings) as srv:
        async with http(srv) as client:
            r = await client.post(
                "/v1/runs",
                json={"agent": "sleeper", "input": {"seconds": 60}},
                headers=srv.auth("bob"),
            )
            assert r.status_code == 202
            sleeping = r.json()["run_id"]
            done = await _run_echo(srv, client, "alice")
            assert "alice" in srv.state.runs.user_ids()
            await eventually(
                lambda: "alice" not in srv.state.runs.user_ids(), what="alice forgotten"
            )
            assert await _listed(srv, client, "alice") == []
            r = await client.get(f"/v1/runs/{done}", headers=srv.auth("alice"))
            assert r.status_code == 404
            # Bob's run is still going: his entry stays whatever the TTL.
            assert "bob" in srv.state.runs.user_ids()
            assert await _listed(srv, client, "bob") == [sleeping]
            r = await client.post(f"/v1/runs/{sleeping}/cancel", headers=srv.auth("bob"))
            assert r.status_code == 200
            await eventually(lambda: "bob" not in srv.state.runs.user_ids(), what="bob forgotten")


async def test_the_server_runs_are_the_factorys_submitted_runs() -> None:
    # The [server] alias sets the engine's bound; the [engine] keys the server leaves alone
    # stay the factory's own.
    settings = ServerSettings(finished_runs_kept=7)
    with running_server(dev=True, settings=settings) as srv:
        runs = srv.state.factory.runs
        assert runs.finished_runs_kept == 7
        assert runs.max_finished_runs == srv.state.factory.engine_settings.max_finished_runs
        async with http(srv) as client:
            headers = srv.auth("alice")
            r = await client.post(
                "/v1/runs", json={"agent": "sleeper", "input": {"seconds": 60}}, headers=headers
            )
            assert r.status_code == 202
            run_id = r.json()["run_id"]
            # The run is in the core's registry, for alice only...
            record = srv.call(runs.get("alice", run_id))
            assert record is not None and record.agent == "sleeper"
            assert srv.call(runs.get("bob", run_id)) is None
            # ...and cancelling it there is what the API shows.
            assert srv.call(runs.cancel("alice", run_id)).status == "cancelled"
            body = (await client.get(f"/v1/runs/{run_id}", headers=headers)).json()
            assert body["status"] == "cancelled" and body["finished_at"] is not None
            # The JSON as before (the core's record has more fields).
            assert set(body) == {
                "run_id",
                "agent",
                "thread_id",
                "status",
                "output",
                "error",
                "error_type",
                "created_at",
                "finished_at",
            }
