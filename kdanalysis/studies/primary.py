"""The family of declared primary tests, Holm-adjusted together.

Every beyond-paper question has one primary row per domain (``role == "primary"`` in the
tables of :mod:`kdanalysis.studies.beyond`). :func:`primary_tests` collects them, Holm-adjusts
their p-values across the whole family (every question, domain and term at once: the
report's claims rest on all of them), and puts the wild cluster bootstrap p-value of each
beside it.
"""

from __future__ import annotations

import pandas as pd

from kdanalysis.stats import adjust_pvalues

__all__ = ["PRIMARY_COLUMNS", "primary_tests"]

#: Output columns of :func:`primary_tests`.
PRIMARY_COLUMNS: tuple[str, ...] = (
    "question",
    "domain",
    "term",
    "analysis",
    "model",
    "estimate",
    "se",
    "statistic",
    "df",
    "p_val",
    "ci_low",
    "ci_high",
    "p_holm",
    "p_wild",
    "n",
    "n_groups",
    "note",
)
_KEYS = ["question", "domain", "term"]


def primary_tests(*tables: pd.DataFrame) -> pd.DataFrame:
    """The primary rows of beyond-paper tables, Holm-adjusted across all of them.

    Parameters
    ----------
    *tables : DataFrame
        Tables with the columns of :data:`kdanalysis.studies.beyond.BEYOND_COLUMNS`.

    Returns
    -------
    DataFrame
        Columns :data:`PRIMARY_COLUMNS`, one row per primary test: the CR2 estimate,
        ``se``, ``statistic`` (t), ``df`` (Satterthwaite), ``p_val``, 95 % CI,
        ``p_holm`` (Holm across every row with a p-value; NaN where ``p_val`` is NaN),
        ``p_wild`` (the wild cluster bootstrap p-value of the same coefficient),
        ``n`` (units), ``n_groups`` (students) and ``note``.
    """
    frames = [t for t in tables if not t.empty]
    if not frames:
        return pd.DataFrame(columns=list(PRIMARY_COLUMNS))
    rows = pd.concat(frames, ignore_index=True)
    primary = rows[rows["role"] == "primary"].reset_index(drop=True)
    checks = rows.loc[rows["role"] == "check", [*_KEYS, "p_val"]].rename(columns={"p_val": "p_wild"})
    primary = primary.merge(checks, on=_KEYS, how="left")
    tested = primary["p_val"].notna()
    primary["p_holm"] = float("nan")
    if tested.any():
        primary.loc[tested, "p_holm"] = adjust_pvalues(primary.loc[tested, "p_val"].to_numpy(), "holm")
    return primary[list(PRIMARY_COLUMNS)]
