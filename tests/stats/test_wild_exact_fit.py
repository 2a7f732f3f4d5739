"""wild_bootstrap on data the model fits exactly: a NaN row with a note, not a crash."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdanalysis.stats import DegenerateDataWarning, wild_bootstrap


def test_exact_fit_gives_a_nan_row_with_a_note() -> None:
    data = pd.DataFrame({"gain": [0.0] * 6, "student": ["a", "a", "b", "b", "c", "c"]})
    with pytest.warns(DegenerateDataWarning, match="residuals are all zero"):
        row = wild_bootstrap("gain ~ 1", data, "Intercept", "student").iloc[0]
    assert row["estimate"] == 0.0
    assert np.isnan(row["p_val"]) and np.isnan(row["ci_low"])
    assert "exact fit" in row["note"]
