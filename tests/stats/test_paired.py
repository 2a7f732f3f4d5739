"""mcnemar and paired_bootstrap on per-item tables: statsmodels parity, joins, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats import DegenerateDataWarning, mcnemar, paired_bootstrap
from kdanalysis.stats.paired import MCNEMAR_COLUMNS, PAIRED_BOOTSTRAP_COLUMNS


def _items(n: int = 150, seed: int = 0, p_a: float = 0.65, p_b: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"q{i}" for i in range(n)]
    task = np.where(np.arange(n) < n // 2, "gsm8k", "svamp")
    frames = [
        pd.DataFrame({"run_id": run, "task": task, "item_id": ids, "correct": rng.random(n) < p})
        for run, p in (("A", p_a), ("B", p_b))
    ]
    # shuffle so that the join, not the row order, pairs the items
    return pd.concat(frames, ignore_index=True).sample(frac=1, random_state=seed).reset_index(drop=True)


def _wide(items: pd.DataFrame) -> pd.DataFrame:
    return items.pivot(index="item_id", columns="run_id", values="correct")


def test_mcnemar_matches_statsmodels_exact() -> None:
    items = _items()
    row = mcnemar(items, "A", "B").iloc[0]
    wide = _wide(items)
    a, b = wide["A"].to_numpy(bool), wide["B"].to_numpy(bool)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    expected = sm_mcnemar(table, exact=True)
    assert list(mcnemar(items, "A", "B").columns) == list(MCNEMAR_COLUMNS)
    assert row["n"] == 150 and row["note"] == ""
    assert (row["n_a_only"], row["n_b_only"]) == (np.sum(a & ~b), np.sum(~a & b))
    assert row["acc_a"] == pytest.approx(a.mean()) and row["acc_b"] == pytest.approx(b.mean())
    assert row["diff"] == pytest.approx(a.mean() - b.mean())
    assert row["statistic"] == expected.statistic
    assert row["p_val"] == pytest.approx(expected.pvalue, rel=1e-12)


def test_mcnemar_by_task_equals_per_task_calls_and_swap_flips_counts() -> None:
    items = _items(seed=1)
    grouped = mcnemar(items, "A", "B", by="task")
    assert list(grouped["task"]) == ["gsm8k", "svamp"]
    for _, row in grouped.iterrows():
        single = mcnemar(items[items["task"] == row["task"]], "A", "B").iloc[0]
        pd.testing.assert_series_equal(row[list(MCNEMAR_COLUMNS)], single, check_names=False)
    swapped = mcnemar(items, "B", "A").iloc[0]
    original = mcnemar(items, "A", "B").iloc[0]
    assert (swapped["n_a_only"], swapped["n_b_only"]) == (original["n_b_only"], original["n_a_only"])
    assert swapped["p_val"] == original["p_val"] and swapped["diff"] == -original["diff"]


def test_paired_bootstrap_ci_pvalue_and_seed() -> None:
    items = _items(n=300, seed=2, p_a=0.7, p_b=0.5)
    table = paired_bootstrap(items, "A", "B", n_boot=4000, seed=1)
    row = table.iloc[0]
    assert list(table.columns) == list(PAIRED_BOOTSTRAP_COLUMNS)
    wide = _wide(items)
    diff = wide["A"].astype(float) - wide["B"].astype(float)
    assert row["diff"] == pytest.approx(diff.mean())
    assert row["ci_low"] < row["diff"] < row["ci_high"]
    assert row["ci_low"] > 0 and row["p_val"] < 0.05  # a 20-point gap on 300 items is clear
    # the interval is close to the normal approximation of the paired difference
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert row["ci_low"] == pytest.approx(diff.mean() - 1.96 * se, abs=0.02)
    assert table.equals(paired_bootstrap(items, "A", "B", n_boot=4000, seed=1))
    assert not table.equals(paired_bootstrap(items, "A", "B", n_boot=4000, seed=2))


@pytest.mark.parametrize("seed", range(4))
def test_paired_bootstrap_p_value_agrees_with_the_interval(seed: int) -> None:
    items = _items(n=120, seed=seed, p_a=0.55, p_b=0.5)
    row = paired_bootstrap(items, "A", "B", n_boot=2000, ci=0.95).iloc[0]
    assert (row["ci_low"] <= 0 <= row["ci_high"]) == (row["p_val"] >= 0.05)


def test_identical_systems_give_zero_difference_and_p_one() -> None:
    items = _items(n=200, seed=3)
    identical = pd.concat([items[items.run_id == "A"], items[items.run_id == "A"].assign(run_id="B")])
    same = paired_bootstrap(identical, "A", "B", n_boot=500).iloc[0]
    assert (same["diff"], same["ci_low"], same["ci_high"], same["p_val"]) == (0.0, 0.0, 0.0, 1.0)
    assert mcnemar(identical, "A", "B").iloc[0]["p_val"] == 1.0


def test_unmatched_and_duplicate_items_are_refused_with_counts() -> None:
    items = _items(n=20)
    missing = items.drop(items[(items.run_id == "B") & items.item_id.isin(["q1", "q2"])].index)
    with pytest.raises(SchemaError, match=r"2 item\(s\) only for 'A', 0 only for 'B' \(18 matched\)"):
        mcnemar(missing, "A", "B")
    with pytest.raises(SchemaError, match="duplicate"):
        paired_bootstrap(pd.concat([items, items.head(1)]), "A", "B")


def test_degenerate_and_bad_arguments() -> None:
    items = _items(n=2)
    with pytest.warns(DegenerateDataWarning, match="2 item"):
        row = mcnemar(items, "A", "B").iloc[0]
    assert np.isnan(row["p_val"]) and "need at least 3" in row["note"]
    with pytest.warns(DegenerateDataWarning):
        assert np.isnan(paired_bootstrap(items, "A", "B").iloc[0]["ci_low"])
    with pytest.raises(SchemaError, match=r"\['C'\] not found"):
        mcnemar(_items(), "A", "C")
    with pytest.raises(ConfigError, match="two different systems"):
        mcnemar(_items(), "A", "A")
    with pytest.raises(SchemaError, match="True/False"):
        mcnemar(_items().assign(correct=0.5), "A", "B")
    with pytest.raises(SchemaError, match="'item'"):
        mcnemar(_items(), "A", "B", item="item")


def test_few_discordant_items_defer_to_exact_mcnemar() -> None:
    # 100 items, both right on 60, both wrong on 35, only A right on 5: exact McNemar p = 2 / 2**5
    correct_a = np.r_[np.ones(65, bool), np.zeros(35, bool)]
    correct_b = np.r_[np.ones(60, bool), np.zeros(40, bool)]
    ids = [f"q{i}" for i in range(100)]
    items = pd.concat(
        [
            pd.DataFrame({"run_id": "A", "item_id": ids, "correct": correct_a}),
            pd.DataFrame({"run_id": "B", "item_id": ids, "correct": correct_b}),
        ]
    )
    row = paired_bootstrap(items, "A", "B", n_boot=2000).iloc[0]
    assert row["p_val"] == pytest.approx(0.0625, rel=1e-12)
    assert row["p_val"] == mcnemar(items, "A", "B").iloc[0]["p_val"]
    assert row["diff"] == pytest.approx(0.05)


def _discordant_items(a_only: int, b_only: int, both: int = 50, neither: int = 30) -> pd.DataFrame:
    """Items with given counts of the four outcome pairs (A right/wrong, B right/wrong)."""
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    ids = [f"q{i}" for i in range(len(a))]
    return pd.concat(
        [
            pd.DataFrame({"run_id": "A", "item_id": ids, "correct": a}),
            pd.DataFrame({"run_id": "B", "item_id": ids, "correct": b}),
        ]
    )


@pytest.mark.parametrize(("a_only", "b_only", "expected"), [(20, 4, "exact_mcnemar"), (20, 5, "bootstrap")])
def test_p_source_switches_at_25_discordant_items(a_only: int, b_only: int, expected: str) -> None:
    items = _discordant_items(a_only, b_only)
    row = paired_bootstrap(items, "A", "B", n_boot=2000).iloc[0]
    assert row["p_method"] == expected
    exact = mcnemar(items, "A", "B").iloc[0]["p_val"]
    assert (row["p_val"] == exact) == (expected == "exact_mcnemar")
    forced = paired_bootstrap(items, "A", "B", n_boot=2000, p_method="exact_mcnemar").iloc[0]
    assert forced["p_method"] == "exact_mcnemar" and forced["p_val"] == exact
    assert forced[["ci_low", "ci_high"]].to_list() == row[["ci_low", "ci_high"]].to_list()


def test_bootstrap_p_is_never_zero() -> None:
    items = _discordant_items(a_only=60, b_only=0)
    row = paired_bootstrap(items, "A", "B", n_boot=999, p_method="bootstrap").iloc[0]
    assert row["p_method"] == "bootstrap"
    assert row["p_val"] == pytest.approx(2 / 1000)  # no resample at or below 0: 2 (0 + 1) / (999 + 1)


def test_paired_bootstrap_checks_p_method_and_seed() -> None:
    with pytest.raises(ConfigError, match="auto, bootstrap, exact_mcnemar"):
        paired_bootstrap(_items(), "A", "B", p_method="exact")
    with pytest.raises(ConfigError, match="seed"):
        paired_bootstrap(_items(), "A", "B", seed=None)  # type: ignore[arg-type]
