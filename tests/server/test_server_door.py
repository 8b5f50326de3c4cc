"""What a client sends is checked at the door, against a real server: nesting depth, valid
Unicode, huge integers, run input size. Bad input is answered 4xx (REST) or with an error frame
(WebSocket, which stays open), naming what was wrong; no run is started and nothing answers 500.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from agentengine_server import ServerSettings
from server_helpers import (
    RunningServer,
    http,
    recv_json,
    recv_until,
    running_server,
    ws_connect,
)


def _nested(depth: int) -> dict[str, Any]:
    """An object nesting ``depth`` levels of objects: {"a": {"a": ... {}}}."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _deep_text(depth: int) -> str:
    """A run body whose input nests ``depth`` levels of arrays (built as text: json.dumps
    cannot write it)."""
    return '{"agent": "echo", "input": {"text": "x", "deep": ' + "[" * depth + "]" * depth + "}}"


BIG_INT = "9" * 5000  # over Python's 4,300-digit limit for int(str)


async def _no_runs(client: Any, headers: dict[str, str]) -> None:
    r = await client.get("/v1/runs", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["runs"] == []


async def test_input_nested_past_the_limit_is_422_with_path_and_limit(srv: RunningServer) -> None:
    headers = srv.auth("alice")
    async with http(srv) as client:
        ok = await client.post(
            "/v1/runs",
            json={"agent": "echo", "input": {"text": "hi", "extra": _nested(63)}},
            headers=headers,
        )
        # echo takes no 'extra': the nesting itself was fine, the signature check answered.
        assert ok.status_code == 422, ok.text
        assert ok.json()["error"] == "invalid_input"
        r = await client.post(
            "/v1/runs",
            json={"agent": "echo", "input": {"text": "hi", "extra": _nested(64)}},
            headers=headers,
        )
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["error"] == "nested_too_deep"
        assert body["limit"] == 64
        assert body["path"].startswith("input.extra.a.a")
        assert "64" in body["message"]
        assert "input.extra" in body["message"]
        await _no_runs(client, headers)


async def test_json_nested_thousands_deep_is_422_not_500(srv: RunningServer) -> None:
    headers = {**srv.auth("alice"), "Content-Type": "application/json"}
    async with http(srv) as client:
        for depth in (200, 5000, 100_000):
            r = await client.post("/v1/runs", content=_deep_text(depth), headers=headers)
            assert r.status_code == 422, (depth, r.text)
            assert r.json()["error"] == "nested_too_deep"
            assert "64" in r.json()["message"]
        await _no_runs(client, headers)


async def test_huge_integer_is_400_naming_the_digit_limit(srv: RunningServer) -> None:
    headers = {**srv.auth("alice"), "Content-Type": "application/json"}
    body = '{"agent": "echo", "input": {"text": "x", "n": ' + BIG_INT + "}}"
    async with http(srv) as client:
        r = await client.post("/v1/runs", content=body, headers=headers)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_json"
        assert "4300 digits" in r.json()["message"]
        await _no_runs(client, headers)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ('{"agent": "echo", "input": {"text": "a\\ud800b"}}', "input.text"),
        ('{"agent": "echo", "input": {"text": "x", "k": ["ok", "\\udc00"]}}', "input.k[1]"),
        ('{"agent": "echo", "input": {"text": "x", "\\ud83d": 1}}', "input"),
        ('{"agent": "ech\\ud800o", "input": {"text": "x"}}', "agent"),
        ('{"agent": "echo", "input": {"text": "x"}, "thread_id": "\\udfff"}', "thread_id"),
    ],
)
async def test_lone_surrogates_are_422_naming_the_field(
    srv: RunningServer, body: str, path: str
) -> None:
    headers = {**srv.auth("alice"), "Content-Type": "application/json"}
    async with http(srv) as client:
        r = await client.post("/v1/runs", content=body, headers=headers)
        assert r.status_code == 422, r.text
        answer = r.json()
        assert answer["error"] == "invalid_unicode"
        assert answer["path"] == path
        assert "surrogate" in answer["message"]
        await _no_runs(client, headers)


