"""``agentengine serve``: run the server.

Exit status 0 after a graceful shutdown (SIGTERM or Ctrl+C), 2 for usage errors (including a
missing or short JWT secret, or ``--dev`` on a non-loopback address). A second SIGTERM or
Ctrl+C during the shutdown ends the process at once, killed by that signal (status 143 or 130
in a shell).
"""

from __future__ import annotations

import os
from typing import Any

import click

__all__ = ["serve_command"]

_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for loopback addresses and names (what ``--dev`` may bind to)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _load_plugin(spec: str) -> Any:
    import click
    from agentengine import PluginLoadError, load_plugin

    try:
        return load_plugin(spec)
    except PluginLoadError as exc:
        raise click.BadParameter(str(exc), param_hint="--plugin") from None


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--dev",
    is_flag=True,
    help="Development mode (INSECURE, loopback only): POST /v1/dev/token mints a token for any "
    "user name; a random JWT secret is used when AGENTENGINE_JWT_SECRET is unset; the demo "
    "agents (echo, researcher) are offered.",
)
@click.option(
    "--plugin",
    "plugin_specs",
    multiple=True,
    metavar="MODULE[:ATTR]",
    help="Add a plugin object to the factory (repeatable), besides the installed ones.",
)
@click.option(
    "--otel",
    is_flag=True,
    help="Trace with OpenTelemetry: install its SDK with the OTLP/HTTP exporter, configured by "
    "the standard OTEL_* variables (also [otel] enabled = true). Needs "
    "agentengine-server[otel].",
)
@click.option("--log-json", is_flag=True, help="Log JSON lines.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
def serve_command(
    host: str,
    port: int,
    dev: bool,
    plugin_specs: tuple[str, ...],
    otel: bool,
    log_json: bool,
    log_level: str,
) -> None:
    """Serve each user's agents and live events over HTTP, SSE and WebSocket."""
    import structlog
    from agentengine import AgentEngineError, ExecutionEngineFactory
    from agentengine.log import configure
    from agentengine.telemetry import configure_tracing

    from agentengine_server.app import create_app
    from agentengine_server.auth import SecretError, check_secret
    from agentengine_server.settings import JWT_SECRET_ENV
    from agentengine_server.uvicorn_runner import AgentServer, run_server, uvicorn_config

    configure(json=log_json, level=log_level.upper())
    log = structlog.get_logger("agentengine_server")
    secret = os.environ.get(JWT_SECRET_ENV) or None
    if dev and not is_loopback(host):
        raise click.UsageError(
            f"--dev mints tokens for anyone who asks, so it only listens on loopback "
            f"(127.0.0.1, ::1, localhost), not {host!r}; drop --dev and set {JWT_SECRET_ENV} "
            "to serve other hosts"
        )
    try:
        if secret is not None or not dev:
            check_secret(secret)
    except SecretError as exc:
        raise click.UsageError(str(exc)) from None
    plugins = [_load_plugin(spec) for spec in plugin_specs]
    try:
        # --dev is for trying the server out: it offers the demo agents (echo, researcher),
        # which production servers do not (unless [plugins] enable = ["demo"]).
        factory = ExecutionEngineFactory(plugins=plugins, enable_plugins=["demo"] if dev else ())
        # Before the app: it adds the HTTP instrumentation when tracing is on.
        if configure_tracing(factory.settings, force=otel, service_name="agentengine-server"):
            log.info("tracing with OpenTelemetry", exporter="otlp/http")
        app = create_app(factory, secret=secret, dev=dev)
    except AgentEngineError as exc:
        raise click.ClickException(str(exc)) from exc
    if dev:
        log.warning(
            "INSECURE development mode: POST /v1/dev/token issues a token for any user name; "
            "never expose this server",
            host=host,
            port=port,
        )

    def started(server: AgentServer) -> None:
        log.info(
            "agentengine-server listening",
            url=f"http://{host}:{server.bound_port}",
            agents=factory.agents.names(),
            dev=dev,
        )

    server = AgentServer(uvicorn_config(app, host=host, port=port), on_started=started)
    run_server(server)
    if not server.started:
        raise SystemExit(1)
    log.info("agentengine-server stopped")
