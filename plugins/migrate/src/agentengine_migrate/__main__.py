"""``python -m agentengine_migrate check|migrate``: the commands without the engine's imports."""

from agentengine_migrate.cli import main

if __name__ == "__main__":
    main(prog_name="agentengine-migrate")