async def test_surrogate_pairs_are_valid_unicode(srv: RunningServer) -> None:
    headers = {**srv.auth("alice"), "Content-Type": "application/json"}
    async with http(srv) as client:
        r = await client.post(
            "/v1/runs",
            content='{"agent": "echo", "input": {"text": "\\ud83d\\ude00"}}',
            headers=headers,
        )
        assert r.status_code == 202, r.text


async def test_run_input_over_the_size_limit_is_413_naming_the_limit() -> None:
    settings = ServerSettings(max_input_bytes=2048)
    with running_server(dev=True, settings=settings) as srv:
        headers = srv.auth("alice")
        async with http(srv) as client:
            r = await client.post(
                "/v1/runs", json={"agent": "echo", "input": {"text": "x" * 1900}}, headers=headers
            )
            assert r.status_code == 202, r.text
            r = await client.post(
                "/v1/runs", json={"agent": "echo", "input": {"text": "é" * 1100}}, headers=headers
            )
            assert r.status_code == 413, r.text
            body = r.json()
            assert body["error"] == "input_too_large"
            assert body["limit"] == 2048
            assert "2048 bytes" in body["message"]
            assert "max_input_bytes" in body["message"]
        async with await ws_connect(srv, "alice") as ws:
            await ws.send(
                json.dumps({"type": "run", "id": 7, "agent": "echo", "input": {"text": "y" * 3000}})
            )
            frame = await recv_json(ws)
            assert frame["type"] == "error"
            assert frame["error"] == "input_too_large"
            assert frame["id"] == 7
            assert frame["limit"] == 2048
            await _run_still_works(ws)


async def _run_still_works(ws: Any) -> None:
    await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "after"}}))
    frames = await recv_until(ws, lambda f: f.get("type") == "agent_completed")
    assert frames[-1]["status"] == "succeeded", frames
    assert frames[-1]["output"] == "after"


async def test_websocket_bad_frames_get_error_frames_and_the_socket_stays(
    srv: RunningServer,
) -> None:
    deep_frame = '{"type": "run", "agent": "echo", "input": ' + "[" * 20_000 + "]" * 20_000 + "}"
    assert len(deep_frame) < 64 * 1024
    cases: list[tuple[str, str]] = [
        (deep_frame, "nested_too_deep"),
        ("[" * 30_000, "nested_too_deep"),
        ('{"type": "run", "agent": "echo", "input": {"n": ' + BIG_INT + "}}", "invalid_json"),
        ('{"type": "run", "agent": "echo", "input": {"text": "\\ud800"}}', "invalid_unicode"),
        ('{"type": "cancel", "run_id": "\\ud800"}', "invalid_unicode"),
        ('{"type": "resume", "after": "\\udc00"}', "invalid_unicode"),
        ('{"type": "bogus", "id": "\\ud800"}', "invalid_unicode"),
        (
            json.dumps({"type": "run", "agent": "echo", "input": {"t": "x", "e": _nested(64)}}),
            "nested_too_deep",
        ),
        ('{"type": "resume", "after": ' + "9" * 4000 + "}", "invalid_cursor"),
    ]
    async with await ws_connect(srv, "alice") as ws:
        for text, code in cases:
            await ws.send(text)
            frame = await recv_json(ws)
            if code == "invalid_cursor":  # a resume is acknowledged, then its cursor refused
                assert frame["type"] == "resumed", frame
                frame = await recv_json(ws)
            assert frame["type"] == "error", (text[:80], frame)
            assert frame["error"] == code, (text[:80], frame)
            assert frame["message"], frame
        async with http(srv) as client:
            await _no_runs(client, srv.auth("alice"))
        await _run_still_works(ws)


def _raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


async def test_odd_content_length_headers_are_never_500(srv: RunningServer) -> None:
    token = srv.auth("alice")["Authorization"]
    for length in ("\xb2", "9" * 5000, "-1", "1e3"):
        request = (
            f"POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n{}"
        ).encode("latin-1")
        answer = await asyncio.to_thread(_raw_http, srv.port, request)
        status = answer.split(b" ", 2)[1] if answer else b""
        assert not status.startswith(b"5"), (length[:10], answer[:300])
