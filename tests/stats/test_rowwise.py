"""The vectorised rank statistics used by the bootstrap equal scipy's on every resample.

Private names on purpose: ``kdanalysis.stats._rowwise`` is the bootstrap's kernel and has no
public entry of its own; testing it directly pins it against scipy resample by resample.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sps

from kdanalysis.stats._rowwise import (
    average_ranks,
    dense_codes,
    rowwise_kendall,
    rowwise_pearson,
    rowwise_spearman,
)

tied_values = arrays(np.float64, st.integers(4, 40), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5, 7.0]))


@settings(max_examples=40, deadline=None)
@given(x=tied_values, data=st.data())
def test_rowwise_rank_statistics_equal_scipy(x: np.ndarray, data: st.DataObject) -> None:
    y = data.draw(arrays(np.float64, x.shape, elements=st.floats(-5, 5, allow_nan=False)))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(x), size=(3, 5, len(x)))  # several leading (batch) axes
    cx, cy = dense_codes(x), dense_codes(y)
    assert np.array_equal(average_ranks(cx[idx]), sps.rankdata(x[idx], axis=-1))
    spearman = rowwise_spearman(cx[idx], cy[idx])
    kendall = rowwise_kendall(cx[idx], cy[idx])
    assert spearman.shape == kendall.shape == (3, 5)
    for i, j in np.ndindex(3, 5):
        xs, ys = x[idx[i, j]], y[idx[i, j]]
        if np.ptp(xs) == 0 or np.ptp(ys) == 0:
            assert np.isnan(spearman[i, j]) and np.isnan(kendall[i, j])
            continue
        assert spearman[i, j] == pytest.approx(sps.spearmanr(xs, ys).statistic, abs=1e-12)
        assert kendall[i, j] == pytest.approx(sps.kendalltau(xs, ys).statistic, abs=1e-12)


def test_rowwise_pearson_axis_and_constant_rows() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 20)), rng.normal(size=(4, 20))
    x[2] = 1.0
    r = rowwise_pearson(x.T, y.T, axis=0)
    assert np.isnan(r[2])
    for row in (0, 1, 3):
        assert r[row] == pytest.approx(sps.pearsonr(x[row], y[row]).statistic, abs=1e-12)


def test_kendall_blocks_give_the_same_result_as_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import kdanalysis.stats._rowwise as rowwise

    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 10, size=(50, 30)).astype(float), rng.integers(0, 10, size=(50, 30)).astype(float)
    whole = rowwise_kendall(x, y)
    monkeypatch.setattr(rowwise, "_KENDALL_BLOCK_ELEMENTS", 1000)
    assert np.array_equal(rowwise_kendall(x, y), whole)
