"""Shared test configuration.

``async def`` tests run on asyncio through anyio's pytest plugin; the marking is done by
agentengine's own pytest plugin (``agentengine.testing``), the same kit plugin authors use.
"""
