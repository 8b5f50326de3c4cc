"""The event protocol: what a user sees of a run.

Six pydantic models discriminated by ``type``. Every event of a run carries the run's ids, the
agent's name and ``seq`` (1, 2, 3 ... per run, no gaps). ``event.model_dump(mode="json")`` (or
``event.to_wire()``) is the wire form; ``parse_event(data)`` reads it back.

The values user code produced (``input``, ``args``, ``result``, ``output``, ``text``, errors) are
made wire-safe and bounded in size when the engine builds the event (``agentengine.wire``), so
``to_wire()``, ``json.dumps(event.to_wire())`` and ``model_dump_json()`` never fail for them.

Invariants the engine guarantees for every run, whatever happens:

* exactly one ``agent_started``, first, and exactly one ``agent_completed``, last;
* each ``tool_executing`` has exactly one ``tool_completed`` with the same ``tool_call_id``;
* an ``agent_error`` (the details of a failure) comes before the terminal event, never after;
* an event only ever reaches its own user.
"""

from __future__ import annotations

import enum
import functools
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from agentengine.wire import wire_text, wire_value

__all__ = [
    "EVENT_TYPES",
    "AgentCompletedEvent",
    "AgentErrorEvent",
    "AgentEvent",
    "AgentStartedEvent",
    "AgentThinkingEvent",
    "BaseEvent",
    "RunStatus",
    "ToolCompletedEvent",
    "ToolExecutingEvent",
    "ToolStatus",
    "parse_event",
    "wire_size",
]


class RunStatus(enum.StrEnum):
    """How a run ended (the ``status`` of ``agent_completed`` and of a ``RunResult``)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class ToolStatus(enum.StrEnum):
    """How a tool call ended (the ``status`` of ``tool_completed``)."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


class BaseEvent(BaseModel):
    """Fields every event carries. ``cursor`` is set by the event sink on delivery: pass it to
    ``factory.events.subscribe(user_id, after=cursor)`` to resume after this event."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")
    # The estimated size in bytes of the event's values, set by the engine when it builds the
    # event; ``wire_size`` adds the fixed ``EVENT_OVERHEAD``. A slot, not a field: it is no part
    # of the event's data. Kept apart from the overhead, the common sizes are small ints,
    # objects Python shares: none is made per event, and reading an old event's size (the
    # in-memory sink does, as the event leaves) touches no memory of its own.
    __slots__ = ("_values_size",)
    if TYPE_CHECKING:
        _values_size: int

    type: str
    run_id: str
    user_id: str
    thread_id: str
    agent: str
    seq: int = Field(ge=1)
    ts: datetime
    cursor: str | None = None

    terminal: ClassVar[bool] = False

    def to_wire(self) -> dict[str, Any]:
        """The JSON-compatible wire form. Never fails: the engine's events hold wire-safe values
        already; an event made otherwise (constructed by hand) has its values made wire-safe
        here (see ``agentengine.wire``)."""
        try:
            return self.model_dump(mode="json", fallback=_json_fallback)
        except Exception:  # values that were not made wire-safe: bytes that are not UTF-8 ...
            return _made_safe(self).model_dump(mode="json", fallback=_json_fallback)


def _json_fallback(value: Any) -> Any:
    return wire_value(value)[0]


#: The fields whose values come from user code, as opposed to the engine's own.
_VALUE_FIELDS = frozenset({"input", "args", "result", "output"})
_TEXT_FIELDS = frozenset({"text", "error", "error_type", "tool"})


def _made_safe(event: _E) -> _E:
    """A copy of ``event`` with every user-produced value made wire-safe (and its size set)."""
    fields = dict(event.__dict__)
    size = 0
    for name, value in fields.items():
        if name in _VALUE_FIELDS:
            fields[name], n = wire_value(value)
            size += n
        elif name in _TEXT_FIELDS and value is not None:
            fields[name], n = wire_text(value)
            size += n
        elif type(value) is str:
            size += len(value) + 8
    return _build(type(event), fields, size)


def wire_size(event: BaseEvent) -> int:
    """The event's estimated size in bytes: its JSON text plus the memory overhead of the event
    object (``EVENT_OVERHEAD``). Known from when the engine built the event; computed (and the
    values made wire-safe for the purpose) for an event made otherwise."""
    try:
        return EVENT_OVERHEAD + event._values_size
    except AttributeError:
        return EVENT_OVERHEAD + values_size(event)


def values_size(event: BaseEvent) -> int:
    """``wire_size`` less ``EVENT_OVERHEAD``: the estimated size of the event's values."""
    try:
        return event._values_size
    except AttributeError:
        size = _made_safe(event)._values_size
        _set_size(event, size)
        return size


