"""Deprecated alias of ``agentengine.log``, kept so that existing imports keep working.

The module was renamed because ``agentengine.logging`` shadowed the standard library's
``logging`` in editors and in ``from . import logging``. Import ``agentengine.log`` instead
(``agentengine.log.configure``, ``agentengine.log.redact_secrets``).
"""

from __future__ import annotations

import warnings

from agentengine import log
from agentengine.log import *  # noqa: F403 - the same names, from their new home

__all__ = log.__all__

warnings.warn(
    "agentengine.logging is deprecated and will be removed; import agentengine.log instead "
    "(agentengine.log.configure, agentengine.log.redact_secrets)",
    DeprecationWarning,
    stacklevel=2,
)
