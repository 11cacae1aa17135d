"""Fixtures: one real fleet (Redis, core, the test app, xingqiao on SQLite) per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from xq_helpers import XQ, fleet


@pytest.fixture(scope="module")
def xq() -> Iterator[XQ]:
    with fleet() as client:
        yield client
