"""``agentengine new-plugin NAME``: render the plugin template into a new distribution.

The template is ``plugins/_template`` of the agentengine repository (shipped inside the
package as ``agentengine/_plugin_template``). Its file contents and paths use these tokens,
all derived from NAME (for NAME ``weather-alerts``):

``{{name}}``          ``weather-alerts``        entry-point and plugin name
``{{distribution}}``  ``agentengine-weather-alerts``
``{{package}}``       ``agentengine_weather_alerts``   import package
``{{class_name}}``    ``WeatherAlertsPlugin``
``{{agent_name}}``    ``weather_alerts``        the example agent
``{{tool_name}}``     ``weather_alerts_greet``  the example tool
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from agentengine.errors import AgentEngineError

__all__ = ["plugin_names", "render_plugin", "template_dir"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
_RESERVED = {"agentengine", "core", "template", "request_scope", "request-scope", "demo", "legacy"}
_BINARY_SUFFIXES = {".png", ".jpg", ".ico", ".gif"}


def plugin_names(name: str) -> dict[str, str]:
    """The names derived from ``name``; raises ``AgentEngineError`` saying what to change."""
    if name.startswith(("agentengine-", "agentengine_")):
        short = name.split("agentengine", 1)[1][1:]
        raise AgentEngineError(
            f"give the plugin's short name ({short!r}): the distribution is named "
            f"agentengine-{short} and the package agentengine_{short.replace('-', '_')} "
            "automatically"
        )
    if not _NAME.match(name):
        raise AgentEngineError(
            f"plugin name {name!r} is not usable: use lowercase letters and digits, words "
            "separated by '-' or '_', starting with a letter (for example 'weather-alerts')"
        )
    ident = name.replace("-", "_")
    if name in _RESERVED or keyword.iskeyword(ident):
        raise AgentEngineError(f"plugin name {name!r} is reserved; choose another name")
    return {
        "name": name,
        "distribution": f"agentengine-{name.replace('_', '-')}",
        "package": f"agentengine_{ident}",
        "class_name": "".join(part.capitalize() for part in ident.split("_")) + "Plugin",
        "agent_name": ident,
        "tool_name": f"{ident}_greet",
    }


def template_dir() -> Path:
    """Where the template is: inside the installed package, or (in a development checkout
    of agentengine) the repository's ``plugins/_template``."""
    package = Path(__file__).resolve().parents[1]  # agentengine/, this module is in cli/
    shipped = package / "_plugin_template"
    if shipped.is_dir():
        return shipped
    checkout = package.parents[2] / "plugins" / "_template"
    if checkout.is_dir():
        return checkout
    raise AgentEngineError(
        "the plugin template is missing from this installation of agentengine-core; "
        "reinstall it (pip install --force-reinstall agentengine-core)"
    )


def _render(text: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def render_plugin(name: str, directory: str | Path = ".") -> Path:
    """Render the template as ``directory/name``; return that path.

    Refuses (``AgentEngineError``) a bad name or a target that exists and is not empty, and
    writes nothing in that case.
    """
    names = plugin_names(name)
    source = template_dir()
    target = Path(directory) / name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AgentEngineError(
            f"{target} already exists and is not empty; choose another --dir or remove it"
        )
    files = sorted(
        p
        for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    rendered: list[tuple[Path, bytes]] = []
    for path in files:
        relative = _render(path.relative_to(source).as_posix(), names)
        data = path.read_bytes()
        if path.suffix not in _BINARY_SUFFIXES:
            text = _render(data.decode("utf-8"), names)
            leftover = re.search(r"\{\{\s*\w+\s*\}\}", text)
            if leftover:
                raise AgentEngineError(
                    f"template file {path} uses the unknown token {leftover.group(0)}; known "
                    f"tokens: {', '.join('{{' + k + '}}' for k in names)}"
                )
            data = text.encode("utf-8")
        rendered.append((target / relative, data))
    for path, data in rendered:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return target
