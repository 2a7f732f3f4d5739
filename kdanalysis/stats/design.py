"""Design matrices without a formula parser, with the columns and names patsy gives them.

For callers that fit many models of one shape (see
:func:`~kdanalysis.stats.regression.ols_matrices`): building a design from these pieces
costs a fraction of a patsy formula. Each piece matches what patsy builds for the
corresponding formula term, in patsy's column order:

==============================  ===============================================
formula term                    piece
==============================  ===============================================
``1`` (intercept)               :func:`intercept`
``C(x)`` after an intercept     ``indicators(data["x"], "x", reference=True)``
``0 + C(x)``                    ``indicators(data["x"], "x", reference=False)``
``C(x):z`` / ``C(x):C(w)``      :func:`interactions` of the two pieces
==============================  ===============================================

Patsy orders a formula's terms by the numeric variables they hold (none first, then in
order of appearance) and, within that, by the number of categorical factors; assemble the
pieces in the same order to get patsy's matrix. Levels are sorted as patsy sorts them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["intercept", "indicators", "interactions"]


def intercept(index: pd.Index) -> pd.DataFrame:
    """A column of ones named ``Intercept``, with ``index``."""
    return pd.DataFrame({"Intercept": np.ones(len(index))}, index=index)


def indicators(values: pd.Series, name: str, *, reference: bool) -> pd.DataFrame:
    """0/1 columns of the sorted levels of ``values``, named as patsy names ``C(name)``.

    Parameters
    ----------
    values : Series
        Categorical values (no missing values).
    name : str
        Variable name used in the column names.
    reference : bool
        ``True``: treatment coding against the first level, columns ``C(name)[T.level]``
        for the other levels (a term after an intercept). ``False``: one column
        ``C(name)[level]`` per level (full rank, e.g. ``0 + C(name)``).

    Returns
    -------
    DataFrame
        Float columns with the index of ``values``.
    """
    levels, codes = np.unique(np.asarray(values), return_inverse=True)
    matrix = (codes[:, None] == np.arange(len(levels))).astype(float)
    prefix = "T." if reference else ""
    columns = [f"C({name})[{prefix}{level}]" for level in levels]
    if reference:
        matrix, columns = matrix[:, 1:], columns[1:]
    return pd.DataFrame(matrix, index=values.index, columns=columns)


def interactions(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """Products of every ``left`` column with every ``right`` column, named ``l:r``.

    Columns in patsy's order: the ``left`` columns vary fastest (``l1:r1, l2:r1, ...,
    l1:r2, ...``).
    """
    products = left.to_numpy()[:, None, :] * right.to_numpy()[:, :, None]
    columns = [f"{a}:{b}" for b in right.columns for a in left.columns]
    return pd.DataFrame(products.reshape(len(left), -1), index=left.index, columns=columns)
