"""Design pieces equal patsy's matrices for the formula terms they stand for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import patsy
import pytest

from kdanalysis.stats.design import indicators, interactions, intercept


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "z": rng.integers(0, 5, n),  # an integer column, as patsy converts it to float
            "task": rng.choice(["b", "a", "c10", "c2"], n),
            "method": rng.choice(["fkl", "rkl", "gkd"], n),
            "level": rng.choice([3, 1, 2], n),
        },
        index=rng.permutation(np.arange(100, 100 + n)),  # a non-default index is kept
    )


def _pieces(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    numeric = frame[["x", "z"]].astype(float)
    tasks = indicators(frame["task"], "task", reference=False)
    method = indicators(frame["method"], "method", reference=True)
    return {
        "y ~ x + z + C(method) + C(task)": pd.concat(
            [intercept(frame.index), method, indicators(frame["task"], "task", reference=True), numeric],
            axis=1,
        ),
        "y ~ 0 + C(task) + C(task):x + C(task):z + C(task):C(method)": pd.concat(
            [tasks, interactions(tasks, method), interactions(tasks, numeric)], axis=1
        ),
        "y ~ 0 + C(level)": indicators(frame["level"], "level", reference=False),
        "y ~ C(level) + x": pd.concat(
            [intercept(frame.index), indicators(frame["level"], "level", reference=True), frame[["x"]]],
            axis=1,
        ),
    }


def test_pieces_equal_patsy(frame: pd.DataFrame) -> None:
    for formula, built in _pieces(frame).items():
        _, expected = patsy.dmatrices(formula, frame, return_type="dataframe")
        pd.testing.assert_frame_equal(built, expected, check_exact=True, obj=formula)


def test_interactions_of_an_empty_piece_are_empty(frame: pd.DataFrame) -> None:
    tasks = indicators(frame["task"], "task", reference=False)
    empty = interactions(tasks, frame[[]])
    assert empty.shape == (len(frame), 0) and empty.index.equals(frame.index)
