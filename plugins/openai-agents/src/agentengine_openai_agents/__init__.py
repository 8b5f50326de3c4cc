"""agentengine-openai-agents (placeholder)."""
