"""Contexts, tools and agents: validation and schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agentengine import (
    InvalidContextError,
    RegistrationError,
    RunContext,
    ToolArgumentError,
    UserExecutionContext,
    agent,
    tool,
)
from agentengine.context import MAX_CONTEXT_DEPTH, PLACEHOLDER_IDS
from agentengine.definitions.tools import fields_validator
from hypothesis import given, strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError, create_model, model_validator

REQUIRED_PLACEHOLDERS = [
    "registry",
    "placeholder",
    "default",
    "temp",
    "none",
    "null",
    "undefined",
    "test",
    "demo",
    "mock",
    "fake",
    "example",
    "sample",
    "template",
    "xxx",
    "0",
    "1",
]


def test_contract_examples() -> None:
    ctx = UserExecutionContext(user_id="alice", thread_id="t-1", run_id="r-1")
    assert ctx.request_id.startswith("req-")
    generated = UserExecutionContext.for_user("alice")
    assert generated.thread_id and generated.run_id and generated.request_id
    child = ctx.child("summarise")
    assert child.request_id != ctx.request_id
    assert child.parent_request_id == ctx.request_id
    assert child.depth == ctx.depth + 1
    assert (child.user_id, child.thread_id, child.run_id) == ("alice", "t-1", "r-1")
    with pytest.raises(ValidationError):
        ctx.user_id = "bob"  # type: ignore[misc]
    with pytest.raises(InvalidContextError):
        UserExecutionContext(user_id="", thread_id="t", run_id="r")
    with pytest.raises(InvalidContextError, match="placeholder"):
        UserExecutionContext(user_id="registry", thread_id="t", run_id="r")
    assert issubclass(InvalidContextError, ValueError)


@pytest.mark.parametrize("value", REQUIRED_PLACEHOLDERS)
@pytest.mark.parametrize("field", ["user_id", "thread_id", "run_id", "request_id"])
def test_every_placeholder_is_refused_in_every_id(field: str, value: str) -> None:
    fields = {"user_id": "alice", "thread_id": "t-1", "run_id": "r-1", field: value}
    with pytest.raises(InvalidContextError, match=f"{field} .*placeholder"):
        UserExecutionContext(**fields)


@given(st.sampled_from(REQUIRED_PLACEHOLDERS), st.data())
def test_placeholders_are_case_insensitive(value: str, data: st.DataObject) -> None:
    mixed = "".join(c.upper() if data.draw(st.booleans()) else c.lower() for c in value)
    with pytest.raises(InvalidContextError):
        UserExecutionContext.for_user(mixed)


@pytest.mark.parametrize("bad", ["", "   ", " alice", "alice\n", "a\x00b", 42, None])
def test_blank_padded_or_non_string_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidContextError):
        UserExecutionContext(user_id=bad, thread_id="t", run_id="r")  # type: ignore[arg-type]


def test_required_placeholders_are_all_listed() -> None:
    assert set(REQUIRED_PLACEHOLDERS) <= PLACEHOLDER_IDS


def test_metadata_is_read_only_and_copied() -> None:
    source = {"plan": "pro"}
    ctx = UserExecutionContext.for_user("alice", metadata=source)
    source["plan"] = "free"
    assert ctx.metadata["plan"] == "pro"
    with pytest.raises(TypeError):
        ctx.metadata["plan"] = "hacked"  # type: ignore[index]
    assert ctx.model_dump()["metadata"] == {"plan": "pro"}


def test_child_depth_limit() -> None:
    ctx = UserExecutionContext.for_user("alice")
    for _ in range(MAX_CONTEXT_DEPTH):
        ctx = ctx.child("deeper")
    assert ctx.depth == 10
    with pytest.raises(InvalidContextError, match="deeper than 10"):
        ctx.child("too deep")


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(InvalidContextError, match="db_session"):
        UserExecutionContext(user_id="alice", db_session=object())  # type: ignore[call-arg]


def test_tool_from_signature() -> None:
    @tool(timeout=5.0)
    async def add(a: int, b: int = 2) -> int:
        """Add two integers.

        More details that are not part of the description.
        """
        return a + b

    assert add.name == "add" and add.timeout == 5.0
    assert add.description == "Add two integers."
    schema = add.input_schema
    assert schema["required"] == ["a"]
    assert schema["properties"]["a"]["type"] == "integer"
    assert add.validate_args({"a": "3"}) == {"a": 3, "b": 2}
    with pytest.raises(ToolArgumentError, match=r"a: Input should be a valid integer.*c: Extra"):
        add.validate_args({"a": "x", "c": 1})


def test_tool_with_run_context_parameter_excludes_it_from_schema() -> None:
    @tool
    async def whoami(run: RunContext, shout: bool = False) -> str:
        """Who runs this."""
        return run.user_id

    assert list(whoami.input_schema["properties"]) == ["shout"]


def test_bad_tool_and_agent_definitions_are_refused() -> None:
    def generator_tool(a: int) -> Iterator[int]:
        yield a

    with pytest.raises(RegistrationError, match="is a generator"):
        tool(generator_tool)  # plain functions are accepted (see test_sync_tools.py)

    async def star(*args: int) -> int:
        return 0

    with pytest.raises(RegistrationError, match="named, annotated parameter"):
        tool(star)

    async def fine(a: int) -> int:
        return a

    with pytest.raises(RegistrationError, match="timeout must be positive"):
        tool(timeout=0)(fine)

    async def no_run() -> None:
        return None

    with pytest.raises(RegistrationError, match="RunContext as its first parameter"):
        agent(no_run)


def test_agent_input_validation() -> None:
    @agent(name="greet")
    async def greet(run: RunContext, name: str, times: int = 1) -> str:
        """Greet someone."""
        return name * times

    assert greet.description == "Greet someone."
    assert greet.validate_input({"name": "x"}) == {"name": "x", "times": 1}
    with pytest.raises(ToolArgumentError, match="name: Field required"):
        greet.validate_input({})
    with pytest.raises(ToolArgumentError, match="must be an object"):
        greet.validate_input(["x"])  # type: ignore[arg-type]


class _Point(BaseModel):
    x: int
    y: int = 0


class _Node(BaseModel):
    label: str
    children: list[_Node] = []


class _Ordered(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: int
    high: int

    @model_validator(mode="after")
    def _check(self) -> _Ordered:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


_VALIDATOR_CASES: list[tuple[type[BaseModel], dict[str, object]]] = [
    (
        create_model(
            "flat", __config__=ConfigDict(extra="forbid"), a=(int, ...), b=(str, "d"), c=(float, 1)
        ),
        {"a": "3", "c": "2.5"},
    ),
    (create_model("flat", __config__=ConfigDict(extra="forbid"), a=(int, ...)), {"a": 1, "z": 1}),
    (create_model("flat", __config__=ConfigDict(extra="forbid"), a=(int, ...)), {"a": "x"}),
    (create_model("flat", __config__=ConfigDict(extra="forbid"), a=(int, ...)), {}),
    (create_model("nested", p=(_Point, ...), ps=(list[_Point], [])), {"p": {"x": "1"}}),
    (create_model("nested", p=(_Point, ...)), {"p": {"y": 2}}),
    (create_model("recursive", n=(_Node, ...)), {"n": {"label": "a", "children": [{"label": 1}]}}),
    (create_model("recursive", n=(_Node, ...)), {"n": {"label": "a", "children": [{}]}}),
    (_Ordered, {"low": 1, "high": 2}),
    (_Ordered, {"low": 3, "high": 2}),
]


@pytest.mark.parametrize(("model", "data"), _VALIDATOR_CASES)
def test_fields_validator_agrees_with_the_model(
    model: type[BaseModel], data: dict[str, object]
) -> None:
    """The fast validator (no model instance) accepts, coerces, defaults and refuses exactly
    like the model: same values, same error list."""
    validate = fields_validator(model)
    expected: object
    try:
        expected = dict(model.model_validate(data))
    except ValidationError as exc:
        expected = exc.errors(include_url=False, include_context=False)
        with pytest.raises(ValidationError) as caught:
            validate(data)
        got: object = caught.value.errors(include_url=False, include_context=False)
    else:
        got = validate(data)
    assert got == expected


def test_fields_validator_runs_model_validators() -> None:
    with pytest.raises(ValidationError, match="low must not exceed high"):
        fields_validator(_Ordered)({"low": 3, "high": 2})


@pytest.mark.parametrize("bad", [["x"], "text", 3, 1.5, True, b"raw", ("a",)])
async def test_one_rule_for_inputs_and_arguments_with_one_message(bad: Any) -> None:
    """The engine, ``Agent.validate_input``, ``Tool.validate_args`` and the public
    ``check_run_input`` / ``check_arguments`` (the server's and plugins' check) refuse a
    non-object the same way, in the same words."""
    from agentengine import (
        ExecutionEngineFactory,
        Settings,
        UserExecutionContext,
        check_arguments,
        check_run_input,
        hookimpl,
        tool,
    )

    @agent(name="greet")
    async def greet(run: RunContext, name: str = "x") -> str:
        return await run.call_tool("shout", bad)

    @tool(name="shout")
    async def shout(text: str = "") -> str:
        return text.upper()

    kind = type(bad).__name__
    expected = f"input for agent 'greet' must be an object, got {kind}; pass the arguments by name"
    for refuse in (
        lambda: greet.validate_input(bad),
        lambda: check_run_input(bad, "input for agent 'greet'"),
    ):
        with pytest.raises(ToolArgumentError) as caught:
            refuse()
        assert str(caught.value).startswith(expected)
    with pytest.raises(ToolArgumentError) as caught:
        check_arguments(bad, "arguments for tool 'shout'")
    tool_message = str(caught.value)
    assert tool_message.startswith(f"arguments for tool 'shout' must be an object, got {kind}")
    with pytest.raises(ToolArgumentError) as caught:
        shout.validate_args(bad)
    assert str(caught.value) == tool_message
    assert check_run_input(None) is None
    assert check_run_input({"a": 1}) == {"a": 1}

    class Plugin:
        name = "rule"

        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            registry.add(greet)

        @hookimpl
        def agentengine_register_tools(self, registry: Any) -> None:
            registry.add(shout)

    factory = ExecutionEngineFactory(
        plugins=[Plugin()], load_entrypoints=False, config=Settings(), environ={}
    )
    try:
        async with factory.user_execution_engine(UserExecutionContext.for_user("u1")) as engine:
            refused = await engine.execute_agent("greet", bad)
            called = await engine.execute_agent("greet", {})
    finally:
        await factory.shutdown()
    assert refused.status == "failed" and refused.error is not None
    assert refused.error.startswith(f"ToolArgumentError: {expected}")
    completed = [e for e in called.events if e.type == "tool_completed"]
    assert completed[0].error == tool_message
