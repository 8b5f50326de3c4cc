"""The migrator's errors, in a module of their own so that the spec reader and the spec's
pydantic validation (imported only for a user's own table) both import them without a cycle."""

from __future__ import annotations

from agentengine import ConfigError

__all__ = ["SpecError"]


class SpecError(ConfigError):
    """The migration spec is invalid; the message names the key and what is expected.

    A ``ConfigError`` (so also a ``ValueError``) like every configuration error of agentengine.
    """
