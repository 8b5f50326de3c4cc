"""A real redis-server for the tests: on a free loopback port, in a directory of its own, with
``appendonly yes``. Missing redis-server is a skip locally and an error in CI (``CI=true``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from server_helpers import AGENTENGINE, CHATTER, free_port, serve_env


def redis_server_binary() -> str:
    """The path of redis-server; skip (locally) or fail (CI) without it."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class RedisProcess:
    """One redis-server process; ``kill()`` it (SIGKILL) and ``start()`` it again on the same
    directory and port."""

    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    #: More redis-server options (``["--appendfsync", "always"]``).
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    if client.ping():
                        # Loading the AOF answers LOADING errors until done.
                        return self
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                assert self.proc.poll() is None, (self.directory / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """``kill -9``: no shutdown, no final save."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


def unique_prefix() -> str:
    """A key prefix of one test's own on a shared server."""
    return f"t{uuid.uuid4().hex[:10]}:"


@contextmanager
def worker_process(
    path: Path,
    env: Mapping[str, str],
    *args: str,
    plugins: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """``agentengine worker *args`` in ``path``, once it says it is ready.

    ``plugins`` maps a module name to its source, written under ``path`` and passed as
    ``--plugin MODULE:plugin`` (by default the chatter agent). The output is a pipe (read it
    with ``proc.communicate()``); the process is killed on exit if it is still running."""
    path.mkdir(parents=True, exist_ok=True)
    plugin_args: list[str] = []
    for module, source in (plugins or {"chatplug": CHATTER}).items():
        (path / f"{module}.py").write_text(source)
        plugin_args += ["--plugin", f"{module}:plugin"]
    proc = subprocess.Popen(
        [AGENTENGINE, "worker", *plugin_args, *args],
        env=serve_env(path, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "agentengine worker ready" in line:
                break
        else:
            raise AssertionError(f"the worker did not start: {proc.wait(10)}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
