"""Tool names as a model's function-calling API accepts them, and patterns in ``tools=``.

The mapping is shared by every framework adapter: it lives in ``agentengine.frameworks.names``
(see its docs); this module keeps the names importable from here.
"""

from __future__ import annotations

from agentengine.frameworks.names import (
    ToolNames,
    is_per_user_pattern,
    match_patterns,
    model_tool_name,
)

__all__ = ["ToolNames", "is_per_user_pattern", "match_patterns", "model_tool_name"]
