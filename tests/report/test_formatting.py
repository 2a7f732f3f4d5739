"""Rounding happens only here: p-values, signs, intervals, missing values, column choice."""

from __future__ import annotations

import math

import pandas as pd

from kdanalysis.report.formatting import (
    MISSING,
    column_formatter,
    fmt_ci,
    fmt_general,
    fmt_int,
    fmt_num,
    fmt_p,
    fmt_pp,
    fmt_signed,
    format_table,
)


def test_numbers_use_a_true_minus_and_no_negative_zero() -> None:
    assert fmt_num(8.46531) == "8.47"
    assert fmt_num(-0.6562) == "−0.66"
    assert fmt_num(-0.001) == "0.00"
    assert fmt_signed(10.37) == "+10.37"
    assert fmt_signed(-1.234) == "−1.23"
    assert fmt_signed(0.001) == "0.00"
    assert fmt_pp(22.333) == "+22.33 pp"
    assert fmt_ci(-0.82, -0.4) == "[−0.82, −0.40]"


def test_p_values_switch_to_scientific_below_one_in_a_thousand() -> None:
    assert fmt_p(0.0123) == "0.012"
    assert fmt_p(0.001) == "0.001"
    assert fmt_p(5.650e-10) == "5.7e-10"
    assert fmt_p(3.379e-05) == "3.4e-5"
    assert fmt_p(0.0) == "< 1e-300"


def test_missing_values_become_a_dash() -> None:
    for func in (fmt_num, fmt_signed, fmt_p, fmt_int, fmt_general, fmt_pp):
        assert func(math.nan) == MISSING
        assert func(None) == MISSING
        assert func(pd.NA) == MISSING
    assert fmt_ci(0.1, math.nan) == MISSING


def test_column_formatter_follows_the_column_name() -> None:
    assert column_formatter("p_val")(2.6e-4) == "2.6e-4"
    assert column_formatter("p_holm")(0.5) == "0.500"
    assert column_formatter("p_method")("exact") == "exact"  # text in a p_ column stays text
    assert column_formatter("n")(1319) == "1,319"
    assert column_formatter("n_groups")(11.0) == "11"
    assert column_formatter("temperature")(2.0) == "2"
    assert column_formatter("eta_sq")(0.12345) == "0.123"
    assert column_formatter("estimate")(-1.7634) == "−1.76"
    assert column_formatter("model")("ols_cluster_pair") == "ols_cluster_pair"


def test_format_table_keeps_raw_values_as_sort_keys() -> None:
    table = pd.DataFrame({"task": ["gsm8k", "aqua"], "p_val": [0.5, math.nan], "n": [33, 12]})
    rows = format_table(table)
    assert rows[0] == [("gsm8k", "gsm8k"), ("0.500", "0.5"), ("33", "33.0")]
    assert rows[1][1] == (MISSING, "")
