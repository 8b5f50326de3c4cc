"""Tokens and identities against real servers: dev tokens never valid in production, the dev
server answering loopback Host names and JSON only, WebSocket token expiry and refresh, and
ids and JWT claims that are checked strictly."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from agentengine_server import TokenVerifier
from agentengine_server.auth import AuthError
from server_helpers import (
    SECRET,
    RunningServer,
    dev_token,
    http,
    make_token,
    recv_json,
    recv_until,
    running_server,
    serve_process,
    sse_items,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

AGENTENGINE = str(Path(sys.executable).parent / "agentengine")


# -- helpers -----------------------------------------------------------------------------------


async def _ws(srv: RunningServer, token: str, **kwargs: Any) -> ClientConnection:
    return await connect(
        srv.ws_url,
        subprotocols=["bearer", token],  # type: ignore[list-item]
        open_timeout=20,
        **kwargs,
    )


async def _close_of(ws: ClientConnection, timeout: float = 20) -> tuple[list[Any], Any]:
    """Frames received until the server closed ``ws``, and the close frame it sent."""
    frames: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return frames, exc.rcvd
    except TimeoutError:
        raise AssertionError(f"the server did not close the connection; got {frames}") from None


def _short_token(user: str, seconds: float = 2.0) -> tuple[str, float]:
    """A token for ``user`` that expires ``seconds`` from now (and that expiry)."""
    exp = time.time() + seconds
    return jwt.encode({"sub": user, "exp": exp}, SECRET, algorithm="HS256"), exp


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- 8: dev tokens, Host names, content types ------------------------------------------------


def test_a_token_minted_by_a_dev_server_is_refused_by_a_production_server(
    tmp_path: Path,
) -> None:
    secret = "p" * 48
    env = {"AGENTENGINE_JWT_SECRET": secret}
    with (
        serve_process(tmp_path, "--dev", env=env) as (_, dev_port),
        serve_process(tmp_path, env=env) as (_, prod_port),
    ):
        token = dev_token(dev_port, "mallory")
        # The dev server itself accepts it...
        ok = httpx.get(f"http://127.0.0.1:{dev_port}/v1/agents", headers=_bearer(token))
        assert ok.status_code == 200, ok.text
        # ...the production server, with the same secret, does not.
        refused = httpx.get(f"http://127.0.0.1:{prod_port}/v1/agents", headers=_bearer(token))
        assert refused.status_code == 401, refused.text
        assert "dev" in refused.json()["message"]
        # A production token is still good on both.
        good = make_token("alice", secret=secret)
        for port in (dev_port, prod_port):
            r = httpx.get(f"http://127.0.0.1:{port}/v1/agents", headers=_bearer(good))
            assert r.status_code == 200, (port, r.text)


def test_the_production_verifier_refuses_the_dev_claim_whatever_the_key() -> None:
    prod = TokenVerifier(SECRET)
    dev = TokenVerifier(SECRET, dev=True)
    minted = dev.issue_dev("alice", 60)
    assert dev.verify(minted) == "alice"
    with pytest.raises(AuthError, match="dev"):
        prod.verify(minted)
    # Even signed with the production secret, a token claiming to be a dev token is refused.
    for claims in ({"dev": True}, {"iss": "agentengine-dev"}):
        forged = make_token("alice", **claims)
        with pytest.raises(AuthError, match="dev"):
            prod.verify(forged)
        with pytest.raises(AuthError, match="dev"):
            dev.verify(forged)  # a dev server signs its dev tokens with its own key only
    # Two dev servers do not share their key: dev tokens die with the process that minted them.
    with pytest.raises(AuthError, match="signature"):
        TokenVerifier(SECRET, dev=True).verify(minted)
    # A production verifier cannot mint dev tokens.
    with pytest.raises(RuntimeError, match="dev"):
        prod.issue_dev("alice", 60)


async def test_the_dev_server_answers_loopback_host_names_only(srv: RunningServer) -> None:
    port = srv.port
    async with http(srv) as client:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            r = await client.get("/healthz", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
            r = await client.post("/v1/dev/token", json={"user": "alice"}, headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "10.0.0.1"):
            for method, path in (("POST", "/v1/dev/token"), ("GET", "/"), ("GET", "/v1/agents")):
                r = await client.request(
                    method,
                    path,
                    json={"user": "alice"} if method == "POST" else None,
                    headers={"Host": host, **srv.auth("alice")},
                )
                assert r.status_code == 421, (host, path, r.text)
                body = r.json()
                assert body["error"] == "misdirected_request"
                assert "loopback" in body["message"]
                assert host.split(":")[0] in body["message"]
    # The WebSocket handshake too: a name that resolves to loopback (as after DNS rebinding).
    sock = socket.create_connection(("127.0.0.1", port))
    with pytest.raises(InvalidStatus) as info:
        await connect(
            f"ws://rebound.example:{port}/v1/ws",
            sock=sock,
            subprotocols=["bearer", make_token("alice")],  # type: ignore[list-item]
            open_timeout=10,
        )
    assert info.value.response.status_code == 421
    assert b"loopback" in info.value.response.body
    # A production server leaves Host names to the proxy in front of it.
    with running_server(dev=False) as prod:
        async with http(prod) as client:
            r = await client.get("/v1/agents", headers={"Host": "api.example", **prod.auth("a1")})
            assert r.status_code == 200, r.text


async def test_the_dev_token_endpoint_takes_json_only(srv: RunningServer) -> None:
    async with http(srv) as client:
        body = json.dumps({"user": "alice"})
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"Content-Type": content_type} if content_type else {}
            r = await client.post("/v1/dev/token", content=body, headers=headers)
            assert r.status_code == 415, (content_type, r.text)
            assert r.json()["error"] == "unsupported_media_type"
            assert "application/json" in r.json()["message"]
        r = await client.post(
            "/v1/dev/token",
            content=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert r.status_code == 200, r.text


def test_the_openapi_document_lists_the_dev_token_refusals() -> None:
    from agentengine_server.openapi import openapi_document

    responses = openapi_document(dev=True)["paths"]["/v1/dev/token"]["post"]["responses"]
    assert {"415", "421", "422"} <= set(responses)


# -- 9: expiry on a live WebSocket -------------------------------------------------------------


async def test_a_websocket_is_closed_when_its_token_expires(srv: RunningServer) -> None:
    token, exp = _short_token("exp-alice", 2.0)
    ws = await _ws(srv, token)
    await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "hi"}, "id": 1}))
    await recv_until(ws, lambda f: f.get("type") == "agent_completed")
    _, close = await _close_of(ws)
    assert close is not None, "closed without a close frame"
    assert close.code == 1008
    assert "token expired" in close.reason
    assert time.time() >= exp  # never before the token's own expiry
    # REST agrees.
    async with http(srv) as client:
        r = await client.get("/v1/runs", headers=_bearer(token))
        assert r.status_code == 401
        runs = (await client.get("/v1/runs", headers=srv.auth("exp-alice"))).json()["runs"]
        assert len(runs) == 1


async def test_a_frame_after_expiry_is_refused_before_the_close(srv: RunningServer) -> None:
    token, exp = _short_token("late-alice", 2.0)
    ws = await _ws(srv, token)

    async def stall_server_loop() -> None:
        # The server's loop is busy across the token's expiry: when it runs again, the frame
        # below and the expiry are both due at once, and the frame must lose.
        time.sleep(max(0.0, exp - time.time()) + 0.3)  # noqa: ASYNC251 - blocking on purpose

    stall = asyncio.get_running_loop().run_in_executor(None, srv.call, stall_server_loop())
    await asyncio.sleep(0.1)
    frame = {"type": "run", "agent": "echo", "input": {"text": "too late"}, "id": 9}
    await ws.send(json.dumps(frame))
    await stall
    frames, close = await _close_of(ws)
    assert close is not None
    assert close.code == 1008
    assert "token expired" in close.reason
    assert not [f for f in frames if f.get("type") == "run_accepted"], frames
    async with http(srv) as client:
        runs = (await client.get("/v1/runs", headers=srv.auth("late-alice"))).json()["runs"]
        assert runs == []


async def test_a_websocket_token_is_refreshed_with_an_auth_frame(srv: RunningServer) -> None:
    token, exp = _short_token("fresh-alice", 2.0)
    ws = await _ws(srv, token)
    fresh = make_token("fresh-alice", ttl=600)
    await ws.send(json.dumps({"type": "auth", "token": fresh, "id": "r1"}))
    ack = await recv_json(ws)
    assert ack["type"] == "auth_ok", ack
    assert ack["id"] == "r1"
    assert ack["expires_at"] > exp
    # Past the first token's expiry the connection is still there and still runs.
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.5)
    await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "hi"}}))
    frames = await recv_until(ws, lambda f: f.get("type") == "agent_completed")
    assert frames[-1]["status"] == "succeeded"
    # A bad token is refused and the connection keeps the token it has.
    for bad, needle in (
        (make_token("fresh-alice", ttl=-5), "expired"),
        (make_token("fresh-alice", secret="f" * 40), "signature"),
        (None, "token"),
    ):
        await ws.send(json.dumps({"type": "auth", "token": bad, "id": 2}))
        reply = await recv_json(ws)
        assert reply["type"] == "error", reply
        assert reply["error"] == "unauthorized"
        assert needle in reply["message"]
        assert reply["id"] == 2
    await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "still"}}))
    await recv_until(ws, lambda f: f.get("type") == "agent_completed")
    # A token of another user ends the connection.
    await ws.send(json.dumps({"type": "auth", "token": make_token("fresh-bob"), "id": 3}))
    frames, close = await _close_of(ws)
    errors = [f for f in frames if f.get("type") == "error"]
    assert errors, frames
    assert errors[-1]["error"] == "unauthorized"
    assert "fresh-alice" in errors[-1]["message"]
    assert close is not None
    assert close.code == 1008


# -- 10: identities and claims -----------------------------------------------------------------


async def test_user_ids_with_invisible_or_control_characters_are_refused(
    srv: RunningServer,
) -> None:
    cases = {
        "ali\u202ece": "U+202E RIGHT-TO-LEFT OVERRIDE",
        "ali\u200bce": "U+200B ZERO WIDTH SPACE",
        "alice\x7f": "U+007F",
        "ali\x85ce": "U+0085",
        "q\u0301uinn": None,  # fine: NFC, as no precomposed q with acute exists
        "alic\u0065\u0301": "NFC",  # e + combining acute: not normalised
    }
    async with http(srv) as client:
        for user, needle in cases.items():
            r = await client.get("/v1/agents", headers=_bearer(make_token(user)))
            if needle is None:
                assert r.status_code == 200, (user, r.text)
                continue
            assert r.status_code == 401, (ascii(user), r.text)
            assert needle in r.json()["message"], r.json()
            r = await client.post("/v1/dev/token", json={"user": user})
            assert r.status_code == 422, (ascii(user), r.text)
            assert needle in r.json()["message"]


async def test_a_lone_surrogate_in_a_dev_token_user_is_422(srv: RunningServer) -> None:
    async with http(srv) as client:
        r = await client.post(
            "/v1/dev/token",
            content=b'{"user": "al\\ud800ice"}',
            headers={"Content-Type": "application/json"},
        )
        # Refused at the door, before the id rules see it: invalid Unicode in any body.
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "invalid_unicode"
        assert r.json()["path"] == "user"
        assert "surrogate" in r.json()["message"]


async def test_time_claims_must_be_numbers(srv: RunningServer) -> None:
    now = int(time.time())
    cases = {
        "exp": {"exp": str(now + 600)},
        "nbf": {"nbf": str(now - 10)},
        "iat": {"iat": str(now)},
    }
    async with http(srv) as client:
        for claim, claims in cases.items():
            token = make_token("alice", **claims)
            r = await client.get("/v1/agents", headers=_bearer(token))
            assert r.status_code == 401, (claim, r.text)
            message = r.json()["message"]
            assert claim in message
            assert "number" in message
        for claims in ({"exp": True}, {"exp": float("nan")}, {"iat": [1]}):
            with pytest.raises(AuthError, match="number"):
                TokenVerifier(SECRET).verify(make_token("alice", **claims))
        # Numbers, integer or not, are fine.
        token = make_token("alice", exp=now + 600.5, iat=now - 0.5, nbf=now - 1)
        assert (await client.get("/v1/agents", headers=_bearer(token))).status_code == 200


# -- 9: expiry on a live SSE stream ------------------------------------------------------------


async def test_an_sse_stream_ends_when_its_token_expires_and_resumes_with_a_new_one(
    srv: RunningServer,
) -> None:
    token, exp = _short_token("sse-exp-alice", 2.0)
    seen: list[dict[str, Any]] = []
    ended_with: dict[str, Any] | None = None
    async with asyncio.timeout(30), http(srv) as client:
        # A run that goes on well past the token's expiry (40 events, 0.1 s apart).
        r = await client.post(
            "/v1/runs",
            json={"agent": "chatty", "input": {"count": 40, "delay": 0.1}},
            headers=srv.auth("sse-exp-alice"),
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        async with client.stream(
            "GET", "/v1/events", params={"after": "0"}, headers=_bearer(token)
        ) as response:
            assert response.status_code == 200
            async for item in sse_items(response):
                if item.get("event") == "error":
                    ended_with = item
                    break
                seen.append(item)
        # The server ended the stream itself, with the reason, never before the expiry.
        assert ended_with is not None, "the stream did not end at the token's expiry"
        assert ended_with["data"]["error"] == "token_expired"
        assert time.time() >= exp
        assert seen, "no event was delivered before the expiry"
        assert seen[-1]["data"]["type"] != "agent_completed", "the run ended before the expiry"
        # The expired token gets nothing more.
        r = await client.get("/v1/events", headers=_bearer(token))
        assert r.status_code == 401
        # A new token resumes from the last id received: nothing lost, nothing repeated.
        async with client.stream(
            "GET",
            "/v1/events",
            headers={**srv.auth("sse-exp-alice"), "Last-Event-ID": seen[-1]["id"]},
        ) as response:
            async for item in sse_items(response):
                seen.append(item)
                if item["data"].get("type") == "agent_completed":
                    break
    events = [item["data"] for item in seen if item["data"].get("run_id") == run_id]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "agent_completed"
    assert events[-1]["status"] == "succeeded"
