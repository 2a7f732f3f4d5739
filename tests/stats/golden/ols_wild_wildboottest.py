"""Regenerates ols_wild_wildboottest.json: wild cluster bootstrap references from wildboottest 0.3.2.

Run from the repository root with wildboottest importable (it is not a kdanalysis
dependency; ``pip install wildboottest==0.3.2``)::

    python tests/stats/golden/ols_wild_wildboottest.py

Data: the bundled study's tau = 1 task-aware KD units (kd_units_tau1.csv), model
``gain ~ log2_size + C(method) + C(task)`` per domain, coefficient ``log2_size``, clustered by
pair (G = 11) or student (G = 6). Rademacher weights are fully enumerated by wildboottest
(2^G < B); Webb weights are passed to wildboottest as a callable returning
``numpy.random.default_rng(0)``'s draws as kdanalysis.stats.wild_bootstrap makes them
(``WEBB[rng.integers(0, 6, size=(B, G))]``, columns in order of first appearance of the
clusters), so both bootstraps use the same weights. Each record keeps the Python that
produced it (``command``). wildboottest's two-tailed p-value counts ``|t*| > |t|``
strictly; ``p_ties`` counts ``|t*| >= |t| (1 - 1e-9)`` over the same t* (kdanalysis's rule).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import patsy
from wildboottest.wildboottest import WildboottestCL

HERE = Path(__file__).parent
FORMULA = "gain ~ log2_size + C(method) + C(task)"
WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
B_WEBB = 999
COMMAND = (
    "y, X = patsy.dmatrices({formula!r}, units[units.domain == {domain!r}], return_type='dataframe'); "
    "wb = WildboottestCL(X=X, Y=y.iloc[:, 0], cluster=np.unique(data[{cluster!r}], return_inverse=True)[1], "
    "R=R, B={b}, seed=0); wb.get_scores(bootstrap_type='11', impose_null={impose_null}); "
    "wb.get_weights({weights}); wb.get_numer(); "
    "wb.get_denom(); wb.get_tboot(); wb.get_vcov(); wb.get_tstat(); wb.get_pvalue('two-tailed')"
)


def main() -> None:
    units = pd.read_csv(HERE / "kd_units_tau1.csv")
    records = []
    for domain in ("commonsense", "math"):
        data = units[units["domain"] == domain].reset_index(drop=True)
        y, exog = patsy.dmatrices(FORMULA, data, return_type="dataframe")
        restriction = (exog.columns == "log2_size").astype(float)
        for cluster in ("pair", "student"):
            # integer labels (wildboottest's numba code needs numbers), in sorted-name order
            names, labels = np.unique(data[cluster].to_numpy(), return_inverse=True)
            _, first_seen = pd.factorize(data[cluster])
            # wildboottest orders clusters by np.unique (sorted); ours by first appearance
            to_ours = np.array([list(first_seen).index(name) for name in names])
            for weights, impose_null in (("rademacher", True), ("rademacher", False), ("webb", True)):
                if weights == "rademacher":
                    n_boot, weight_arg, weight_text = 9999, "rademacher", "'rademacher'"
                else:
                    g = len(first_seen)
                    ours = WEBB[np.random.default_rng(0).integers(0, 6, size=(B_WEBB, g))]
                    fixed = ours[:, to_ours].T.reshape(-1)  # wildboottest reshapes to (G, B)

                    def weight_arg(n: int, rng: object, fixed: np.ndarray = fixed) -> np.ndarray:
                        assert n == len(fixed)
                        return fixed

                    n_boot = B_WEBB
                    weight_text = "callable returning kdanalysis's Webb draws for seed 0 (see docstring)"
                wb = WildboottestCL(X=exog, Y=y.iloc[:, 0], cluster=labels, R=restriction, B=n_boot, seed=0)
                wb.get_scores(bootstrap_type="11", impose_null=impose_null)
                wb.get_weights(weight_arg)
                wb.get_numer()
                wb.get_denom()
                wb.get_tboot()
                wb.get_vcov()
                wb.get_tstat()
                wb.get_pvalue("two-tailed")
                t_stat = float(np.asarray(wb.t_stat).reshape(-1)[0])
                t_boot = np.asarray(wb.t_boot, dtype=float).reshape(-1)
                records.append(
                    {
                        "domain": domain,
                        "cluster": cluster,
                        "term": "log2_size",
                        "weights": weights,
                        "impose_null": impose_null,
                        "n_boot": int(wb.B),
                        "t_stat": t_stat,
                        "p_strict": float(wb.pvalue),
                        "p_ties": float(np.mean(np.abs(t_boot) >= abs(t_stat) * (1 - 1e-9))),
                        "abs_t_boot_quantiles": np.quantile(np.abs(t_boot), [0.5, 0.9, 0.95, 0.99]).tolist(),
                        "command": COMMAND.format(
                            formula=FORMULA,
                            domain=domain,
                            cluster=cluster,
                            b=n_boot,
                            impose_null=impose_null,
                            weights=weight_text,
                        ),
                    }
                )
    (HERE / "ols_wild_wildboottest.json").write_text(json.dumps(records, indent=1) + "\n")
    print(f"{len(records)} records written")


if __name__ == "__main__":
    main()
