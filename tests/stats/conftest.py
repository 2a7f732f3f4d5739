"""Fixtures of the stats tests: a small real table from the paper's released results."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def math_scores(shared_data: Path) -> pd.DataFrame:
    """The paper's math accuracy table (one row per model/method), with a method ``family`` column."""
    frame = pd.read_csv(shared_data / "results" / "math_results_main.csv")
    frame.columns = [c.lower() for c in frame.columns]
    frame["family"] = frame["method"].str.replace(r"_temp_.*", "", regex=True)
    return frame
