"""Fixtures for the migrate tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from migrate_helpers import AGENTENGINE, Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    assert AGENTENGINE.exists(), f"the agentengine script is missing next to {sys.executable}"
    return Cli(tmp_path)
