"""Validating a user's migration table with pydantic (imported only when there is one)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from agentengine_migrate.errors import SpecError

__all__ = ["SpecModel", "validate_table"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED_RE = re.compile(rf"{_IDENT}(\.{_IDENT})*")
_TARGET_RE = re.compile(rf"{_IDENT}(\.{_IDENT})*(:{_IDENT})?")
_QUALNAME_RE = re.compile(rf"{_IDENT}(\.{_IDENT})*:{_IDENT}")
_CALL_RE = re.compile(rf"{_IDENT}(\.{_IDENT})*:{_IDENT}\.{_IDENT}")


def _matching(pattern: re.Pattern[str], expected: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"expected {expected}, got {value!r}")
        return value

    return AfterValidator(check)


DottedPath = Annotated[str, _matching(_DOTTED_RE, "a dotted module path like 'pkg.module'")]
Identifier = Annotated[str, _matching(re.compile(_IDENT), "a Python identifier")]
TargetRef = Annotated[
    str, _matching(_TARGET_RE, "'module' or 'module:Name', like 'pkg.new:NewName'")
]
QualName = Annotated[str, _matching(_QUALNAME_RE, "'module:Name', like 'pkg.old:OldName'")]
CallRef = Annotated[
    str,
    _matching(_CALL_RE, "'module:Name.attribute', like 'pkg.new:NewName.create_from_legacy'"),
]


class ModuleModel(BaseModel):
    """``[modules."old.module"]``: where the names of one deprecated module went."""

    model_config = ConfigDict(extra="forbid")

    replacement: DottedPath | None = None
    message: str | None = None
    names: dict[Identifier, TargetRef] = Field(default_factory=dict)


class SpecModel(BaseModel):
    """The whole ``[tool.agentengine.migrate]`` table."""

    model_config = ConfigDict(extra="forbid")

    presets: list[str] | None = None
    allow: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    select: list[str] = Field(default_factory=list)
    ignore: list[str] = Field(default_factory=list)
    modules: dict[DottedPath, ModuleModel] = Field(default_factory=dict)
    calls: dict[QualName, CallRef] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _calls_follow_their_replacement(self) -> SpecModel:
        # A call rewrite keeps the local name, which now binds the replacement: the new
        # call must be an attribute of exactly that replacement.
        for old, new in self.calls.items():
            module, _, name = old.partition(":")
            rule = self.modules.get(module)
            target: str | None = None
            if rule is not None:
                target = rule.names.get(name) or (
                    f"{rule.replacement}:{name}" if rule.replacement else None
                )
            if target is not None and ":" not in target:
                target = f"{target}:{name}"
            owner = new.rpartition(".")[0]
            if target is not None and owner != target:
                raise ValueError(
                    f"calls.{old!r}: the new call {new!r} must be an attribute of {target!r}, "
                    f"the replacement of {old!r} (for example '{target}.create_from_legacy')"
                )
        return self


def _where(prefix: str, loc: tuple[int | str, ...]) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        text = str(item)
        if "[" in text:  # pydantic appends validator names like "[key]"; keep the key only
            continue
        parts.append(f'"{text}"' if "." in text or ":" in text else text)
    return ".".join(parts) or "<top level>"


def validate_table(table: Any, *, prefix: str, source: str) -> dict[str, Any]:
    """Validate a user table; return it as plain data or raise ``SpecError`` naming the key."""
    if not isinstance(table, dict):
        raise SpecError(f"{source}: {prefix or 'the spec'} must be a table, got {table!r}")
    try:
        model = SpecModel.model_validate(table)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = _where(prefix, error["loc"])
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                allowed = (
                    "presets, allow, exclude, select, ignore, modules, calls"
                    if len(error["loc"]) == 1
                    else "replacement, message, names"
                )
                message = f"unknown key; expected one of: {allowed}"
            elif message.startswith("Value error, "):
                message = message.removeprefix("Value error, ")
            lines.append(f"  {where}: {message}")
        raise SpecError(f"invalid migration spec in {source}:\n" + "\n".join(lines)) from None
    return model.model_dump(exclude_none=True, exclude_unset=True)
