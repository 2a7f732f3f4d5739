"""The batched cell tests equal one scipy call per cell; degenerate cells give NaN.

Private names on purpose: ``kdanalysis.studies._batched`` holds the batched kernels behind
``paper_hypotheses``; testing them cell by cell against scipy localises a failure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdanalysis.studies._batched import anova_cells, spearman_cells, ttest_1samp_cells


@pytest.fixture
def cells() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    sizes = {"a": 7, "b": 7, "c": 12, "d": 2}
    rows = [
        {"cell": cell, "x": rng.normal(), "y": rng.normal(), "level": f"g{i % 3}"}
        for cell, n in sizes.items()
        for i in range(n)
    ]
    frame = pd.DataFrame(rows)
    frame.loc[frame["cell"] == "b", "y"] = 1.0  # constant y
    return frame.sample(frac=1.0, random_state=0)  # order must not matter


def test_spearman_cells_equal_scipy(cells: pd.DataFrame) -> None:
    out = spearman_cells(cells, "x", "y", ["cell"]).set_index("cell")
    for cell in ("a", "c"):
        sub = cells[cells["cell"] == cell]
        expected = stats.spearmanr(sub["x"], sub["y"])
        assert out.loc[cell, "statistic"] == pytest.approx(expected.statistic, rel=1e-12)
        assert out.loc[cell, "p_val"] == pytest.approx(expected.pvalue, rel=1e-9)
        assert out.loc[cell, "n"] == len(sub)
    assert np.isnan(out.loc["b", "statistic"]) and np.isnan(out.loc["d", "p_val"])


def test_ttest_and_anova_cells_equal_scipy(cells: pd.DataFrame) -> None:
    t = ttest_1samp_cells(cells, "x", ["cell"], alternative="greater").set_index("cell")
    f = anova_cells(cells, "x", "level", ["cell"]).set_index("cell")
    for cell in ("a", "b", "c"):
        sub = cells[cells["cell"] == cell]
        expected = stats.ttest_1samp(sub["x"], 0.0, alternative="greater")
        assert t.loc[cell, "statistic"] == pytest.approx(expected.statistic, rel=1e-12)
        assert t.loc[cell, "p_val"] == pytest.approx(expected.pvalue, rel=1e-12)
        groups = [g["x"].to_numpy() for _, g in sub.groupby("level")]
        expected_f = stats.f_oneway(*groups)
        assert f.loc[cell, "statistic"] == pytest.approx(expected_f.statistic, rel=1e-12)
        assert f.loc[cell, "p_val"] == pytest.approx(expected_f.pvalue, rel=1e-12)
    assert np.isnan(t.loc["d", "statistic"]) and np.isnan(f.loc["d", "statistic"])
