"""Authentication and isolation of run ids: forged, expired, malformed and other-user tokens."""

from __future__ import annotations

import time

import jwt
import pytest
from agentengine_server import SecretError, TokenVerifier, check_secret
from agentengine_server.auth import AuthError, bearer_token
from server_helpers import SECRET, RunningServer, http, make_token, running_server, ws_connect
from websockets.exceptions import InvalidStatus


def test_secrets_shorter_than_32_bytes_are_refused() -> None:
    with pytest.raises(SecretError, match="AGENTENGINE_JWT_SECRET"):
        check_secret(None)
    with pytest.raises(SecretError, match="31 bytes"):
        check_secret("x" * 31)
    assert check_secret("é" * 16) == ("é" * 16).encode()  # 32 bytes in UTF-8


def test_verifier_accepts_good_and_names_what_is_wrong() -> None:
    v = TokenVerifier(SECRET)
    assert v.verify(make_token("alice")) == "alice"
    assert v.verify(v.issue("bob", 60)) == "bob"
    cases = {
        make_token("alice", secret="f" * 40): "signature",
        make_token("alice", ttl=-10): "expired",
        make_token("alice", exp=None): "'exp'",
        make_token(None): "'sub'",  # type: ignore[arg-type]
        make_token("registry"): "placeholder",
        "not.a.token": "invalid token",
        jwt.encode(
            {"sub": "alice", "exp": int(time.time()) + 60}, None, algorithm="none"
        ): "not allowed",
        jwt.encode(
            {"sub": "alice", "exp": int(time.time()) + 60}, "k" * 64, algorithm="HS512"
        ): "not allowed",
    }
    for token, needle in cases.items():
        with pytest.raises(AuthError, match=needle):
            v.verify(token)
    with pytest.raises(AuthError, match="missing bearer token"):
        v.verify(None)
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None


BAD_TOKENS = {
    "forged": make_token("alice", secret="forged-secret-forged-secret-forged!!"),
    "expired": make_token("alice", ttl=-5),
    "garbage": "garbage",
}


async def test_http_refuses_bad_tokens(srv: RunningServer) -> None:
    async with http(srv) as client:
        for name, token in BAD_TOKENS.items():
            for method, path in (
                ("POST", "/v1/runs"),
                ("GET", "/v1/runs"),
                ("GET", "/v1/agents"),
                ("GET", "/v1/events"),
                ("GET", "/v1/runs/x"),
            ):
                r = await client.request(
                    method,
                    path,
                    headers={"Authorization": f"Bearer {token}"},
                    json={"agent": "echo", "input": {"text": "x"}} if method == "POST" else None,
                )
                assert r.status_code == 401, (name, path)
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert r.json()["error"] == "unauthorized"
        r = await client.get("/v1/runs")
        assert r.status_code == 401
        assert "missing bearer token" in r.json()["message"]
        # Query tokens are only for the event stream (EventSource cannot set headers).
        r = await client.get("/v1/runs", params={"token": make_token("alice")})
        assert r.status_code == 401
        # Nothing ran.
        assert (await client.get("/v1/runs", headers=srv.auth("alice"))).json()["runs"] == []


async def test_websocket_refuses_bad_tokens_before_the_handshake(srv: RunningServer) -> None:
    from websockets.asyncio.client import connect

    for token in BAD_TOKENS.values():
        with pytest.raises(InvalidStatus) as info:
            await connect(srv.ws_url, subprotocols=["bearer", token], open_timeout=10)  # type: ignore[list-item]
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as info:
            await connect(f"{srv.ws_url}?token={token}", open_timeout=10)
        assert info.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as info:
        await connect(srv.ws_url, open_timeout=10)
    assert info.value.response.status_code == 403
    # A good token is accepted both ways; the subprotocol answer is "bearer", never the token.
    ws = await ws_connect(srv, "alice")
    assert ws.subprotocol == "bearer"
    await ws.close()
    async with await _query_connect(srv, "alice") as ws2:
        assert ws2.subprotocol is None


async def _query_connect(srv: RunningServer, user: str):  # type: ignore[no-untyped-def]
    from websockets.asyncio.client import connect

    return await connect(f"{srv.ws_url}?token={make_token(user)}", open_timeout=10)


async def test_another_users_run_id_is_404_like_a_missing_one(srv: RunningServer) -> None:
    async with http(srv) as client:
        alice, bob = srv.auth("alice"), srv.auth("bob")
        r = await client.post(
            "/v1/runs", json={"agent": "sleeper", "input": {"seconds": 30}}, headers=alice
        )
        run_id = r.json()["run_id"]
        as_bob = await client.get(f"/v1/runs/{run_id}", headers=bob)
        missing = await client.get("/v1/runs/run-does-not-exist", headers=bob)
        assert as_bob.status_code == missing.status_code == 404
        assert as_bob.json()["error"] == missing.json()["error"] == "run_not_found"
        cancel = await client.post(f"/v1/runs/{run_id}/cancel", headers=bob)
        assert cancel.status_code == 404
        assert (await client.get("/v1/runs", headers=bob)).json()["runs"] == []
        # Bob's attempt did not cancel alice's run.
        assert (await client.get(f"/v1/runs/{run_id}", headers=alice)).json()["status"] == (
            "running"
        )
        # Same over the WebSocket.
        ws = await ws_connect(srv, "bob")
        await ws.send(f'{{"type": "cancel", "run_id": "{run_id}", "id": 7}}')
        import json

        reply = json.loads(await ws.recv())
        assert reply == {
            "type": "error",
            "error": "run_not_found",
            "message": f"no run {run_id!r}",
            "run_id": run_id,
            "id": 7,
        }
        await ws.close()
        assert (await client.post(f"/v1/runs/{run_id}/cancel", headers=alice)).status_code == 200


async def test_dev_token_endpoint_exists_only_in_dev_mode(srv: RunningServer) -> None:
    async with http(srv) as client:
        r = await client.post("/v1/dev/token", json={"user": "carol"})
        assert r.status_code == 200
        token = r.json()["token"]
        assert r.json()["user"] == "carol"
        assert r.json()["expires_in"] > 0
        me = await client.get("/v1/agents", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        bad = await client.post("/v1/dev/token", json={"user": "test"})
        assert bad.status_code == 422
        assert "placeholder" in bad.json()["message"]
        assert (await client.post("/v1/dev/token", json={"name": "x"})).status_code == 422
    with running_server(dev=False) as prod:
        async with http(prod) as client:
            r = await client.post("/v1/dev/token", json={"user": "carol"})
            assert r.status_code in (404, 405)
            assert (await client.get("/healthz")).json()["dev"] is False
            assert "/v1/dev/token" not in (await client.get("/openapi.json")).json()["paths"]
