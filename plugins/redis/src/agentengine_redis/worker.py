"""``agentengine worker``: executes the runs queued on Redis (``[redis] queue = true``).

The API instances (``agentengine serve``) queue each accepted run on its user's wait list with
its record and put a wake-up for that user on the work stream (``<prefix>queue:work``); every
worker reads the stream through one consumer group (``XREADGROUP``). A wake-up admits the
user's oldest waiting run if the user has a free slot (``[engine] max_concurrent_per_user``,
held across all workers as a sorted set of leases in Redis); the end of a run frees its slot
and wakes a worker for the user's next waiting run. A worker executes a run exactly as serve
would in-process (``factory.submit_run`` with the run's id and thread, the factory's plugins,
tools and configuration); its events go to the Redis event log, its record to Redis.

A run is taken off its wait list atomically by one worker: it is never executed twice. An entry
that cannot be executed here (an agent this worker does not have, an input that does not fit
it, an entry that is not one) is dead-lettered to ``<prefix>queue:dead`` with the reason, and
its record ends ``failed`` saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from typing import TYPE_CHECKING, Any

import structlog
from agentengine import (
    ConfigError,
    EngineLimitError,
    RunRecord,
    UserExecutionContext,
)
from agentengine.telemetry import attached_trace_context

from agentengine_redis.layout import dead_key, work_key

if TYPE_CHECKING:
    from agentengine import ExecutionEngineFactory

    from agentengine_redis.runs import RedisRunRegistry

__all__ = ["GROUP", "Worker", "serve_worker", "worker_command"]

_log = structlog.get_logger("agentengine_redis.worker")

#: The consumer group every worker reads the work stream through.
GROUP = "workers"
#: Milliseconds one read of the work stream waits for entries.
_BLOCK_MS = 500
#: Entries kept on the dead-letter stream.
_DEAD_KEPT = 10_000


class Worker:
    """Executes queued runs with ``factory`` (whose ``runs`` must be the plugin's
    ``RedisRunRegistry``), at most ``concurrency`` at once. ``run()`` until ``stop()``; then
    the factory's shutdown drains the runs in flight (each ends with its terminal event)."""

    def __init__(self, factory: ExecutionEngineFactory, concurrency: int) -> None:
        from agentengine_redis.runs import RedisRunRegistry

        registry = factory.runs
        if not isinstance(registry, RedisRunRegistry):
            raise ConfigError(
                "agentengine worker needs the Redis run queue: set [redis] url and "
                "queue = true (AGENTENGINE_REDIS__URL, AGENTENGINE_REDIS__QUEUE=true)"
            )
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.factory = factory
        self.registry: RedisRunRegistry = registry
        # This process executes the runs it takes: its submit_run must not queue them again.
        registry.queues = False
        self.concurrency = concurrency
        self.consumer = f"worker-{registry.sink.publisher}"
        self._stopping = asyncio.Event()
        self._starting: set[asyncio.Task[None]] = set()
        self._enders: set[asyncio.Task[None]] = set()
        # The runs executing here whose slot this worker holds: run id -> user id.
        self._held: dict[str, str] = {}
        self.started_runs = 0

    def stop(self) -> None:
        """Stop taking runs (those in flight go on)."""
        self._stopping.set()

    async def run(self) -> None:
        """Take and start queued runs until ``stop()``."""
        redis = self.registry._redis()
        key = work_key(self.registry.prefix)
        with contextlib.suppress(Exception):  # BUSYGROUP: another worker created it
            await redis.xgroup_create(key, GROUP, id="0", mkstream=True)
        renewer = asyncio.get_running_loop().create_task(self._renew_forever())
        try:
            await self._take(redis, key)
        finally:
            renewer.cancel()

    async def _take(self, redis: Any, key: str) -> None:
        while not self._stopping.is_set():
            free = self.concurrency - self._busy()
            if free <= 0:
                await self._wait_for_a_slot()
                continue
            try:
                reply = await redis.xreadgroup(
                    GROUP, self.consumer, {key: ">"}, count=free, block=_BLOCK_MS
                )
            except Exception as exc:
                if "NOGROUP" in str(exc):
                    with contextlib.suppress(Exception):
                        await redis.xgroup_create(key, GROUP, id="0", mkstream=True)
                    continue
                _log.warning("reading the work stream failed; retrying", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    task = asyncio.get_running_loop().create_task(
                        self._wake(entry_id, fields), name="agentengine-worker-wake"
                    )
                    self._starting.add(task)
                    task.add_done_callback(self._starting.discard)

    def _busy(self) -> int:
        return len(self._starting) + self.registry.in_flight()

    async def _wait_for_a_slot(self) -> None:
        # Runs end on their own; poll briefly rather than wiring a callback into each.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), 0.05)

    async def _wake(self, entry_id: Any, fields: dict[Any, Any]) -> None:
        """A wake-up for a user with queued runs: admit their oldest waiting run if they have
        a free slot (else the end of one of their runs wakes a worker again)."""
        redis = self.registry._redis()
        await redis.xack(work_key(self.registry.prefix), GROUP, entry_id)
        await redis.xdel(work_key(self.registry.prefix), entry_id)
        raw_user = fields.get(b"u") or fields.get("u")
        if raw_user is None:
            await self._dead(fields, "not a wake-up (no field u)", None)
            return
        user_id = raw_user.decode() if isinstance(raw_user, bytes) else str(raw_user)
        acquired = await self.registry.acquire(user_id)
        if acquired is None:
            return
        run_id, raw = acquired
        try:
            work = json.loads(raw or b"")
            agent, thread_id = work["agent"], work["thread_id"]
            run_input, timeout = work["input"], work["timeout"]
        except (TypeError, ValueError, KeyError) as exc:
            record = RunRecord(run_id=run_id, user_id=user_id, agent="?", thread_id="?")
            await self._dead({"w": raw}, f"not a queued run: {exc!r}", record)
            await self._release(user_id, run_id)
            return
        context = UserExecutionContext(user_id=user_id, run_id=run_id, thread_id=thread_id)
        queued_at = work.get("queued_at")
        timings = self.factory.timings
        if timings.queue_wait is not None and isinstance(queued_at, float):
            timings.queue_wait(agent, time.time() - queued_at)
        while True:
            try:
                with attached_trace_context(work.get("trace")):  # the run joins the accepting trace
                    handle = await self.factory.submit_run(
                        context, agent, run_input, timeout=timeout
                    )
            except EngineLimitError:
                # This process has not yet counted the end of a run of the user whose slot
                # was freed: wait for that.
                await asyncio.sleep(0.02)
                continue
            except Exception as exc:
                record = RunRecord(run_id=run_id, user_id=user_id, agent=agent, thread_id=thread_id)
                await self._dead({"w": raw}, f"{type(exc).__name__}: {exc}", record)
                await self._release(user_id, run_id)
                return
            break
        if timings.first_event is not None and isinstance(queued_at, float):
            timings.first_event(agent, time.time() - queued_at)  # its agent_started went out
        self.started_runs += 1
        self._held[run_id] = user_id
        ender = asyncio.get_running_loop().create_task(
            self._ended(user_id, run_id, handle), name=f"agentengine-worker-end-{run_id}"
        )
        # Held by the registry too: the factory's shutdown waits for it before closing the
        # sink, so a drained run's slot is freed at once, not when its lease expires.
        self.registry.track_write(ender)
        self._enders.add(ender)
        ender.add_done_callback(self._enders.discard)

    async def _ended(self, user_id: str, run_id: str, handle: Any) -> None:
        try:
            await handle.result()
            # The terminal event is stored before the slot is free: a user's event log never
            # shows more runs executing at once than the limit.
            await self.registry.sink.flush()
        finally:
            self._held.pop(run_id, None)
            await self._release(user_id, run_id)

    async def _release(self, user_id: str, run_id: str) -> None:
        try:
            waiting = await self.registry.release(user_id, run_id)
        except Exception as exc:  # the lease expires on its own
            _log.warning("freeing a run's slot failed", run_id=run_id, error=str(exc))
            return
        if waiting:
            await self.registry.wake(user_id)

    async def _renew_forever(self) -> None:
        lease = self.registry.sink.settings.lease
        while True:
            await asyncio.sleep(lease / 3)
            by_user: dict[str, list[str]] = {}
            for run_id, user_id in list(self._held.items()):
                by_user.setdefault(user_id, []).append(run_id)
            for user_id, run_ids in by_user.items():
                try:
                    await self.registry.renew(user_id, run_ids)
                except Exception as exc:
                    _log.warning("renewing leases failed", user_id=user_id, error=str(exc))

    async def _dead(self, fields: dict[Any, Any], reason: str, record: RunRecord | None) -> None:
        _log.error("queued run cannot be executed; dead-lettered", reason=reason)
        redis = self.registry._redis()
        await redis.xadd(
            dead_key(self.registry.prefix),
            {**{k: v for k, v in fields.items() if v is not None}, "reason": reason},
            maxlen=_DEAD_KEPT,
            approximate=True,
        )
        if record is not None:
            record.status = "failed"
            record.error = f"the run could not be started by a worker: {reason}"
            record.error_type = "WorkerStartError"
            record.finished_at = time.time()
            await self.registry.store(record)

    async def drain(self) -> None:
        """After ``stop()``: let the runs being started start, then shut the factory down
        (waits up to ``drain_timeout``, then cancels; each run ends with its terminal event)."""
        if self._starting:
            await asyncio.wait(list(self._starting))
        await self.factory.shutdown()
        if self._enders:  # the slots of the runs that ended are freed
            await asyncio.wait(list(self._enders), timeout=10)


async def serve_worker(factory: ExecutionEngineFactory, concurrency: int) -> None:
    """Run a worker until SIGTERM or SIGINT, then drain (what ``agentengine worker`` does)."""
    worker = Worker(factory, concurrency)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    _log.info("agentengine worker ready", concurrency=concurrency, consumer=worker.consumer)
    try:
        await worker.run()
    finally:
        _log.info("agentengine worker draining", in_flight=factory.runs.in_flight())
        await worker.drain()
        _log.info("agentengine worker stopped", runs=worker.started_runs)


def _load_plugin(spec: str) -> Any:
    import click
    from agentengine import PluginLoadError, load_plugin

    try:
        return load_plugin(spec)
    except PluginLoadError as exc:
        raise click.BadParameter(str(exc), param_hint="--plugin") from None


def worker_command() -> Any:
    """The ``agentengine worker`` click command."""
    import click

    @click.command("worker")
    @click.option(
        "--concurrency",
        default=10,
        show_default=True,
        type=click.IntRange(1, 10_000),
        help="Most runs executing at once in this process.",
    )
    @click.option(
        "--plugin",
        "plugin_specs",
        multiple=True,
        metavar="MODULE[:ATTR]",
        help="Add a plugin object to the factory (repeatable), besides the installed ones.",
    )
    @click.option(
        "--metrics-port",
        type=click.IntRange(1, 65535),
        default=None,
        help="Serve this worker's Prometheus metrics at GET /metrics on this port (off by "
        "default; needs agentengine-server installed).",
    )
    @click.option(
        "--metrics-host", default="127.0.0.1", show_default=True, help="Address of --metrics-port."
    )
    @click.option("--otel", is_flag=True, help="Trace with OpenTelemetry, as serve --otel does.")
    @click.option("--log-json", is_flag=True, help="Log JSON lines.")
    @click.option(
        "--log-level",
        default="info",
        show_default=True,
        type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    )
    def worker(
        concurrency: int,
        plugin_specs: tuple[str, ...],
        metrics_port: int | None,
        metrics_host: str,
        otel: bool,
        log_json: bool,
        log_level: str,
    ) -> None:
        """Execute the runs queued on Redis ([redis] url, queue = true) until SIGTERM, then
        drain like serve: stop taking runs, wait up to drain_timeout, then cancel."""
        from agentengine import AgentEngineError, ExecutionEngineFactory
        from agentengine.log import configure
        from agentengine.telemetry import configure_tracing

        configure(json=log_json, level=log_level.upper())
        plugins = [_load_plugin(spec) for spec in plugin_specs]

        async def main() -> None:
            try:
                factory = ExecutionEngineFactory(plugins=plugins)
                configure_tracing(factory.settings, force=otel, service_name="agentengine-worker")
                metrics = None
                if metrics_port is not None:
                    try:
                        from agentengine_server.metrics import serve_metrics
                    except ImportError as exc:
                        raise click.ClickException(
                            f"--metrics-port needs agentengine-server installed ({exc})"
                        ) from None
                    metrics = await serve_metrics(factory, metrics_host, metrics_port)
                    _log.info("worker metrics", url=f"http://{metrics_host}:{metrics_port}/metrics")
                try:
                    await serve_worker(factory, concurrency)
                finally:
                    if metrics is not None:
                        metrics.close()
            except AgentEngineError as exc:
                raise click.ClickException(str(exc)) from exc

        asyncio.run(main())

    return worker
