"""``UserExecutionContext``: who a run is for, validated and immutable."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from agentengine.errors import InvalidContextError
from agentengine.ids import new_id

__all__ = ["MAX_CONTEXT_DEPTH", "PLACEHOLDER_IDS", "REFUSED_ID_CATEGORIES", "UserExecutionContext"]

#: How deep ``child()`` may nest before it refuses (a guard against runaway recursion).
MAX_CONTEXT_DEPTH = 10

#: Values that mean "somebody forgot to pass a real id". Compared case-insensitively, stripped.
PLACEHOLDER_IDS = frozenset(
    {
        "registry", "placeholder", "default", "temp", "tmp", "none", "null", "nil", "undefined",
        "test", "demo", "mock", "fake", "example", "sample", "template", "xxx", "0", "1",
        "unknown", "anonymous_placeholder", "changeme", "todo",
    }
)  # fmt: skip

_MAX_ID_LENGTH = 256

#: Unicode general categories an id may not contain, and why: each either does not show, shows
#: as something else, or changes how the text around it is shown, so two different ids could
#: look the same in a log line or on a page. Spaces other than U+0020 (category Zs) are refused
#: too: they look like a plain space.
REFUSED_ID_CATEGORIES = MappingProxyType(
    {
        "Cc": "a control character",
        "Cf": "a format character: invisible, or changing the direction of the text",
        "Cs": "a lone surrogate, which is not valid Unicode text",
        "Co": "a private-use character",
        "Cn": "an unassigned code point",
        "Zl": "a line separator",
        "Zp": "a paragraph separator",
        "Zs": "a space other than U+0020 SPACE",
    }
)
_CATEGORY_LABELS = {
    "Cc": "<control>",
    "Cs": "<surrogate>",
    "Co": "<private use>",
    "Cn": "<unassigned>",
}


def _check_id(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidContextError(
            f"{field} must be a string, got {type(value).__name__}; pass the real {field}"
        )
    stripped = value.strip()
    if not stripped:
        raise InvalidContextError(f"{field} must not be empty or blank; pass the real {field}")
    if stripped != value:
        raise InvalidContextError(
            f"{field} {value!r} has leading or trailing whitespace; pass it stripped"
        )
    if len(value) > _MAX_ID_LENGTH:
        raise InvalidContextError(f"{field} is longer than {_MAX_ID_LENGTH} characters")
    if value.lower() in PLACEHOLDER_IDS:
        raise InvalidContextError(
            f"{field} {value!r} is a placeholder value, not a real id; pass the id of the actual "
            f"{field.removesuffix('_id')} (placeholders are refused so that runs of different "
            "users can never share one)"
        )
    # Ids are nearly always ASCII (uuids, emails, IdP subjects): printable ASCII is NFC and has
    # nothing to refuse, and this check costs two C calls on the run path.
    if not (value.isascii() and value.isprintable()):
        _check_unicode_id(field, value)
    return value


def _check_unicode_id(field: str, value: str) -> None:
    """Refuse characters that do not show as themselves, and text not in NFC.

    Non-NFC text is refused rather than normalised: two byte-wise different ids (say, from an
    identity provider that does not normalise) would otherwise become one id, and so one user's
    runs and events. The error gives the NFC form to use instead.
    """
    for position, char in enumerate(value):
        category = unicodedata.category(char)
        if category in REFUSED_ID_CATEGORIES and not (category == "Zs" and char == " "):
            name = unicodedata.name(char, None) or _CATEGORY_LABELS.get(category, "")
            raise InvalidContextError(
                f"{field} {value!r} contains U+{ord(char):04X} {name} at position {position} "
                f"(category {category}, {REFUSED_ID_CATEGORIES[category]}); ids must be "
                "printable text without control, format, private-use or unassigned characters "
                "or unusual spaces, so that two different ids never look alike"
            )
    if not unicodedata.is_normalized("NFC", value):
        raise InvalidContextError(
            f"{field} {value!a} is not in Unicode normalization form NFC; pass "
            f"{unicodedata.normalize('NFC', value)!a} (unicodedata.normalize('NFC', id)): ids "
            "are compared code point by code point, so they are refused rather than normalised "
            "silently, which could merge two different ids into one"
        )


class UserExecutionContext(BaseModel):
    """Identifies one user's request: the user, the conversation thread, the run, the request.

    Frozen: a context cannot be changed after creation, so it can be shared safely. Live resources
    (database sessions, clients) never go in here; they come from request-scope extensions.

    Every id (``user_id``, ``thread_id``, ``run_id``, ``request_id``, ``parent_request_id``)
    is checked: 1 to 256 characters, no surrounding whitespace, printable NFC text (see
    ``REFUSED_ID_CATEGORIES``), and not a placeholder: ``PLACEHOLDER_IDS`` (``default``,
    ``test``, ``demo``, ``none``, ``null``, ``0``, ... compared case-insensitively; the full
    list is in docs/architecture.md, "Ids"). A bad id raises ``InvalidContextError`` naming
    the field and what to pass instead.

    >>> ctx = UserExecutionContext.for_user("alice")
    >>> ctx.user_id
    'alice'
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    user_id: str
    thread_id: str = Field(default_factory=lambda: new_id("thread"))
    run_id: str = Field(default_factory=lambda: new_id("run"))
    request_id: str = Field(default_factory=lambda: new_id("req"))
    metadata: Mapping[str, Any] = Field(default_factory=lambda: MappingProxyType({}))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    parent_request_id: str | None = None
    depth: int = Field(default=0, ge=0, le=MAX_CONTEXT_DEPTH)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except InvalidContextError:
            raise
        except ValueError as exc:  # pydantic's ValidationError: re-raise as our error type
            errors = exc.errors() if isinstance(exc, ValidationError) else []
            own = [e["ctx"]["error"] for e in errors if "ctx" in e and "error" in e["ctx"]]
            if len(errors) == 1 and own and isinstance(own[0], InvalidContextError):
                # One of our own checks: its message says it all, without pydantic's wrapping.
                raise InvalidContextError(str(own[0])) from exc
            raise InvalidContextError(f"invalid UserExecutionContext: {exc}") from exc

    @field_validator("user_id", "thread_id", "run_id", "request_id", mode="before")
    @classmethod
    def _validate_id(cls, value: object, info: Any) -> str:
        return _check_id(str(info.field_name), value)

    @field_validator("parent_request_id", mode="before")
    @classmethod
    def _validate_parent(cls, value: object) -> str | None:
        return None if value is None else _check_id("parent_request_id", value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _check_metadata(cls, value: object) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise InvalidContextError(f"metadata must be a mapping, got {type(value).__name__}")
        return value

    @field_validator("metadata", mode="after")
    @classmethod
    def _freeze_metadata(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        # A read-only view of a private copy: the caller's dict can change, ours cannot.
        return MappingProxyType(dict(value))

    @field_serializer("metadata")
    def _serialize_metadata(self, value: Mapping[str, Any]) -> dict[str, Any]:
        return dict(value)

    @classmethod
    def for_user(cls, user_id: str, **fields: Any) -> UserExecutionContext:
        """A context for ``user_id`` with fresh thread, run and request ids."""
        return cls(user_id=user_id, **fields)

    def child(self, operation: str, **metadata: Any) -> UserExecutionContext:
        """A context for a sub-operation: same user, thread and run, a new request id.

        Raises ``InvalidContextError`` beyond ``MAX_CONTEXT_DEPTH`` levels of nesting.
        """
        if not operation or not operation.strip():
            raise InvalidContextError("child() needs a non-empty operation name")
        if self.depth + 1 > MAX_CONTEXT_DEPTH:
            raise InvalidContextError(
                f"context nesting is deeper than {MAX_CONTEXT_DEPTH} levels "
                f"(operation {operation!r}); this usually means unbounded recursion"
            )
        merged = {**self.metadata, **metadata, "operation": operation}
        return UserExecutionContext(
            user_id=self.user_id,
            thread_id=self.thread_id,
            run_id=self.run_id,
            metadata=merged,
            parent_request_id=self.request_id,
            depth=self.depth + 1,
        )

    def with_run(self, run_id: str | None = None) -> UserExecutionContext:
        """The same user and thread with a new run id (and request id)."""
        return UserExecutionContext(
            user_id=self.user_id,
            thread_id=self.thread_id,
            run_id=run_id or new_id("run"),
            metadata=self.metadata,
            parent_request_id=self.parent_request_id,
            depth=self.depth,
        )
