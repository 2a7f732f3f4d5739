"""Fixtures of the grid tests (helpers live in ``grid_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from grid_helpers import SMALL_GRID


@pytest.fixture()
def grid_file(tmp_path: Path) -> Path:
    """The small toy grid as a file."""
    path = tmp_path / "grid.yaml"
    path.write_text(SMALL_GRID)
    return path
