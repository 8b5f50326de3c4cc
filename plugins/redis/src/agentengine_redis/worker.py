"""``agentengine worker``: executes the runs queued on Redis (``[redis] queue = true``).

The API instances (``agentengine serve``) queue each accepted run on its user's wait list with
its record and put a wake-up for that user on the work stream (``<prefix>queue:work``); every
worker reads the stream through one consumer group (``XREADGROUP``). A wake-up admits the
user's oldest waiting run if the user has a free slot (``[engine] max_concurrent_per_user``,
held across all workers as a sorted set of leases in Redis); the end of a run frees its slot
and wakes a worker for the user's next waiting run. A worker executes a run exactly as serve
would in-process (``factory.submit_run`` with the run's id and thread, the factory's plugins,
tools and configuration); its events go to the Redis event log, its record to Redis.

A run is taken off its wait list atomically by one worker, under a new attempt number: it is
executed once (again only after its worker was lost, and only for an agent that opts in with
``[redis] retry_on_worker_loss``). The work-stream entry that admitted it stays pending to its
worker until it ended; workers renew their leases and those entries' idle time, and every
worker's reaper ends the runs of a worker gone silent past the lease (``XAUTOCLAIM``). An entry
that cannot be executed here (an agent this worker does not have, an input that does not fit
it, an entry that is not one) is dead-lettered to ``<prefix>queue:dead`` with the reason, and
its run ends ``failed`` saying so. See docs/scale-out.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import time
from typing import TYPE_CHECKING, Any

import structlog
from agentengine import (
    ConfigError,
    EngineLimitError,
    UserExecutionContext,
)
from agentengine.telemetry import attached_trace_context

from agentengine_redis.figures import heartbeat, leave
from agentengine_redis.layout import (
    WORK_GROUP,
    cancel_channel,
    dead_key,
    lost_key,
    run_key_prefix,
    work_key,
)

if TYPE_CHECKING:
    from agentengine import ExecutionEngineFactory, RunHandle

    from agentengine_redis.runs import RedisRunRegistry

__all__ = ["GROUP", "Worker", "serve_worker", "worker_command"]

_log = structlog.get_logger("agentengine_redis.worker")

#: The consumer group every worker reads the work stream through.
GROUP = WORK_GROUP
#: Milliseconds one read of the work stream waits for entries.
_BLOCK_MS = 500
#: Entries kept on the dead-letter stream.
_DEAD_KEPT = 10_000
#: Entries one reaper sweep claims at most (in pages of 100).
_REAP_PAGES = 10


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Held:
    """A run executing here: its user, attempt, work-stream entry (pending to this worker
    until the run ended) and handle."""

    __slots__ = ("attempt", "cancel", "entry_id", "handle", "stopped", "user_id")

    def __init__(self, user_id: str, attempt: int, entry_id: str) -> None:
        self.user_id = user_id
        self.attempt = attempt
        self.entry_id = entry_id
        self.handle: RunHandle | None = None
        self.cancel = False  # asked before the handle existed
        self.stopped = False  # taken as lost: stopped here


class Worker:
    """Executes queued runs with ``factory`` (whose ``runs`` must be the plugin's
    ``RedisRunRegistry``), at most ``concurrency`` at once. ``run()`` until ``stop()``; then
    ``drain()``: the factory's shutdown drains the runs in flight (each ends with its terminal
    event).

    Besides, every worker renews the leases of its runs every ``lease / 3`` seconds (a run
    whose lease Redis no longer grants it, or whose writes Redis refuses, is stopped here:
    another process took it as lost), listens for cancels on the cancel channel (and sees a
    run's cancel flag when it renews), and reaps every ``lease / 2`` seconds: it claims the
    work-stream entries idle past the lease (``XAUTOCLAIM``: the entry of a run stays pending
    to its worker, which resets its idle time when it renews) and ends their runs (see
    ``scripts.REAP``). Several reapers at once are safe: an entry is claimed by one at a time,
    and the script ends a run only if its lease expired and it has not ended.
    """

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
        # This process executes the runs it takes: its submit_run must not queue them again,
        # and their ends are written with their terminal events (fenced by attempt).
        registry.queues = False
        registry.fencing = True
        self.concurrency = concurrency
        self.consumer = f"worker-{registry.sink.publisher}"
        self._stopping = asyncio.Event()
        self._starting: set[asyncio.Task[None]] = set()
        self._enders: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        # The runs executing here: run id -> what this worker holds of it.
        self._held: dict[str, _Held] = {}
        self.started_runs = 0
        #: Runs this worker's reaper ended or requeued (their worker was lost).
        self.reaped_runs = 0

    def stop(self) -> None:
        """Stop taking runs (those in flight go on)."""
        self._stopping.set()

    async def run(self) -> None:
        """Take and start queued runs until ``stop()``."""
        redis = self.registry._redis()
        key = work_key(self.registry.prefix)
        with contextlib.suppress(Exception):  # BUSYGROUP: another worker created it
            await redis.xgroup_create(key, GROUP, id="0", mkstream=True)
        loop = asyncio.get_running_loop()
        if not self._background:
            for name, body in (
                ("renew", self._renew_forever),
                ("reap", self._reap_forever),
                ("cancels", self._listen_for_cancels),
            ):
                self._background.append(loop.create_task(body(), name=f"agentengine-worker-{name}"))
        await self._heartbeat()
        try:
            await self._take(redis, key)
        finally:
            await self._leave()

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
                        self._wake_logged(_text(entry_id), fields),
                        name="agentengine-worker-wake",
                    )
                    self._starting.add(task)
                    task.add_done_callback(self._starting.discard)

    def _busy(self) -> int:
        return len(self._starting) + self.registry.in_flight()

    async def _wait_for_a_slot(self) -> None:
        # Runs end on their own; poll briefly rather than wiring a callback into each.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), 0.05)

    async def _done_entry(self, entry_id: str) -> None:
        """The entry needs no one any more (its run ended, or it was a wake-up)."""
        redis = self.registry._redis()
        key = work_key(self.registry.prefix)
        pipe = redis.pipeline(transaction=False)
        pipe.xack(key, GROUP, entry_id)
        pipe.xdel(key, entry_id)
        await pipe.execute()

    async def _wake_logged(self, entry_id: str, fields: dict[Any, Any]) -> None:
        try:
            await self._wake(entry_id, fields)
        except Exception as exc:
            # The entry is still pending (or its run holds it): a reaper takes it over once
            # it is idle past the lease.
            _log.error("taking a queued run failed", entry=entry_id, error=repr(exc))

    async def _wake(self, entry_id: str, fields: dict[Any, Any]) -> None:
        """A wake-up for a user with queued runs: admit their oldest waiting run if they have
        a free slot (else the end of one of their runs wakes a worker again). The entry stays
        pending to this worker while the run executes: the reaper's handle on it."""
        raw_user = (fields or {}).get(b"u") or (fields or {}).get("u")
        if raw_user is None:
            await self._done_entry(entry_id)
            await self._dead(fields or {}, "not a wake-up (no field u)")
            return
        user_id = _text(raw_user)
        registry = self.registry
        # Retried while Redis is away (until this worker stops): a wake-up dropped here would
        # leave the user's queued runs waiting until their next submission.
        acquired = await registry.retrying(
            "taking a queued run",
            lambda: registry.acquire(user_id, entry_id, self.factory.engine_settings.run_timeout),
            self._stopping,
        )
        if acquired is None:
            await self._done_entry(entry_id)
            return
        run_id, raw, attempt, left, so_far = acquired
        try:
            work = json.loads(raw or b"")
            agent, thread_id = work["agent"], work["thread_id"]
            run_input = work["input"]
        except (TypeError, ValueError, KeyError) as exc:
            await self._cannot_start(user_id, run_id, attempt, entry_id, raw, repr(exc), True)
            return
        held = self._held[run_id] = _Held(user_id, attempt, entry_id)
        registry.fence(
            user_id,
            run_id,
            attempt,
            so_far,
            lambda: self._lost(run_id, "redis refused its writes"),
        )
        context = UserExecutionContext(user_id=user_id, run_id=run_id, thread_id=thread_id)
        queued_at = work.get("queued_at")
        timings = self.factory.timings
        if timings.queue_wait is not None and isinstance(queued_at, float):
            timings.queue_wait(agent, time.time() - queued_at)
        while True:
            try:
                with attached_trace_context(work.get("trace")):  # the run joins the accepting trace
                    handle = await self.factory.submit_run(
                        context, agent, run_input, timeout=max(left, 0.001)
                    )
            except EngineLimitError:
                # This process has not yet counted the end of a run of the user whose slot
                # was freed: wait for that.
                await asyncio.sleep(0.02)
                continue
            except Exception as exc:
                self._held.pop(run_id, None)
                registry.unfence(run_id)
                reason = f"{type(exc).__name__}: {exc}"
                await self._cannot_start(user_id, run_id, attempt, entry_id, raw, reason, False)
                return
            break
        held.handle = handle
        if timings.first_event is not None and isinstance(queued_at, float):
            timings.first_event(agent, time.time() - queued_at)  # its agent_started went out
        self.started_runs += 1
        ender = asyncio.get_running_loop().create_task(
            self._ended(run_id, held), name=f"agentengine-worker-end-{run_id}"
        )
        # Held by the registry too: the factory's shutdown waits for it before closing the
        # sink, so a drained run's slot is freed at once, not when its lease expires.
        registry.track_write(ender)
        self._enders.add(ender)
        ender.add_done_callback(self._enders.discard)
        # A cancel asked before this worker held the run was not heard: its flag is set.
        rec = run_key_prefix(registry.prefix, user_id) + run_id
        try:
            flagged = await registry._redis().hget(rec, "c")
        except Exception:
            flagged = None  # the renewal sees the flag
        if held.cancel or held.stopped or flagged:
            handle.cancel_nowait()

    async def _cannot_start(
        self,
        user_id: str,
        run_id: str,
        attempt: int,
        entry_id: str,
        raw: Any,
        reason: str,
        not_a_run: bool,
    ) -> None:
        """Dead-letter a run this worker admitted but cannot execute, and end it."""
        await self._dead({"w": raw}, f"not a queued run: {reason}" if not_a_run else reason)
        error = f"the run could not be started by a worker: {reason}"
        try:
            await self.registry.finish_failed(user_id, run_id, attempt, error, "WorkerStartError")
        except Exception as exc:  # its lease expires; the reaper ends it
            _log.warning("ending a dead-lettered run failed", run_id=run_id, error=str(exc))
            return
        await self._release(run_id, _Held(user_id, attempt, entry_id))

    async def _ended(self, run_id: str, held: _Held) -> None:
        try:
            assert held.handle is not None
            await held.handle.result()
            # The terminal event (and with it the run's end) is stored before the entry is
            # freed: the run never looks lost to a reaper.
            await self.registry.sink.flush()
        finally:
            self._held.pop(run_id, None)
            self.registry.unfence(run_id)
            await self._release(run_id, held)

    async def _release(self, run_id: str, held: _Held) -> None:
        user_id = held.user_id
        try:
            # Retried while Redis is away: the user's next run waits for this.
            waiting = await self.registry.retrying(
                "freeing a run's slot",
                lambda: self.registry.release(user_id, run_id, held.attempt),
            )
            if waiting < 0:
                _log.error(
                    "a run's end did not reach redis; the reaper ends it once its lease expired",
                    run_id=run_id,
                    user_id=user_id,
                )
                return
            await self._done_entry(held.entry_id)
            if waiting:
                await self.registry.retrying(
                    "waking a worker", lambda: self.registry.wake(user_id), self._stopping
                )
        except Exception as exc:  # the lease expires on its own
            _log.warning("freeing a run's slot failed", run_id=run_id, error=str(exc))

    def _lost(self, run_id: str, why: str) -> None:
        """Redis no longer lets this worker's attempt own the run (it was taken as lost, and
        ended or given to another worker): stop it here; its writes are refused."""
        held = self._held.get(run_id)
        if held is None or held.stopped:
            return
        held.stopped = True
        _log.warning(
            "a run executing here was taken as lost (this worker was silent past its lease); "
            "stopping it, its writes are refused",
            run_id=run_id,
            user_id=held.user_id,
            attempt=held.attempt,
            why=why,
        )
        if held.handle is not None and not held.handle.done:
            held.handle.cancel_nowait()

    def _cancel(self, run_id: str) -> None:
        """A cancel of a run executing here (cancel channel, or its flag)."""
        held = self._held.get(run_id)
        if held is None:
            return
        held.cancel = True
        if held.handle is not None and not held.handle.done:
            held.handle.cancel_nowait()

    def _closing(self) -> bool:
        return self.registry.sink._closing

    async def _renew_forever(self) -> None:
        lease = self.registry.sink.settings.lease
        while not self._closing():
            await asyncio.sleep(lease / 3)
            await self._heartbeat()
            by_user: dict[str, list[tuple[str, _Held]]] = {}
            for run_id, held in list(self._held.items()):
                by_user.setdefault(held.user_id, []).append((run_id, held))
            for user_id, runs in by_user.items():
                try:
                    await self._renew(user_id, runs)
                except Exception as exc:
                    _log.warning("renewing leases failed", user_id=user_id, error=str(exc))

    async def _renew(self, user_id: str, runs: list[tuple[str, _Held]]) -> None:
        states = await self.registry.renew(user_id, [(r, h.attempt) for r, h in runs])
        entries = []
        for (run_id, held), state in zip(runs, states, strict=True):
            if state == 0:
                if held.handle is None or not held.handle.done:  # else: it ended, stored
                    self._lost(run_id, "redis refused to renew its lease")
                continue
            entries.append(held.entry_id)
            if state == 2:
                self._cancel(run_id)
        if entries:
            # Reset the entries' idle time: a reaper claims only those idle past the lease.
            await self.registry._redis().xclaim(
                work_key(self.registry.prefix), GROUP, self.consumer, 0, entries, justid=True
            )

    async def _reap_forever(self) -> None:
        lease = self.registry.sink.settings.lease
        while not self._closing() and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.05, lease / 2))
            if self._stopping.is_set() or self._closing():
                return
            try:
                await self.reap()
            except Exception as exc:
                _log.warning("reaping lost runs failed", error=str(exc))

    async def reap(self) -> int:
        """One sweep: end (or requeue) the runs whose worker is lost; how many."""
        redis = self.registry._redis()
        key = work_key(self.registry.prefix)
        lease_ms = int(self.registry.sink.settings.lease * 1000)
        start: Any = "0-0"
        reaped = 0
        for _ in range(_REAP_PAGES):
            reply = await redis.xautoclaim(
                key, GROUP, self.consumer, lease_ms, start_id=start, count=100
            )
            start, claimed = reply[0], reply[1]
            for entry_id in reply[2] if len(reply) > 2 else ():
                await redis.xack(key, GROUP, entry_id)  # deleted from the stream meanwhile
            for entry_id, fields in claimed:
                reaped += await self._reap_one(_text(entry_id), fields)
            if _text(start) == "0-0":
                break
        return reaped

    async def _reap_one(self, entry_id: str, fields: dict[Any, Any] | None) -> int:
        if any(h.entry_id == entry_id for h in self._held.values()):
            return 0  # one of this worker's own (its renewal claims it back)
        raw_user = (fields or {}).get(b"u") or (fields or {}).get("u")
        if raw_user is None:
            await self._done_entry(entry_id)
            return 0
        user_id = _text(raw_user)
        what, run_id, waiting = await self.registry.reap(user_id, entry_id)
        if what == "alive":
            return 0
        reaped = what in ("lost", "timed_out", "cancelled", "retried")
        if reaped:
            self.reaped_runs += 1
            await self.registry._redis().incr(lost_key(self.registry.prefix))
            _log.warning(
                "a run's worker was lost (silent past its lease)",
                run_id=run_id,
                user_id=user_id,
                outcome=what,
            )
        await self._done_entry(entry_id)
        if waiting:
            await self.registry.wake(user_id)
        return int(reaped)

    async def _listen_for_cancels(self) -> None:
        redis = self.registry._redis()
        channel = cancel_channel(self.registry.prefix)
        while not self._closing():
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                while not self._closing():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    try:
                        _user, run_id = json.loads(message["data"])
                    except (TypeError, ValueError):
                        continue
                    self._cancel(str(run_id))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect; meanwhile renewals see the cancel flags
                _log.warning("listening for cancels failed; retrying", error=str(exc))
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _heartbeat(self) -> None:
        """Count this worker alive for a lease (``<prefix>workers``; see ``figures``)."""
        try:
            await heartbeat(
                self.registry._redis(),
                self.registry.prefix,
                self.consumer,
                self.registry.sink.settings.lease,
            )
        except Exception as exc:  # a figure only: the leases are what matter
            _log.warning("writing the worker's heartbeat failed", error=str(exc))

    async def _leave(self) -> None:
        """No longer counted alive: this worker takes no more runs."""
        try:
            await leave(self.registry._redis(), self.registry.prefix, self.consumer)
        except Exception as exc:  # its heartbeat expires on its own
            _log.warning("removing the worker's heartbeat failed", error=str(exc))

    async def _dead(self, fields: dict[Any, Any], reason: str) -> None:
        _log.error("queued run cannot be executed; dead-lettered", reason=reason)
        redis = self.registry._redis()
        await redis.xadd(
            dead_key(self.registry.prefix),
            {**{k: v for k, v in fields.items() if v is not None}, "reason": reason},
            maxlen=_DEAD_KEPT,
            approximate=True,
        )

    async def drain(self) -> None:
        """After ``stop()``: let the runs being started start, then shut the factory down
        (waits up to ``drain_timeout``, then cancels; each run ends with its terminal event;
        their leases are renewed meanwhile)."""
        if self._starting:
            await asyncio.wait(list(self._starting))
        try:
            await self.factory.shutdown()
            if self._enders:  # the slots of the runs that ended are freed
                await asyncio.wait(list(self._enders), timeout=10)
        finally:
            for task in self._background:
                task.cancel()
            for task in self._background:
                with contextlib.suppress(BaseException):
                    await task
            self._background.clear()


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


@functools.cache  # one command, whether the hook or the declared entry point asks for it
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
