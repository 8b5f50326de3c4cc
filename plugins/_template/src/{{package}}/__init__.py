"""{{distribution}}: an agentengine plugin.

Adds the tool ``{{tool_name}}`` and the agent ``{{agent_name}}``. agentengine finds the
plugin through the entry point in pyproject.toml (group ``agentengine``).
"""

from __future__ import annotations

from agentengine import AgentRegistry, RunContext, ToolRegistry, agent, hookimpl, tool

__all__ = ["{{class_name}}", "{{agent_name}}_agent", "{{tool_name}}"]


@tool(timeout=5.0)
async def {{tool_name}}(name: str) -> str:
    """Greet someone by name."""
    return "Hello, " + name + "!"


@agent(name="{{agent_name}}")
async def {{agent_name}}_agent(run: RunContext, name: str = "world") -> str:
    """Greet ``name`` with the {{tool_name}} tool."""
    await run.think("greeting " + name)
    return str(await run.call_tool("{{tool_name}}", {"name": name}))


class {{class_name}}:
    """The plugin: registers the tool and the agent (one instance per factory)."""

    name = "{{name}}"

    @hookimpl
    def agentengine_register_tools(self, registry: ToolRegistry) -> None:
        """Add this plugin's tools."""
        registry.add({{tool_name}})

    @hookimpl
    def agentengine_register_agents(self, registry: AgentRegistry) -> None:
        """Add this plugin's agents."""
        registry.add({{agent_name}}_agent)
