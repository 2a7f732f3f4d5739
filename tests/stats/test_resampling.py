"""bootstrap_ci: equals scipy.stats.bootstrap, seeded, batched, coverage sanity, degenerate input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import stats as sps

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats import DegenerateDataWarning, bootstrap_ci


@pytest.mark.parametrize("method", ["percentile", "basic", "BCa"])
def test_equals_scipy_bootstrap_with_the_same_generator(method: str) -> None:
    x = np.random.default_rng(0).exponential(size=40)
    low, high = bootstrap_ci(x, np.median, n_boot=2000, seed=5, method=method)
    expected = sps.bootstrap(
        (x,), np.median, n_resamples=2000, vectorized=True, method=method, rng=np.random.default_rng(5)
    ).confidence_interval
    assert (low, high) == (pytest.approx(expected.low), pytest.approx(expected.high))
    assert isinstance(low, float)


def test_seeded_reproducible_and_seed_sensitive() -> None:
    x = np.random.default_rng(1).normal(size=30)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)


def test_batched_axis_and_paired_samples() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 25))
    low, high = bootstrap_ci(x, np.mean, axis=1, n_boot=500)
    assert low.shape == high.shape == (3,)
    assert np.all(low < x.mean(axis=1)) and np.all(x.mean(axis=1) < high)
    a, b = rng.normal(size=25), rng.normal(size=25)

    def mean_difference(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(u - v, axis=axis)

    paired = bootstrap_ci((a, b), mean_difference, paired=True, n_boot=500)
    assert paired == bootstrap_ci(a - b, np.mean, n_boot=500)


def test_one_sided_interval_has_an_infinite_bound() -> None:
    x = np.random.default_rng(3).normal(size=30)
    low, high = bootstrap_ci(x, alternative="greater", n_boot=500)
    assert high == np.inf and low < x.mean()


def test_coverage_of_the_mean_is_near_nominal() -> None:
    rng = np.random.default_rng(4)
    hits = sum(
        low <= 0.0 <= high
        for low, high in (bootstrap_ci(rng.normal(size=50), n_boot=1000, seed=s) for s in range(150))
    )
    assert 0.88 <= hits / 150 <= 0.99


def test_degenerate_and_bad_arguments() -> None:
    with pytest.warns(DegenerateDataWarning, match="2 observation"):
        low, high = bootstrap_ci([1.0, 2.0])
    assert np.isnan(low) and np.isnan(high)
    with pytest.raises(ConfigError, match="percentile, basic, BCa"):
        bootstrap_ci([1.0, 2.0, 3.0], method="studentized")
    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_ci([1.0, 2.0, 3.0], n_boot=-1)


def _mean_difference(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(u, axis=axis) - np.mean(v, axis=axis)


def test_a_list_of_arrays_is_several_samples() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.normal(1.0, size=30), rng.normal(size=30)
    as_list = bootstrap_ci([a, b], _mean_difference, n_boot=500, seed=2)
    as_tuple = bootstrap_ci((a, b), _mean_difference, n_boot=500, seed=2)
    assert tuple(as_list) == tuple(as_tuple)
    assert as_list[0] < a.mean() - b.mean() < as_list[1]


def test_every_sample_is_checked() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=20)
    with pytest.raises(SchemaError, match="equal lengths"):
        bootstrap_ci((a, a[:15]), _mean_difference, paired=True)
    with pytest.raises(SchemaError, match="sample 1.*numeric"):
        bootstrap_ci((a, ["x"] * 20), _mean_difference)
    with pytest.raises(SchemaError, match="sample 1.*2 missing"):
        bootstrap_ci((a, np.r_[a[:18], np.nan, np.nan]), _mean_difference)
    with pytest.warns(DegenerateDataWarning, match="sample 1 has 2 observation"):
        low, high = bootstrap_ci((a, a[:2]), _mean_difference)
    assert np.isnan(low) and np.isnan(high)


def test_a_seed_is_required_and_recorded() -> None:
    x = np.random.default_rng(8).normal(size=25)
    with pytest.raises(ConfigError, match="seed"):
        bootstrap_ci(x, seed=None)
    result = bootstrap_ci(x, n_boot=300, seed=11)
    assert result.seed == 11 and result.n_boot == 300
    copied = pickle.loads(pickle.dumps(result))
    assert copied == result and (copied.seed, copied.n_boot, copied.ci) == (11, 300, 0.95)


def test_nan_policy_propagate_passes_missing_values_to_a_nan_aware_statistic() -> None:
    x = np.r_[np.random.default_rng(9).normal(size=30), np.nan]
    low, high = bootstrap_ci(x, np.nanmean, n_boot=300, nan_policy="propagate")
    assert low < np.nanmean(x) < high
    with pytest.raises(ConfigError, match="raise, propagate"):
        bootstrap_ci(x, np.nanmean, nan_policy="omit")
