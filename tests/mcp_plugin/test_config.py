"""The [mcp] table: validation, errors naming server and field, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentengine import (
    ConfigError,
    ExecutionEngineFactory,
    UserExecutionContext,
    load_settings,
)
from agentengine_mcp import MCPPlugin, Template, TemplateError
from agentengine_mcp.config import settings_from


def _error(table: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        settings_from(table, "agentengine.toml")
    return str(info.value)


def test_a_stdio_and_an_http_server() -> None:
    settings = settings_from(
        {
            "servers": [
                {"name": "time", "command": "mcp-server-time", "args": ["--local-timezone", "UTC"]},
                {"name": "docs", "url": "http://127.0.0.1:9000/mcp", "token_env": "DOCS_TOKEN"},
            ]
        }
    )
    time_server, docs = settings.servers
    assert time_server.transport == "stdio"
    assert time_server.tool_prefix == "time."
    assert time_server.target == "mcp-server-time --local-timezone UTC"
    assert docs.transport == "http"
    assert docs.call_timeout == 30.0
    assert docs.startup_timeout == 10.0


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({"name": "x"}, "server 'x': needs 'command'"),
        ({"name": "x", "command": "a", "url": "http://h/"}, "server 'x': set either 'command'"),
        ({"name": "x", "url": "ftp://h/"}, "server 'x': url must start with http://"),
        ({"name": "x", "command": "a", "call_timeout": 0}, "server 'x', field 'call_timeout'"),
        ({"name": "x", "command": "a", "bogus": 1}, "server 'x', field 'bogus': Extra inputs"),
        ({"name": "x y", "command": "a"}, "server 'x y', field 'name'"),
        ({"name": "x", "command": "a", "headers": {"A": "b"}}, "apply to url servers only"),
        (
            {"name": "x", "command": "a", "env": {"T": "{metadata.token}"}},
            "server 'x', field 'env': T: bad template '{metadata.token}': unknown placeholder",
        ),
        ({"command": "a"}, "mcp.servers[0], field 'name': Field required"),
    ],
)
def test_bad_server_entries_name_the_server_and_field(
    server: dict[str, object], expected: str
) -> None:
    message = _error({"servers": [server]})
    assert message.startswith("invalid configuration in agentengine.toml, table [mcp]: ")
    assert expected in message


def test_duplicate_names_and_colliding_prefixes_are_refused() -> None:
    assert "two servers are named 'a'" in _error(
        {"servers": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]}
    )
    message = _error(
        {"servers": [{"name": "a", "command": "x"}, {"name": "b", "command": "y", "prefix": "a.b"}]}
    )
    assert "prefix 'a.b' of server 'b' starts with the prefix 'a.' of server 'a'" in message


def test_servers_must_be_a_list() -> None:
    assert "mcp.servers must be an array of tables" in _error({"servers": {"name": "a"}})


def test_file_and_environment_overrides(tmp_path: Path) -> None:
    (tmp_path / "agentengine.toml").write_text(
        """
[[mcp.servers]]
name = "docs"
url = "http://127.0.0.1:9000/mcp"

[[mcp.servers]]
name = "time"
command = "mcp-server-time"
"""
    )
    environ = {
        "AGENTENGINE_MCP__SERVERS__DOCS__URL": "http://127.0.0.1:9999/mcp",
        "AGENTENGINE_MCP__SERVERS__TIME__CALL_TIMEOUT": "5",
        "AGENTENGINE_MCP__SERVERS__TIME__ALLOW": '["get_*"]',
    }
    settings = load_settings(cwd=tmp_path, environ=environ)
    plugin = MCPPlugin()
    plugin.agentengine_configure(settings)
    docs, time_server = plugin.servers
    assert docs.url == "http://127.0.0.1:9999/mcp"
    assert time_server.call_timeout == 5.0
    assert time_server.allow == ["get_*"]


def test_whole_list_from_the_environment(tmp_path: Path) -> None:
    environ = {"AGENTENGINE_MCP__SERVERS": '[{name = "t", command = "mcp-server-time"}]'}
    plugin = MCPPlugin()
    plugin.agentengine_configure(load_settings(cwd=tmp_path, environ=environ))
    assert [s.name for s in plugin.servers] == ["t"]


def test_override_of_an_unknown_server_is_an_error(tmp_path: Path) -> None:
    environ = {"AGENTENGINE_MCP__SERVERS__NOPE__URL": "http://x/"}
    with pytest.raises(ConfigError, match="names server 'nope', which is not configured"):
        MCPPlugin().agentengine_configure(load_settings(cwd=tmp_path, environ=environ))


async def test_bad_table_marks_the_plugin_failed_and_the_factory_still_works(
    tmp_path: Path,
) -> None:
    (tmp_path / "agentengine.toml").write_text('[[mcp.servers]]\nname = "x"\n')
    factory = ExecutionEngineFactory(
        plugins=[MCPPlugin()], load_entrypoints=False, config=tmp_path / "agentengine.toml"
    )
    async with factory:
        (info,) = [i for i in factory.plugin_infos if i.name == "mcp"]
        assert info.error is not None
        assert "server 'x': needs 'command'" in info.error
        async with factory.user_execution_engine(UserExecutionContext.for_user("a")):
            pass


def test_templates() -> None:
    ctx = UserExecutionContext.for_user("alice", metadata={"token": "s3cret"})
    template = Template("Bearer {metadata[token]} for {user_id} {{literal}} {env[HOME_X]}")
    assert template.metadata_keys == ["token"]
    assert not template.is_static
    rendered = template.render(ctx, {"HOME_X": "h"})
    assert rendered == "Bearer s3cret for alice {literal} h"
    with pytest.raises(TemplateError, match=r"environment variable 'HOME_X' is not set"):
        template.render(ctx, {})
    with pytest.raises(TemplateError, match=r"has no metadata\['token'\]"):
        Template("{metadata[token]}").render(UserExecutionContext.for_user("bob"), {})
    for bad in ("{user_id.__class__}", "{user_id!r}", "{user_id:>10}", "{0}", "{metadata}"):
        with pytest.raises(ValueError, match="bad template"):
            Template(bad)
    assert Template("plain").is_static


def test_messages_never_show_credentials_of_a_url() -> None:
    (server,) = settings_from(
        {"servers": [{"name": "s", "url": "https://bob:pw@h.example:8443/mcp?token=abc&x=1"}]}
    ).servers
    assert server.target == "https://h.example:8443/mcp?token=...&x=..."
    assert "pw" not in server.target
