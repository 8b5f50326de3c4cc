"""What agentengine-mcp adds to an MCP tool call.

In one run, for a stdio server and a streamable HTTP server (the same ``MCPServer``, started
by this script), the time per ``add`` call:

* direct:  ``await client.call_tool("add", ...)`` on an open ``mcp.Client`` (the floor);
* engine:  ``await run.call_tool("bench.add", ...)`` inside an agent run (schema validation,
  ``tool_executing``/``tool_completed`` events, the per-call timeout, result conversion);
* run:     a whole ``engine.execute_agent(...)`` run making one call, for context.

Rounds alternate direct and engine batches so that machine noise hits both alike; the
reported figure is the median per-call time over rounds, and the ratio engine / direct.
Target: engine / direct <= 1.3.

    uv run python bench/mcp_overhead.py [--calls 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

SELF = __file__


def serve(mode: str, port: int | None) -> None:
    """Run the benchmark's MCP server (``--serve stdio`` or ``--serve http --port N``)."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bench")

    @server.tool()
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    if mode == "stdio":
        server.run("stdio")
    else:
        import uvicorn

        assert port is not None
        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=port, log_level="error")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the HTTP bench server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise SystemExit("the HTTP bench server did not start")


async def bench_transport(name: str, server: dict[str, Any], calls: int, rounds: int) -> dict:
    from agentengine import (
        ExecutionEngineFactory,
        RunContext,
        Settings,
        UserExecutionContext,
        agent,
        hookimpl,
    )
    from agentengine_mcp import MCPPlugin
    from mcp import Client, StdioServerParameters

    @agent(name="adder")
    async def adder(run: RunContext, n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            await run.call_tool("bench.add", {"a": i, "b": 1})
        return time.perf_counter() - started

    class Agents:
        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            registry.add(adder)

    if "command" in server:
        target: Any = StdioServerParameters(command=server["command"], args=server["args"])
    else:
        target = server["url"]
    factory = ExecutionEngineFactory(
        plugins=[MCPPlugin(config={"servers": [server]}), Agents()],
        load_entrypoints=False,
        config=Settings({}),
    )
    direct_us: list[float] = []
    engine_us: list[float] = []
    run_us: list[float] = []
    async with (
        Client(target) as client,
        factory,
        factory.user_execution_engine(UserExecutionContext.for_user("bench")) as engine,
    ):
        # Warm up both paths (process start, session open, tool list, caches).
        for i in range(20):
            await client.call_tool("add", {"a": i, "b": 1})
        await engine.execute_agent("adder", {"n": 20})
        for _ in range(rounds):
            started = time.perf_counter()
            for i in range(calls):
                await client.call_tool("add", {"a": i, "b": 1})
            direct_us.append((time.perf_counter() - started) / calls * 1e6)
            result = await engine.execute_agent("adder", {"n": calls})
            assert result.succeeded, result.error
            engine_us.append(result.output / calls * 1e6)
            started = time.perf_counter()
            for _ in range(calls // 10):
                await engine.execute_agent("adder", {"n": 1})
            run_us.append((time.perf_counter() - started) / (calls // 10) * 1e6)
    direct, through, run = (statistics.median(x) for x in (direct_us, engine_us, run_us))
    return {"transport": name, "direct_us": direct, "engine_us": through, "run_us": run}


async def measure(http_url: str, calls: int, rounds: int) -> list[dict]:
    stdio = {"name": "bench", "command": sys.executable, "args": [SELF, "--serve", "stdio"]}
    http = {"name": "bench", "url": http_url}
    return [
        await bench_transport("stdio", stdio, calls, rounds),
        await bench_transport("streamable-http", http, calls, rounds),
    ]


def main(calls: int, rounds: int) -> list[dict]:
    """Start the HTTP server (the stdio one is started by each client), measure, stop."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, SELF, "--serve", "http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, proc)
        return asyncio.run(measure(f"http://127.0.0.1:{port}/mcp", calls, rounds))
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per batch")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds")
    parser.add_argument("--serve", choices=["stdio", "http"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve, options.port)
        raise SystemExit(0)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    results = main(options.calls, options.rounds)
    print(f"{'transport':<16} {'direct µs':>10} {'engine µs':>10} {'ratio':>6} {'run µs':>9}")
    worst = 0.0
    for r in results:
        ratio = r["engine_us"] / r["direct_us"]
        worst = max(worst, ratio)
        print(
            f"{r['transport']:<16} {r['direct_us']:>10.0f} {r['engine_us']:>10.0f} "
            f"{ratio:>6.2f} {r['run_us']:>9.0f}"
        )
    print(f"worst ratio engine/direct: {worst:.2f} (target <= 1.30)")
