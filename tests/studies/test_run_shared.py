"""run_all shares one gains table and one BLAS thread across its studies: same tables as alone.

Private names on purpose: the shared gains table and BLAS limit are internals of ``run_all``;
the test calls them to show each study gives the same table alone as inside ``run_all``.
"""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

import kdanalysis as kd
from kdanalysis.studies import (
    STUDY_TABLES,
    fidelity_vs_gain,
    kd_gain,
    paper_hypotheses,
    paper_units,
    run_all,
    size_vs_gain,
    teacher_expertise,
    temperature_ablation,
)
from kdanalysis.studies._threads import single_threaded_blas
from kdanalysis.studies._units import accuracy_gains_each, all_accuracy_gains_each


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return kd.load_paper_results()


def test_run_all_tables_equal_the_standalone_studies(results: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables = run_all(results, n_boot=300, corr_boot=100, seed=3)
        alone = {
            "gains": kd.stats.gains(results),
            "kd_gain": kd_gain(results),
            "paper_units": paper_units(results),
            "paper_hypotheses": paper_hypotheses(results),
            "size_vs_gain": size_vs_gain(results),
            "teacher_expertise": teacher_expertise(results),
            "fidelity_vs_gain": fidelity_vs_gain(results),
            "temperature_ablation": temperature_ablation(results, n_boot=300, seed=3),
        }
    for name, table in alone.items():
        pd.testing.assert_frame_equal(getattr(tables, name), table, check_exact=True, obj=name)


def test_shared_each_table_is_the_per_method_gains(results: pd.DataFrame) -> None:
    each = all_accuracy_gains_each(results)
    for methods in (["fkl", "rkl", "gkd"], ["skl"], ["tvd", "fkl"]):
        shared = accuracy_gains_each(results, methods, each)
        own = kd.stats.gains(results, "sft", "each", "accuracy", methods=methods)
        pd.testing.assert_frame_equal(shared, own, check_exact=True)


def test_blas_runs_on_one_thread_inside_and_is_restored_after() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    with single_threaded_blas():
        inside = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    after = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert inside and set(inside) == {1}
    assert after == before
    with single_threaded_blas():
        with single_threaded_blas():
            pass
        still = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert set(still) == {1}  # an inner exit keeps the outer limit
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"] == before


def test_run_all_without_kd_rows_gives_empty_tables_with_their_columns(results: pd.DataFrame) -> None:
    tables = run_all(results[results["method"].isin(["base", "sft"])], n_boot=10, corr_boot=10)
    assert tuple(name for name, _ in tables.items()) == STUDY_TABLES
    assert all(table.empty for name, table in tables.items() if name != "claims_audit")
    assert set(tables.claims_audit["verdict"]) == {"not testable with these data"}
    assert list(tables.paper_hypotheses.columns) == [
        "domain",
        "hypothesis",
        "methods",
        "task",
        "test",
        "statistic",
        "p_val",
        "n",
    ]
