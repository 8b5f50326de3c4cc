"""Every command shown in README.md, docs/writing-plugins.md, docs/testing-plugins.md and the
plugin template's README is one that a test runs as written: most by the first-hour test
(tests/kit/test_first_hour.py), the rest by the tests named in ``ELSEWHERE``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agentengine.cli.scaffold import plugin_names, template_dir
from first_hour_commands import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
_CONSOLE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)

#: Commands run by other tests than the first-hour one, and by which.
ELSEWHERE = {
    "uv run agentengine demo": "tests/core/test_cli.py (test_demo_*) runs `agentengine demo`",
    "uv run pytest": "the test suite itself; in a plugin: the first-hour test's next steps",
    "uv run pytest -q": "tests/docs/test_doc_examples.py runs the testing guide's files so",
}


def _render(text: str) -> str:
    for key, value in plugin_names("acme-weather").items():
        text = text.replace("{{" + key + "}}", value)
    return text


def commands(text: str) -> list[str]:
    """The commands of the console blocks: ``$ `` lines, or every line of a block without
    prompts; trailing ``# comments`` dropped."""
    found = []
    for block in _CONSOLE.findall(text):
        lines = block.splitlines()
        prompted = [line[2:] for line in lines if line.startswith("$ ")]
        shown = prompted or [line for line in lines if line.strip()]
        found.extend(re.sub(r"\s+# .*$", "", line).strip() for line in shown)
    return found


PAGES = {
    "README.md": (ROOT / "README.md").read_text(encoding="utf-8"),
    "docs/writing-plugins.md": (ROOT / "docs/writing-plugins.md").read_text(encoding="utf-8"),
    "docs/testing-plugins.md": (ROOT / "docs/testing-plugins.md").read_text(encoding="utf-8"),
    "the template's README": _render((template_dir() / "README.md").read_text(encoding="utf-8")),
}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_command_in_the_page_is_run_by_a_test(page: str) -> None:
    shown = commands(PAGES[page])
    assert shown, f"{page} shows no command"
    not_run = [c for c in shown if c not in COMMANDS and c not in ELSEWHERE]
    assert not_run == [], f"{page}: commands no test runs as written: {not_run}"


def test_no_doc_shows_a_bare_agentengine_or_pip_command() -> None:
    for page, text in PAGES.items():
        for command in commands(text):
            assert not command.startswith(("agentengine ", "pip ")), (page, command)
