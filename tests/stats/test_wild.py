"""wild_bootstrap against wildboottest 0.3.2 (golden/ols_wild_wildboottest.json, written by
golden/ols_wild_wildboottest.py), its interval against its own test, and its edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats import DegenerateDataWarning, ols, wild_bootstrap
from kdanalysis.stats.design import indicators, intercept
from kdanalysis.stats.wild import WILD_COLUMNS, wild_bootstrap_matrices

GOLDEN = Path(__file__).parent / "golden"
FORMULA = "gain ~ log2_size + C(method) + C(task)"
RECORDS = json.loads((GOLDEN / "ols_wild_wildboottest.json").read_text())


@pytest.fixture(scope="module")
def units() -> pd.DataFrame:
    return pd.read_csv(GOLDEN / "kd_units_tau1.csv")


@pytest.mark.parametrize(
    "record",
    RECORDS,
    ids=[f"{r['domain']}-{r['cluster']}-{r['weights']}-{r['impose_null']}" for r in RECORDS],
)
def test_matches_wildboottest(units: pd.DataFrame, record: dict) -> None:
    data = units[units["domain"] == record["domain"]]
    row = wild_bootstrap(
        FORMULA,
        data,
        "log2_size",
        record["cluster"],
        weights=record["weights"],
        n_boot=9999 if record["weights"] == "rademacher" else record["n_boot"],
        seed=0,
        impose_null=record["impose_null"],
    ).iloc[0]
    assert list(row.index) == list(WILD_COLUMNS)
    assert row["statistic"] == pytest.approx(record["t_stat"], rel=1e-9)
    assert row["p_val"] == record["p_ties"]  # same t* (same weights), ties counted
    assert row["p_val"] >= record["p_strict"]
    assert row["n_boot"] == record["n_boot"]
    enumerated = record["weights"] == "rademacher"
    assert ("full enumeration" in row["note"]) == enumerated
    assert row["seed"] == 0 and row["n_clusters"] == data[record["cluster"]].nunique()


def test_statistic_is_the_cr1_t(units: pd.DataFrame) -> None:
    math = units[units["domain"] == "math"]
    row = wild_bootstrap(FORMULA, math, "C(method)[T.rkl]", "student", n_boot=99).iloc[0]
    cr1 = ols(FORMULA, math, cluster="student", vcov="CR1").coefs.set_index("term").loc["C(method)[T.rkl]"]
    assert row["statistic"] == pytest.approx(cr1["statistic"], rel=1e-10)
    assert row["estimate"] == pytest.approx(cr1["estimate"], rel=1e-12)


@pytest.mark.parametrize(("weights", "impose_null"), [("rademacher", True), ("webb", True), ("webb", False)])
def test_interval_inverts_the_test(units: pd.DataFrame, weights: str, impose_null: bool) -> None:
    """Testing beta = r is testing 0 on gain - r * log2_size: p > 1 - ci inside the interval, <= outside."""
    math = units[units["domain"] == "math"]
    options = {"weights": weights, "n_boot": 999, "seed": 3, "impose_null": impose_null, "ci": 0.9}
    row = wild_bootstrap(FORMULA, math, "log2_size", "pair", **options).iloc[0]
    assert row["ci_low"] < row["estimate"] < row["ci_high"] and row["note"] == ""
    for end, direction in ((row["ci_low"], -1), (row["ci_high"], 1)):
        width = 1e-6 * (row["ci_high"] - row["ci_low"])
        for shift, rejected in ((-width, False), (width, True)):
            null = end + direction * shift
            shifted = math.assign(gain=math["gain"] - null * math["log2_size"])
            p_val = wild_bootstrap(FORMULA, shifted, "log2_size", "pair", **options).iloc[0]["p_val"]
            assert (p_val <= 0.1) == rejected, (end, shift, p_val)


def test_few_clusters_give_an_unbounded_interval_and_say_so() -> None:
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"x": rng.normal(size=40), "g": np.repeat(list("abcd"), 10)})
    data["y"] = 0.5 * data["x"] + rng.normal(size=40)
    row = wild_bootstrap("y ~ x", data, "x", "g").iloc[0]
    assert row["n_boot"] == 16 and row["p_val"] >= 2 / 16  # 4 clusters: 16 sign vectors, p >= 1/8
    assert row["ci_low"] == -np.inf and row["ci_high"] == np.inf
    assert "interval is unbounded" in row["note"] and "2^4 = 16" in row["note"]


def test_matrices_equal_the_formula_and_seed_reproduces(units: pd.DataFrame) -> None:
    math = units[units["domain"] == "math"].reset_index(drop=True)
    exog = pd.concat(
        [
            intercept(math.index),
            indicators(math["method"], "method", reference=True),
            indicators(math["task"], "task", reference=True),
            math[["log2_size"]],
        ],
        axis=1,
    )
    options = {"weights": "webb", "n_boot": 499, "seed": 11}
    formula = wild_bootstrap(FORMULA, math, "log2_size", "student", **options)
    matrices = wild_bootstrap_matrices(
        math["gain"], exog, math["student"], "log2_size", label=f"wild_bootstrap({FORMULA!r})", **options
    )
    pd.testing.assert_frame_equal(matrices, formula)
    again = wild_bootstrap(FORMULA, math, "log2_size", "student", **options)
    pd.testing.assert_frame_equal(again, formula)
    other = wild_bootstrap(FORMULA, math, "log2_size", "student", **{**options, "seed": 12})
    assert other.iloc[0]["seed"] == 12 and other.iloc[0]["p_val"] != formula.iloc[0]["p_val"]


def test_degenerate_designs_give_a_nan_row(units: pd.DataFrame) -> None:
    math = units[units["domain"] == "math"].assign(double_size=lambda d: 2 * d["log2_size"])
    with pytest.warns(DegenerateDataWarning, match="term 'double_size' is not identified"):
        row = wild_bootstrap("gain ~ log2_size + double_size", math, "double_size", "pair").iloc[0]
    assert row[["estimate", "statistic", "p_val", "ci_low", "ci_high"]].isna().all() and row["n_boot"] == 0
    one = math[math["student"] == math["student"].iloc[0]]
    with pytest.warns(DegenerateDataWarning, match=r"1 cluster\(s\), need at least 2"):
        row = wild_bootstrap("gain ~ log2_size + C(task)", one, "C(task)[T.gsm8k]", "student").iloc[0]
    assert np.isfinite(row["estimate"]) and np.isnan(row["p_val"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seed": None}, ConfigError, "seed=None is not allowed"),
        ({"seed": 1.5}, ConfigError, "non-negative integer"),
        ({"weights": "mammen"}, ConfigError, "choose one of: rademacher, webb"),
        ({"n_boot": 0}, ConfigError, "n_boot=0"),
        ({"impose_null": "yes"}, ConfigError, "impose_null"),
        ({"ci": 95}, ConfigError, "ci=95"),
        ({"cluster": ["pair", "student"]}, ConfigError, "one column name"),
        ({"term": "size"}, SchemaError, "no term 'size'"),
        ({"cluster": "nope"}, SchemaError, "'nope'"),
    ],
)
def test_invalid_arguments_raise(units: pd.DataFrame, kwargs: dict, error: type, match: str) -> None:
    arguments = {"term": "log2_size", "cluster": "pair", **kwargs}
    with pytest.raises(error, match=match):
        wild_bootstrap(FORMULA, units, arguments.pop("term"), arguments.pop("cluster"), **arguments)
