"""Deprecated alias of ``agentengine.log``, kept so that existing imports keep working.

The module was renamed because ``agentengine.logging`` shadowed the standard library's
``logging`` in editors and in ``from . import logging``. Import ``agentengine.log`` instead
(``agentengine.log.configure``, ``agentengine.log.redact_secrets``).
"""

from __future__ import annotations

import warnings

from agentengine.log import (
    AGENT_VAR,
    REDACTED,
    RUN_ID_VAR,
    USER_ID_VAR,
    configure,
    get_logger,
    redact_secrets,
)

__all__ = [
    "AGENT_VAR",
    "REDACTED",
    "RUN_ID_VAR",
    "USER_ID_VAR",
    "configure",
    "get_logger",
    "redact_secrets",
]

warnings.warn(
    "agentengine.logging is deprecated and will be removed; import agentengine.log instead "
    "(agentengine.log.configure, agentengine.log.redact_secrets)",
    DeprecationWarning,
    stacklevel=2,
)
