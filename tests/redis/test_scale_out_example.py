"""examples/scale-out/compose.yaml starts what docs/scale-out.md says (Redis, two API
instances, two workers on it), and every command and setting it uses is a real one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from agentengine import EngineSettings
from agentengine.cli.main import main
from agentengine_redis import RedisSettings
from click.testing import CliRunner

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "scale-out"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLE / "compose.yaml").read_text())
    return data


def agentengine_services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in data["services"].items()
        if service.get("command", [None])[0] == "agentengine"
    }


def test_compose_starts_redis_two_api_instances_and_two_workers() -> None:
    data = compose()
    services = data["services"]
    assert "redis-server" in services["redis"]["command"]
    assert "--appendonly" in services["redis"]["command"]
    ours = agentengine_services(data)
    kinds = sorted(service["command"][1] for service in ours.values())
    assert kinds == ["serve", "serve", "worker", "worker"], kinds
    for name, service in ours.items():
        env = service["environment"]
        # Every process on the same Redis, with the queue on and the same secret.
        assert env["AGENTENGINE_REDIS__URL"] == "redis://redis:6379/0", name
        assert env["AGENTENGINE_REDIS__QUEUE"] == "true", name
        assert "AGENTENGINE_JWT_SECRET" in env, name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert service["build"]["dockerfile"] == "examples/scale-out/Dockerfile", name
        if service["command"][1] == "serve":
            assert "--host" in service["command"] and "0.0.0.0" in service["command"], name
    ports = [p for s in ours.values() for p in s.get("ports", [])]
    assert len(ports) == len(set(ports)) == 2, ports
    # The build context holds what the Dockerfile copies.
    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    context = (EXAMPLE / services["api-a"]["build"]["context"]).resolve()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            assert (context / line.split()[1]).exists(), line


def test_every_command_and_setting_of_the_compose_file_is_real() -> None:
    """Each ``agentengine`` command parses with the CLI's own options (an unknown command
    or option fails here), ``--help`` of each works, and every ``AGENTENGINE_<TABLE>__<KEY>``
    names a real setting."""
    commands = {tuple(s["command"]) for s in agentengine_services(compose()).values()}
    for command in commands:
        ctx = click.Context(main)
        sub = main.get_command(ctx, command[1])
        assert sub is not None, command
        # Parses the options exactly as the command line would, without running anything.
        with sub.make_context(command[1], list(command[2:]), parent=ctx):
            pass
        with pytest.raises(click.UsageError):
            sub.make_context(command[1], [*command[2:], "--no-such-option"], parent=ctx)
    for name in sorted({c[1] for c in commands}):
        out = CliRunner().invoke(main, [name, "--help"])
        assert out.exit_code == 0 and "Usage:" in out.output, out.output
    tables = {"REDIS": RedisSettings.model_fields, "ENGINE": EngineSettings.model_fields}
    for service in agentengine_services(compose()).values():
        for variable in service["environment"]:
            table, sep, key = variable.removeprefix("AGENTENGINE_").partition("__")
            if sep:
                assert key.lower() in tables[table], variable
            else:
                assert variable in {
                    "AGENTENGINE_JWT_SECRET",
                    "AGENTENGINE_ENABLE_PLUGINS",
                    "AGENTENGINE_STRICT_PLUGINS",
                }, variable


def test_the_configuration_table_documents_every_redis_setting_with_its_default() -> None:
    """docs/scale-out.md has one configuration table: each ``[redis]`` setting is in it once,
    with the default the code has (``lease`` 30 s ...)."""
    text = (ROOT / "docs" / "scale-out.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `[redis]` | ")]
    assert text.count("| where | key | default | what it does |") == 1
    for name, field in RedisSettings.model_fields.items():
        (row,) = [r for r in rows if f"`{name}`" in r.split(" | ")[1]]
        default = row.split(" | ")[2]
        value = field.get_default(call_default_factory=True)
        if isinstance(value, bool):
            assert default == str(value).lower(), (name, row)
        elif isinstance(value, int | float) and name != "buffer_bytes":  # 64 MiB
            shown = {x.removesuffix(" s") for x in default.split(", ")}
            assert f"{value:g}" in shown or str(value) in shown, (name, row)