class AgentStartedEvent(BaseEvent):
    """The run began. Always the first event of a run (``seq`` 1)."""

    type: Literal["agent_started"] = "agent_started"
    input: dict[str, Any] = Field(default_factory=dict)


class AgentThinkingEvent(BaseEvent):
    """The agent reported progress (``run.think(text)``). ``reasoning`` is true for a model's
    reasoning (``run.think(text, reasoning=True)``: thinking parts of a model-driven agent), as
    opposed to text it says; false by default."""

    type: Literal["agent_thinking"] = "agent_thinking"
    text: str
    step: int = Field(ge=1)
    reasoning: bool = False


class ToolExecutingEvent(BaseEvent):
    """A tool call started; its ``tool_completed`` carries the same ``tool_call_id``."""

    type: Literal["tool_executing"] = "tool_executing"
    tool: str
    tool_call_id: str
    args: dict[str, Any] = Field(default_factory=dict)


class ToolCompletedEvent(BaseEvent):
    """A tool call ended, successfully or not."""

    type: Literal["tool_completed"] = "tool_completed"
    tool: str
    tool_call_id: str
    status: ToolStatus
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0


class AgentErrorEvent(BaseEvent):
    """Details of a failure, sent just before the terminal ``agent_completed``."""

    type: Literal["agent_error"] = "agent_error"
    error: str
    error_type: str


class AgentCompletedEvent(BaseEvent):
    """The run ended. Always the last event of a run, exactly once."""

    type: Literal["agent_completed"] = "agent_completed"
    status: RunStatus
    output: Any = None
    error: str | None = None
    duration_ms: float = 0.0

    terminal: ClassVar[bool] = True


AgentEvent = Annotated[
    AgentStartedEvent
    | AgentThinkingEvent
    | ToolExecutingEvent
    | ToolCompletedEvent
    | AgentErrorEvent
    | AgentCompletedEvent,
    Field(discriminator="type"),
]
"""Any event; pydantic picks the class from ``type``."""

#: The event type names, in the order they usually appear.
EVENT_TYPES: tuple[str, ...] = (
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_error",
    "agent_completed",
)

_ADAPTER: TypeAdapter[AgentEvent] = TypeAdapter(AgentEvent)

_E = TypeVar("_E", bound=BaseEvent)
_new = object.__new__
# BaseModel's own slots (and its __dict__), set through their descriptors: cheaper than
# ``object.__setattr__``, which looks the descriptor up by name first.
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_set_size = BaseEvent.__dict__["_values_size"].__set__

#: What ``wire_size`` counts for an event besides its values: its fixed fields and the memory
#: of the event object (the model, its field dict, the timestamp, the cursor, and the run's
#: share of what its events hold together: input copy, ids; 740 to 820 bytes per event of the
#: demo agents measured with tracemalloc on CPython 3.11, where 512 undercounted by a third),
#: so that byte budgets bound memory, not just JSON text.
EVENT_OVERHEAD = 768


@functools.cache
def _fields_set(cls: type[BaseEvent]) -> set[str]:
    """Every field name of ``cls``: the ``model_fields_set`` of an event built by ``_build``.
    Shared by every event of the class: it already names every field, so pydantic's only
    mutation of it (adding a field name on assignment) never changes it."""
    return set(cls.model_fields)


def _build(cls: type[_E], fields: dict[str, Any], size: int) -> _E:
    """Make an event from trusted, complete field values without validation.

    The engine's hot path: ``model_construct`` costs several times more because it resolves
    defaults field by field. ``fields`` must hold every field, in declaration order (that is
    the order of the wire form), with wire-safe values (``agentengine.wire``); ``size`` is the
    estimated size of the values (``wire_size`` less ``EVENT_OVERHEAD``). Equivalent to
    ``model_construct`` for such input.
    """
    obj = _new(cls)
    _set_dict(obj, fields)
    _set_fields_set(obj, _fields_set(cls))
    _set_extra(obj, None)
    _set_private(obj, None)
    _set_size(obj, size)
    return obj


#: What ``_build`` does, for the engine's emit path to do it without a call per event.
BUILD_PARTS = (_new, _set_dict, _set_fields_set, _set_extra, _set_private, _set_size)


def event_kind(cls: type[_E]) -> tuple[type[_E], str, set[str]]:
    """What the engine's emit path needs of an event class, in one tuple unpacked per event
    (cheaper than a lookup): the class, its ``type`` and its ``_fields_set``."""
    return cls, cls.model_fields["type"].default, _fields_set(cls)


def parse_event(data: dict[str, Any] | str | bytes) -> AgentEvent:
    """Read an event from its wire form (a dict or a JSON document)."""
    if isinstance(data, str | bytes):
        return _ADAPTER.validate_json(data)
    return _ADAPTER.validate_python(data)
