"""Pieces shared by the regression models of :mod:`~kdanalysis.stats.regression` and
:mod:`~kdanalysis.stats.mixed`: the coefficient table, the formula builder, the checks of
ready design matrices and the plain-text summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from kdanalysis.errors import SchemaError

#: Coefficient-table columns of every regression model; ``df`` is the degrees of freedom of
#: the reference t distribution of ``statistic`` (``inf`` for a Wald z test).
COEF_COLUMNS = ("term", "estimate", "se", "statistic", "df", "p_val", "ci_low", "ci_high")


def check_matrices(
    label: str, endog: pd.Series, exog: pd.DataFrame, others: Mapping[str, pd.Series | pd.DataFrame]
) -> None:
    """Raise :class:`SchemaError` if a ``*_matrices`` input has a missing value or another length."""
    inputs: dict[str, pd.Series | pd.DataFrame] = {"endog": endog, "exog": exog, **others}
    for name, values in inputs.items():
        if len(values) != len(exog):
            raise SchemaError(f"{label}: {name} has {len(values)} rows, exog has {len(exog)}")
        missing = int(pd.isna(values.to_numpy()).reshape(len(values), -1).any(axis=1).sum())
        if missing:
            raise SchemaError(f"{label}: {name} is missing in {missing} row(s)")


def from_formula(factory: Any, formula: str, data: pd.DataFrame, **kwargs: Any) -> Any:
    """Build a statsmodels formula model, turning formula errors into :class:`SchemaError`."""
    from patsy import PatsyError

    try:
        return factory(formula, data, missing="drop", **kwargs)
    except PatsyError as error:
        raise SchemaError(f"formula {formula!r} cannot be built from the data: {error}") from error


def coef_table(
    estimate: pd.Series,
    se: pd.Series,
    statistic: pd.Series,
    df: float | np.ndarray,
    p_val: pd.Series,
    interval: pd.DataFrame | np.ndarray,
) -> pd.DataFrame:
    """The tidy coefficient table (:data:`COEF_COLUMNS`), one row per term of ``estimate``.

    ``interval`` holds the lower and upper ends in its two columns.
    """
    bounds = np.asarray(interval, dtype=float)
    return pd.DataFrame(
        {
            "term": list(estimate.index),
            "estimate": estimate.to_numpy(dtype=float),
            "se": np.asarray(se, dtype=float),
            "statistic": np.asarray(statistic, dtype=float),
            "df": np.broadcast_to(np.asarray(df, dtype=float), len(estimate)),
            "p_val": np.asarray(p_val, dtype=float),
            "ci_low": bounds[:, 0],
            "ci_high": bounds[:, 1],
        },
        columns=COEF_COLUMNS,
    )


def summary_text(
    name: str, coefs: pd.DataFrame, fit: pd.DataFrame, variances: pd.DataFrame | None = None
) -> str:
    parts = [f"{name} result", coefs.to_string(index=False)]
    if variances is not None:
        parts.append(variances.to_string(index=False))
    parts.append(fit.to_string(index=False))
    return "\n\n".join(parts)


def clustered_formula_model(
    factory: Any, formula: str, data: pd.DataFrame, cluster: list[str]
) -> tuple[Any, pd.DataFrame | None]:
    """A formula model and the ``cluster`` columns of the rows it uses (``None`` without clusters).

    Raises :class:`SchemaError` if a cluster column is missing in a used row.
    """
    data = data.reset_index(drop=True)  # unique labels, so clusters align with the rows used
    model = from_formula(factory, formula, data)
    if not cluster:
        return model, None
    labels = data.loc[model.data.row_labels, cluster]
    for column in cluster:
        missing = int(labels[column].isna().sum())
        if missing:
            raise SchemaError(f"cluster column {column!r} is missing in {missing} used row(s)")
    return model, labels


def cluster_frame(clusters: pd.Series | pd.DataFrame | None) -> pd.DataFrame | None:
    """The cluster labels of a ``*_matrices`` call as a frame (a Series becomes one column)."""
    if clusters is None or isinstance(clusters, pd.DataFrame):
        return clusters
    return clusters.to_frame(str(clusters.name or "clusters"))
