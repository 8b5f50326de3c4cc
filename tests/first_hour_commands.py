"""The commands of the plugin author's walkthrough, as the docs show them: run as written by
tests/kit/test_first_hour.py, and checked against the docs by tests/docs/test_doc_commands.py."""

#: Run as written, in this order; the docs show only these (or test_doc_commands.ELSEWHERE).
COMMANDS = [
    "uv run --project agentengine agentengine new-plugin acme-weather",
    "cd acme-weather && uv sync && uv run pytest",
    "uv run agentengine check-plugin agentengine_acme_weather:AcmeWeatherPlugin",
    "uv run agentengine plugins",
    """uv run agentengine run acme_weather --input '{"name": "Ada"}' --user ada""",
    "uv init --app weather-app && cd weather-app",
    "uv add --editable ../agentengine/core ../agentengine/plugins/server ../acme-weather",
    "uv run agentengine plugins --json",
    "uv sync",
    "uv run agentengine serve --dev",
]
