"""Audit of the answer extractors on the released test sets' model-written rationales.

The ``output`` field of every shipped test item is a model-written rationale (see
PAPER.md), so it is real model text with a known gold answer. For each task this audit
runs both extractors over those rationales and measures how often they agree with the
gold ``answer`` and with the answer the rationale itself states. The *stated* answer is
what follows the rationale's last explicit "The answer is ..." statement, i.e. the
``strict`` extractor's reading (``""`` when the rationale states nothing).

Run ``python -m runners.evaluate.extraction_audit DATA_DIR [--json FILE] [--markdown]``;
``docs/extraction.md`` holds the table it prints and ``docs/extraction_audit.json`` the
numbers (a test recomputes them from the shipped files).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from kdanalysis.errors import ConfigError
from kdanalysis.io import atomic_write_text
from kdanalysis.tasks import STUDY_TAG
from runners.evaluate.extract import answers_match, extract_answer
from runners.evaluate.tasks import bundled_tasks, load_items, task_file

__all__ = ["AUDIT_COLUMNS", "audit_task", "audit_tasks", "to_markdown", "main"]

logger = logging.getLogger(__name__)

#: Output columns of :func:`audit_tasks`, all rates in percent of ``n``.
AUDIT_COLUMNS: tuple[str, ...] = (
    "task",
    "n",
    "stated",
    "published_gold",
    "strict_gold",
    "published_stated",
    "stated_not_gold",
    "published_empty",
)
_DIGITS = 2


def _pct(hits: int, n: int) -> float:
    return round(100.0 * hits / n, _DIGITS) if n else float("nan")


def audit_task(task: str, data_dir: str | Path) -> dict[str, float | int | str]:
    """Extraction rates of one task over its shipped rationales.

    Returns
    -------
    dict
        Keys :data:`AUDIT_COLUMNS`: ``n`` items; ``stated`` % of rationales with an explicit
        final statement; ``published_gold`` / ``strict_gold`` % whose extracted answer
        matches the gold answer; ``published_stated`` % of *stating* rationales where the
        published extractor reads the stated answer; ``stated_not_gold`` % of stating
        rationales whose stated answer is not the gold one; ``published_empty`` % where the
        published extractor finds nothing. Rates are rounded to 2 decimals.
    """
    spec = bundled_tasks()[task]
    items = load_items(spec, data_dir)
    published = [extract_answer(it.reference, spec, "published") for it in items]
    stated = [extract_answer(it.reference, spec, "strict") for it in items]
    with_statement = [i for i, s in enumerate(stated) if s]
    n = len(items)
    return {
        "task": spec.id,
        "n": n,
        "stated": _pct(len(with_statement), n),
        "published_gold": _pct(
            sum(answers_match(spec, p, it.gold) for p, it in zip(published, items, strict=True)), n
        ),
        "strict_gold": _pct(
            sum(answers_match(spec, s, it.gold) for s, it in zip(stated, items, strict=True)), n
        ),
        "published_stated": _pct(
            sum(answers_match(spec, published[i], stated[i]) for i in with_statement), len(with_statement)
        ),
        "stated_not_gold": _pct(
            sum(not answers_match(spec, stated[i], items[i].gold) for i in with_statement),
            len(with_statement),
        ),
        "published_empty": _pct(sum(p == "" for p in published), n),
    }


def audit_tasks(data_dir: str | Path, tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """Audit the study's tasks (or ``tasks``, ids of the task table) whose test file is in ``data_dir``.

    Returns
    -------
    pandas.DataFrame
        One row per task, columns :data:`AUDIT_COLUMNS`.
    """
    rows = []
    for task in tasks if tasks is not None else bundled_tasks().ids(tag=STUDY_TAG):
        try:
            task_file(bundled_tasks()[task], data_dir)
        except ConfigError as exc:
            logger.warning("skipped: %s", exc)
            continue
        rows.append(audit_task(task, data_dir))
    return pd.DataFrame(rows, columns=list(AUDIT_COLUMNS))


def to_markdown(table: pd.DataFrame) -> str:
    """The audit table as a Markdown table (the one in docs/extraction.md)."""
    header = "| " + " | ".join(AUDIT_COLUMNS) + " |"
    rule = "|" + "|".join("---" if c == "task" else "---:" for c in AUDIT_COLUMNS) + "|"
    lines = [header, rule]
    for row in table.itertuples(index=False):
        cells = [str(v) if isinstance(v, str | int) else f"{v:.{_DIGITS}f}" for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: audit a test-set folder, print Markdown and/or write JSON."""
    parser = argparse.ArgumentParser(prog="python -m runners.evaluate.extraction_audit", description=__doc__)
    parser.add_argument("data_dir", type=Path, help="folder with the released test-set JSON files")
    parser.add_argument("--json", type=Path, help="write the rates to this JSON file")
    args = parser.parse_args(argv)
    table = audit_tasks(args.data_dir)
    if args.json:
        records = table.to_dict(orient="records")
        atomic_write_text(args.json, json.dumps(records, indent=1) + "\n")
    print(to_markdown(table))  # noqa: T201 - command-line output


if __name__ == "__main__":
    main()
