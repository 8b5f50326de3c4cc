"""Helpers for the migrate tests: real files in temporary directories, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AGENTENGINE = Path(sys.executable).with_name("agentengine")


class Cli:
    """Runs ``agentengine ...`` (or ``python -m agentengine_migrate ...``) as a subprocess."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(
        self, *args: str, module: bool = False, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = (
            [sys.executable, "-m", "agentengine_migrate", *args]
            if module
            else [str(AGENTENGINE), *args]
        )
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        return subprocess.run(
            command,
            cwd=cwd or self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )


def write(root: Path, files: dict[str, str | bytes]) -> None:
    """Create ``files`` (relative path -> text or bytes) under ``root``."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
