"""The paper's headline claims against the released data and the declared primary tests.

:func:`claims_audit` gives one row per piece of evidence of each claim of the abstract of
arXiv 2505.15442, each with a verdict reached by the written rules :data:`VERDICT_RULES`
(``supported``, ``weaker than stated``, ``not supported``, ``not testable with these
data``) and a ``source`` naming the table and row the number comes from (``gains``:
:func:`kdanalysis.stats.gains` with the paper's best temperature; ``primary_tests``:
:func:`kdanalysis.studies.primary_tests`), so every verdict can be traced to a row of the
report's ``tables/*.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "ALPHA",
    "CLAIM_COLUMNS",
    "CLAIMS",
    "EQUIVALENCE_PP",
    "REPRODUCE_PP",
    "VERDICTS",
    "VERDICT_RULES",
    "Claim",
    "claims_audit",
]

#: Significance level of the verdicts.
ALPHA = 0.05
#: A figure is reproduced when the released data give it within this many points.
REPRODUCE_PP = 0.5
#: Slopes (pp of gain per point of a percentage covariate) within +-this are "no relevant effect".
EQUIVALENCE_PP = 0.1
VERDICTS: tuple[str, ...] = (
    "supported",
    "weaker than stated",
    "not supported",
    "not testable with these data",
)
#: The rules behind the verdicts, by the ``rule`` id of a claim.
VERDICT_RULES: dict[str, str] = {
    "figure": (
        "A figure claim is supported when the released data give the paper's figure within "
        f"{REPRODUCE_PP:g} pp and the primary test of the mean gain in that domain is significant "
        f"(Holm across all primary tests, α = {ALPHA:g}) in the claimed direction; weaker than stated "
        "when the figure is reproduced but the mean gain is not significant after Holm (the figure "
        "is a maximum over teachers, methods and temperatures); not supported when the figure is "
        "not reproduced; not testable when the data hold no unit the figure is about."
    ),
    "single_unit": (
        "A figure about one student model (one teacher-student pair, one seed) cannot be tested "
        "across students: not testable with these data, whether or not the figure is reproduced "
        "(the row says which)."
    ),
    "direction": (
        "A claim that an effect exists (in a stated direction) is supported when its primary test "
        f"is significant in that direction after Holm across all primary tests (α = {ALPHA:g}) in "
        f"every domain it covers; weaker than stated when it is significant at p < {ALPHA:g} before "
        "that adjustment in at least one domain but is not supported; not supported when no "
        f"domain reaches p < {ALPHA:g} in the claimed direction."
    ),
    "null": (
        "A claim that an effect is small or absent is supported when no primary test of it is "
        f"significant after Holm and every 95 % CI lies within ±{EQUIVALENCE_PP:g} pp of gain per "
        "point of the covariate; weaker than stated when none is significant but a CI reaches "
        "beyond that band (absence of evidence, not evidence of absence); not supported when one "
        "is significant after Holm."
    ),
    "no_data": "No result in these data varies the factor the claim is about: not testable with these data.",
}
#: Output columns of :func:`claims_audit`.
CLAIM_COLUMNS: tuple[str, ...] = (
    "claim_id",
    "claim",
    "paper_figure",
    "domain",
    "evidence",
    "term",
    "value",
    "ci_low",
    "ci_high",
    "df",
    "p_val",
    "p_holm",
    "p_wild",
    "verdict",
    "rule",
    "source",
)


@dataclass(frozen=True)
class Claim:
    """One headline claim and how it is checked.

    Attributes
    ----------
    id, text, paper_figure : str
        Identifier, the claim as the abstract states it, and the paper's figure.
    rule : str
        Key of :data:`VERDICT_RULES`.
    questions : tuple of str
        ``question`` values of :func:`~kdanalysis.studies.primary_tests` rows testing it.
    direction : int
        +1 / -1 for a claimed sign, 0 for "an effect either way" (direction rule).
    figure : float
        The stated figure (figure and single-unit rules), in pp.
    locate : dict
        Selection of ``gains`` rows behind the figure (``task``, ``domain``, ``student``,
        ``method``) and ``reduce``: ``"max"`` (largest gain) or ``"mean"`` (mean over rows).
    """

    id: str
    text: str
    paper_figure: str
    rule: str
    questions: tuple[str, ...] = ()
    direction: int = 0
    figure: float = float("nan")
    locate: tuple[tuple[str, str], ...] = ()


#: The claims of the abstract (figures as PAPER.md locates them in the released CSVs).
CLAIMS: tuple[Claim, ...] = (
    Claim(
        "small_students_up_to_10",
        "KD improves smaller students by up to 10 % on average",
        "+10 pp (Qwen2.5-0.5B, math average, best KD)",
        "figure",
        ("mean_gain",),
        +1,
        10.0,
        (("domain", "math"), ("student", "Qwen2.5-0.5B"), ("task", "average"), ("reduce", "max")),
    ),
    Claim(
        "peak_task_gain_22",
        "a peak task-specific gain of 22 %",
        "+22 pp (Llama-3.2-1B, MultiArith, GKD)",
        "figure",
        ("mean_gain",),
        +1,
        22.0,
        (("domain", "math"), ("task", "multiarith"), ("reduce", "max")),
    ),
    Claim(
        "larger_students_1_3",
        "about 1.3 % gain for larger students",
        "+1.3 pp (Qwen2.5-7B, commonsense average, mean over methods)",
        "single_unit",
        (),
        +1,
        1.3,
        (("domain", "commonsense"), ("student", "Qwen2.5-7B"), ("task", "average"), ("reduce", "mean")),
    ),
    Claim(
        "teacher_accuracy_minimal",
        "teacher accuracy has minimal impact on the gain",
        "Spearman ρ(gain, teacher accuracy) near 0 (33 units per task)",
        "null",
        ("teacher_score_vs_gain",),
    ),
    Claim(
        "teacher_expertise_matters",
        "teacher task expertise matters (task-aware vs base teacher)",
        "base-teacher KD loses 20–50 points",
        "direction",
        ("task_aware_vs_base",),
        +1,
    ),
    Claim(
        "smaller_students_benefit_more",
        "smaller students benefit more from KD",
        "Spearman ρ(gain, size) = −0.66 (math), −0.54 (commonsense), 33 units",
        "direction",
        ("size_vs_gain",),
        -1,
    ),
    Claim(
        "gains_misaligned_with_fidelity",
        "gains are misaligned with agreement and fidelity to the teacher",
        "Spearman ρ(gain, agreement / BLEU) weak (H4, H5)",
        "null",
        ("agreement_vs_gain", "bleu_vs_gain"),
    ),
    Claim(
        "temperature_matters",
        "the KD temperature matters",
        "τ ablation (1, 2, 5), SeqKD and RevKD",
        "direction",
        ("temperature_vs_gain",),
        0,
    ),
    Claim(
        "teacher_signal_matters",
        "the teacher signal matters (noise added to the teacher logits)",
        "Gaussian noise σ on teacher logits",
        "no_data",
    ),
)


def _evidence_row(claim: Claim, **values: object) -> dict[str, object]:
    return {"claim_id": claim.id, "claim": claim.text, "paper_figure": claim.paper_figure, **values}


def _figure_row(claim: Claim, gains: pd.DataFrame) -> dict[str, object] | None:
    """The released-data value of a figure claim, with the ``gains`` row(s) it comes from."""
    locate = dict(claim.locate)
    reduce = locate.pop("reduce")
    rows = gains[(gains["teacher_kind"] == "task_aware") & (gains["teacher_noise"] == 0)]
    for column, value in locate.items():
        rows = rows[rows[column] == value]
    if rows.empty:
        return None
    where = ", ".join(f"{k}={v}" for k, v in locate.items())
    if reduce == "max":
        top = rows.loc[rows["gain"].idxmax()]
        value = float(top["gain"])
        source = (
            f"gains: domain={top['domain']}, task={top['task']}, teacher={top['teacher']}, "
            f"student={top['student']}, method={top['method']}, teacher_kind=task_aware"
        )
        evidence = "largest gain, best τ (as published)"
    else:
        value = float(rows["gain"].mean())
        source = f"gains: {where}, teacher_kind=task_aware (mean of {len(rows)} rows)"
        evidence = f"mean gain of {len(rows)} units, best τ (as published)"
    return _evidence_row(
        claim, domain=locate.get("domain", "all"), evidence=evidence, term="gain", value=value, source=source
    )


def _test_rows(claim: Claim, primary: pd.DataFrame) -> list[dict[str, object]]:
    """Evidence rows of the claim's primary tests (a figure claim: those of the figure's domain)."""
    rows = primary[primary["question"].isin(claim.questions)]
    domain = dict(claim.locate).get("domain")
    if claim.rule == "figure" and domain is not None:
        rows = rows[rows["domain"] == domain]
    out = []
    for row in rows.to_dict("records"):
        source = f"primary_tests: question={row['question']}, domain={row['domain']}, term={row['term']}"
        out.append(
            _evidence_row(
                claim,
                domain=row["domain"],
                evidence=f"primary test ({row['analysis']})",
                term=row["term"],
                value=row["estimate"],
                **{k: row[k] for k in ("ci_low", "ci_high", "df", "p_val", "p_holm", "p_wild")},
                source=source,
            )
        )
    return out


def _significant(tests: pd.DataFrame, column: str, direction: int) -> pd.Series:
    sign = np.sign(tests["value"].astype(float))
    right_way = (sign == direction) if direction else pd.Series(True, index=tests.index)
    return (tests[column].astype(float) < ALPHA) & right_way


def _verdict(claim: Claim, figure: dict[str, object] | None, tests: pd.DataFrame) -> str:
    """The verdict of ``claim`` by its rule (:data:`VERDICT_RULES`)."""
    if claim.rule == "no_data":
        return "not testable with these data"
    if claim.rule == "single_unit":
        return "not testable with these data"
    if claim.rule == "figure":
        if figure is None:
            return "not testable with these data"
        if abs(float(figure["value"]) - claim.figure) > REPRODUCE_PP:  # type: ignore[arg-type]
            return "not supported"
        domain_tests = tests[tests["domain"] == figure["domain"]]
        if domain_tests.empty or not _significant(domain_tests, "p_holm", claim.direction).all():
            return "weaker than stated"
        return "supported"
    tests = tests.dropna(subset=["p_val"])
    if tests.empty:
        return "not testable with these data"
    if claim.rule == "null":
        if (tests["p_holm"] < ALPHA).any():
            return "not supported"
        inside = (tests["ci_low"] >= -EQUIVALENCE_PP) & (tests["ci_high"] <= EQUIVALENCE_PP)
        return "supported" if inside.all() else "weaker than stated"
    by_domain = tests.assign(
        holm=_significant(tests, "p_holm", claim.direction), raw=_significant(tests, "p_val", claim.direction)
    ).groupby("domain")
    if by_domain["holm"].any().all():
        return "supported"
    if by_domain["raw"].any().any():
        return "weaker than stated"
    return "not supported"


def claims_audit(
    gains: pd.DataFrame, primary: pd.DataFrame, claims: Sequence[Claim] = CLAIMS
) -> pd.DataFrame:
    """Each headline claim with its evidence and verdict.

    Parameters
    ----------
    gains : DataFrame
        :func:`kdanalysis.stats.gains` of the results (SFT baseline, best temperature).
    primary : DataFrame
        :func:`kdanalysis.studies.primary_tests`.
    claims : sequence of Claim
        Claims to audit (default :data:`CLAIMS`).

    Returns
    -------
    DataFrame
        Columns :data:`CLAIM_COLUMNS`, one row per piece of evidence (the released-data
        figure and each primary test of the claim; a claim without either has one row):
        ``claim_id``, ``claim``, ``paper_figure``, ``domain``, ``evidence`` (what the
        number is: a released-data figure, or a primary test and its analysis), ``term``
        (``gain``, or the primary test's term), ``value`` (pp, or pp per unit of the covariate), ``ci_low``,
        ``ci_high``, ``df``, ``p_val``, ``p_holm`` (Holm across all primary tests),
        ``p_wild`` (wild cluster bootstrap), ``verdict`` (one of :data:`VERDICTS`, the same
        on every row of a claim), ``rule`` (key of :data:`VERDICT_RULES`) and ``source``
        (``"<table>: <column>=<value>, ..."`` naming the row behind the value).
    """
    out: list[dict[str, object]] = []
    for claim in claims:
        figure = _figure_row(claim, gains) if claim.locate else None
        tests = _test_rows(claim, primary)
        frame = pd.DataFrame(tests, columns=list(CLAIM_COLUMNS))
        verdict = _verdict(claim, figure, frame)
        rows = ([figure] if figure is not None else []) + tests
        if not rows:
            what = "no result with teacher noise" if claim.rule == "no_data" else "no unit for this claim"
            rows = [_evidence_row(claim, domain="all", evidence=what, value=np.nan, source="")]
        out += [{**row, "verdict": verdict, "rule": claim.rule} for row in rows]
    table = pd.DataFrame(out, columns=list(CLAIM_COLUMNS))
    return table.astype({c: float for c in ("value", "ci_low", "ci_high", "df", "p_val", "p_holm", "p_wild")})
