"""The ``agentengine_status`` hook: what ``agentengine plugins`` shows of a plugin's health."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentengine import hookimpl
from agentengine.cli.main import main
from click.testing import CliRunner


class Healthy:
    name = "healthy"

    @hookimpl
    def agentengine_status(self) -> list[dict[str, Any]]:
        return [{"name": "db", "state": "connected", "detail": "postgres://db"}]


class Broken:
    name = "broken-status"

    @hookimpl
    def agentengine_status(self) -> list[dict[str, Any]]:
        raise RuntimeError("status backend down")


def test_plugins_shows_status_and_survives_a_raising_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agentengine.plugins.loading as plugins_module

    real = plugins_module.load_plugins

    def with_extra(**kwargs: Any) -> Any:
        kwargs["explicit"] = [*kwargs.get("explicit", ()), Healthy(), Broken()]
        return real(**kwargs)

    monkeypatch.setattr("agentengine.runtime.factory.load_plugins", with_extra)
    result = CliRunner().invoke(main, ["plugins"])
    assert "healthy [explicit] ok" in result.stdout
    assert "status: db: connected (postgres://db)" in result.stdout
    assert "broken-status [explicit] ok" in result.stdout
    assert "status: status: error (status backend down)" in result.stdout
    as_json = CliRunner().invoke(main, ["plugins", "--json"])
    infos = {p["name"]: p for p in json.loads(as_json.stdout)["plugins"]}
    assert infos["healthy"]["status"] == [
        {"name": "db", "state": "connected", "detail": "postgres://db"}
    ]
    assert infos["broken-status"]["error"] is None
