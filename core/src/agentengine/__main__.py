"""``python -m agentengine``: the command line."""

from agentengine.cli.main import main

if __name__ == "__main__":
    main()
