"""Agents: async functions that receive a ``RunContext`` and the run's input as keywords."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pydantic import ValidationError

from agentengine.definitions.registry import NamedRegistry
from agentengine.definitions.tools import (
    ToolArgumentError,
    check_arguments,
    fields_validator,
    first_paragraph,
    format_validation_error,
    is_mapping,
    not_an_object,
    signature_model,
)
from agentengine.errors import RegistrationError

if TYPE_CHECKING:
    from agentengine.definitions.run import RunContext

__all__ = ["Agent", "AgentRegistry", "agent", "check_run_input"]


def check_run_input(value: object, what: str = "run input") -> Mapping[str, Any] | None:
    """The one rule for a run's input, shared by the engine and the server: an object (the
    agent's keyword arguments by name) or absent (None). Returns ``value``; raises
    ``ToolArgumentError`` (a ``ValueError``) naming ``what`` and the type otherwise. The
    agent's own schema is checked later, by ``Agent.validate_input``."""
    return None if value is None else check_arguments(value, what)


_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


class Agent:
    """An agent: ``async def fn(run: RunContext, **input) -> output``.

    The input model comes from the parameters after ``run``; ``validate_input`` checks an input
    dict against it (the engine does so before the agent starts).
    """

    def __init__(
        self,
        func: Callable[..., Awaitable[Any]],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(func):
            raise RegistrationError(
                f"@agent needs an async function; {func.__qualname__} is not (use 'async def': "
                "an agent awaits run.think() and run.call_tool() on the event loop; put "
                "blocking work in a plain 'def' @tool, which runs in a worker thread)"
            )
        params = list(inspect.signature(func).parameters.values())
        if not params or params[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise RegistrationError(
                f"agent {func.__qualname__} must take the RunContext as its first parameter: "
                "async def my_agent(run: RunContext, text: str) -> str"
            )
        self.name = name or func.__name__
        if not self.name or self.name != self.name.strip():
            raise RegistrationError(f"an agent needs a non-empty name, got {self.name!r}")
        self.func = func
        self.description = description if description is not None else first_paragraph(func.__doc__)
        self.input_model, _ = signature_model(
            func, f"{self.name}_input", skip_first=True, what=f"agent {self.name!r}"
        )
        self._validate = fields_validator(self.input_model)

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON schema of the agent's input."""
        return self.input_model.model_json_schema()

    def validate_input(self, data: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check an input dict; raise ``ToolArgumentError`` (a ValueError) listing problems."""
        if data is None:
            data = {}
        if type(data) is not dict and not is_mapping(data):  # a call less for a dict
            raise not_an_object(f"input for agent {self.name!r}", data)
        try:
            return self._validate(data)
        except ValidationError as exc:
            raise ToolArgumentError(format_validation_error(f"agent {self.name!r}", exc)) from None

    async def __call__(self, run: RunContext, **kwargs: Any) -> Any:
        return await self.func(run, **kwargs)

    def describe(self) -> dict[str, Any]:
        """Name, description and input schema."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }

    def __repr__(self) -> str:
        return f"<Agent {self.name!r}>"


@overload
def agent(func: _F, /) -> Agent: ...
@overload
def agent(*, name: str | None = None, description: str | None = None) -> Callable[[_F], Agent]: ...
def agent(
    func: _F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Agent | Callable[[_F], Agent]:
    """Make an agent from an async function: ``@agent`` or ``@agent(name="calc")``."""

    def build(f: _F) -> Agent:
        return Agent(f, name=name, description=description)

    return build(func) if func is not None else build


class AgentRegistry(NamedRegistry[Agent]):
    """Agents by name. ``add`` refuses a second agent of the same name, naming both plugins."""

    kind = "agent"

    def add(self, item: Agent | Callable[..., Awaitable[Any]], *, name: str | None = None) -> Agent:
        """Register an agent (or an async function, which is wrapped with ``@agent``)."""
        a = item if isinstance(item, Agent) else Agent(item, name=name)
        return self._insert(a.name, a)
