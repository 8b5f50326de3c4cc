"""``python -m agentengine``: the command line."""

from agentengine.cli import main

main()
