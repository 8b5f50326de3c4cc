from agentengine import ExecutionEngineFactory, RunStatus, UserExecutionContext


async def test_demo_agent_produces_all_five_event_types() -> None:
    async with (
        ExecutionEngineFactory(enable_plugins=["demo"]) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("researcher", {"question": "isolation"})
    assert result.status is RunStatus.SUCCEEDED
    types = {e.type for e in result.events}
    assert types == {
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    }
    assert [e.seq for e in result.events] == list(range(1, len(result.events) + 1))
