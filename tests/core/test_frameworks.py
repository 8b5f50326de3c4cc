"""agentengine.frameworks: the framework-neutral pieces every adapter shares (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest
from agentengine import RegistrationError
from agentengine.frameworks import (
    ChatMessage,
    ThinkingBatcher,
    check_patterns,
    check_registered,
    check_window,
    json_output,
    model_tool_name,
)
from pydantic import BaseModel, ValidationError


class Thoughts:
    """Records what ``run.think`` was given (the one method the batcher uses)."""

    def __init__(self) -> None:
        self.said: list[tuple[str, bool]] = []

    async def think(self, text: str, *, reasoning: bool = False) -> None:
        self.said.append((text, reasoning))


async def test_the_batcher_gathers_a_part_and_splits_text_from_reasoning() -> None:
    run: Any = Thoughts()
    batcher = ThinkingBatcher(run, 60)
    for piece, reasoning in [("I ", True), ("think", True), ("Hel", False), ("", False)]:
        await batcher.add(piece, reasoning)
    await batcher.add("lo", reasoning=False)
    assert run.said == [("I think", True)]  # the text part is still open
    await batcher.flush()
    await batcher.flush()  # nothing left: no empty event
    assert run.said == [("I think", True), ("Hello", False)]


async def test_a_zero_window_emits_every_piece() -> None:
    run: Any = Thoughts()
    batcher = ThinkingBatcher(run, 0)
    await batcher.add("a", reasoning=False)
    await batcher.add("b", reasoning=False)
    assert run.said == [("a", False), ("b", False)]


@pytest.mark.parametrize("window", [-1, float("nan"), "1", True])
def test_a_bad_window_is_refused_naming_the_agent(window: Any) -> None:
    with pytest.raises(RegistrationError, match="agent 'a': thinking_window must be >= 0"):
        check_window("a", window)
    assert check_window("a", 0) == 0.0


def test_patterns_must_be_names() -> None:
    assert check_patterns("a", ["x", "time.*"]) == ("x", "time.*")
    with pytest.raises(RegistrationError, match=r"tools= holds '  ', not a tool name"):
        check_patterns("a", ["x", "  "])
    with pytest.raises(RegistrationError, match=r"tools= holds 3"):
        check_patterns("a", [3])


def test_registered_patterns_must_match_but_dotted_ones_may_wait_for_the_user() -> None:
    check_registered("a", ["fore*", "time.*"], ["forecast"])
    with pytest.raises(RegistrationError) as info:
        check_registered("a", ["forcast", "x*", "time.*"], ["forecast", "add"])
    message = str(info.value)
    assert "'forcast', 'x*' match no registered tool" in message
    assert "registered: add, forecast" in message
    assert "time" not in message.split("(", maxsplit=1)[0]


class Answer(BaseModel):
    city: str


def test_output_is_json_data_and_history_is_checked() -> None:
    assert json_output(Answer(city="Paris")) == {"city": "Paris"}
    assert json_output({"when": (1, 2)}) == {"when": [1, 2]}
    assert json_output(object()).startswith("<object object")
    assert ChatMessage(role="user", content="hi").content == "hi"
    with pytest.raises(ValidationError):
        ChatMessage(role="bot", content="hi")  # type: ignore[arg-type]


def test_the_plugin_modules_keep_the_shared_names() -> None:
    from agentengine.frameworks import UnknownToolsError
    from agentengine_pydantic_ai import model_tool_name as plugin_name
    from agentengine_pydantic_ai.tools import UnknownToolsError as plugin_error

    assert plugin_name is model_tool_name
    assert plugin_error is UnknownToolsError


def test_a_relayed_error_is_described_as_the_framework_tool_failed() -> None:
    from agentengine.errors import describe_error
    from agentengine.frameworks import RelayedError

    original = ValueError("cannot handle 3")
    relayed = RelayedError(describe_error(original), original)
    assert describe_error(relayed) == "ValueError: cannot handle 3"
    assert relayed.original is original


def test_every_public_name_resolves() -> None:
    import agentengine.frameworks as frameworks
    import agentengine_openai_agents

    for module in (frameworks, agentengine_openai_agents):
        for name in module.__all__:
            assert getattr(module, name) is not None, name


@pytest.mark.parametrize(
    ("package", "plugin", "framework"),
    [
        ("agentengine_openai_agents", "OpenAIAgentsPlugin", "agents"),
        ("agentengine_pydantic_ai", "PydanticAIPlugin", "pydantic_ai"),
    ],
)
def test_loading_an_adapters_entry_point_imports_no_framework(
    package: str, plugin: str, framework: str
) -> None:
    # Every agentengine command loads every entry point: the framework (and pydantic) are
    # imported only once a configuration has the adapter's table or an agent is adapted.
    import subprocess
    import sys

    code = (
        f"import sys, {package}; {package}.{plugin}().agentengine_configure"
        f"; print({framework!r} in sys.modules, 'pydantic' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"]
