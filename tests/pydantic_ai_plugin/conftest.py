"""The pydantic-ai adapter's tests: no network (model requests disallowed), real engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic_ai import models


@pytest.fixture(autouse=True)
def _no_model_requests() -> Iterator[None]:
    # A test that would reach a real provider fails instead of calling out.
    with models.override_allow_model_requests(False):
        yield
