"""``python -m agentengine``: the command line."""

from agentengine.cli import main

if __name__ == "__main__":
    main()
