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

and two that depend on where agentengine-core comes from (see ``core_source``):

``{{core_requirement}}``  ``agentengine-core>=0.1.0`` (the running core's version)
``{{core_source}}``       a ``[tool.uv.sources]`` table taking agentengine-core from the
                          checkout (or local file) it was installed from, or nothing when it
                          came from a package index
"""

from __future__ import annotations

import json
import keyword
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from agentengine.errors import AgentEngineError

__all__ = ["core_source", "plugin_names", "render_plugin", "template_dir"]

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


def _checkout_core() -> Path | None:
    """The ``core/`` folder of the development checkout this module runs from, if any."""
    core = Path(__file__).resolve().parents[3]  # core/src/agentengine/cli/scaffold.py
    if (core / "pyproject.toml").is_file() and (core.parent / "plugins" / "_template").is_dir():
        return core
    return None


def _installed_from() -> Path | None:
    """Where the installed agentengine-core came from, when that is a local folder or file
    (``pip install ./core``, a built wheel): PEP 610's ``direct_url.json``."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        raw = distribution("agentengine-core").read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    if not raw:
        return None  # installed from a package index
    try:
        url = urlparse(json.loads(raw)["url"])
    except (ValueError, KeyError, TypeError):
        return None
    if url.scheme != "file":
        return None
    path = Path(unquote(url.path))
    return path if path.exists() else None


def core_source(target: str | Path) -> Path | None:
    """Where a plugin rendered at ``target`` should take agentengine-core from: the checkout
    this agentengine runs from, or the local folder or wheel it was installed from. ``None``
    when it came from a package index, or when ``target`` is inside the checkout's workspace
    (whose own ``[tool.uv.sources]`` apply)."""
    checkout = _checkout_core()
    if checkout is not None:
        try:
            Path(target).resolve().relative_to(checkout.parent)
        except ValueError:
            return checkout
        return None
    return _installed_from()


def _source_table(source: Path | None, target: Path) -> str:
    if source is None:
        return ""
    where = target.resolve()
    shown = source.as_posix()
    common = os.path.commonpath([where, source])
    if len(Path(common).parts) > 2:  # near each other (~/src/x and ~/src/agentengine): relative
        shown = Path(os.path.relpath(source, where)).as_posix()
    editable = ", editable = true" if source.is_dir() else ""
    return (
        "# agentengine-core is not on the package index yet: take it from this local copy.\n"
        "# Remove this table once agentengine-core is published (uv sync then gets it from the\n"
        "# index, as it does for any other dependency).\n"
        "[tool.uv.sources]\n"
        f'agentengine-core = {{ path = "{shown}"{editable} }}\n'
    )


def _core_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentengine-core")
    except PackageNotFoundError:  # pragma: no cover - this module is part of it
        return "0.1.0"


def _render(text: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def render_plugin(name: str, directory: str | Path = ".") -> Path:
    """Render the template as ``directory/name``; return that path.

    The plugin depends on ``agentengine-core>=`` this version; when this agentengine-core is
    not from a package index (a checkout, a local wheel), the plugin's pyproject.toml takes it
    from there (``core_source``), so that ``uv sync`` in the plugin works as it is.

    Refuses (``AgentEngineError``) a bad name or a target that exists and is not empty, and
    writes nothing in that case.
    """
    target = Path(directory) / name
    names = {
        **plugin_names(name),
        "core_requirement": f"agentengine-core>={_core_version()}",
        "core_source": _source_table(core_source(target), target),
    }
    source = template_dir()
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
