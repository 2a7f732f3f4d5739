"""Report fixtures: the bundled study rendered once, and a small synthetic results table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdanalysis.report import ReportPaths, build_report
from kdanalysis.results import results_frame
from kdanalysis.tasks import bundled_tasks

SYNTHETIC_TASKS = {task: bundled_tasks()[task].test_size for task in ("gsm8k", "svamp", "aqua")}
SYNTHETIC_PAIRS = (
    ("Qwen2.5-7B", "Qwen2.5-0.5B"),
    ("Qwen2.5-7B", "Qwen2.5-1.5B"),
    ("Llama-3.1-8B", "Llama-3.2-1B"),
    ("Llama-3.1-8B", "Llama-3.2-3B"),
)
#: A model name carrying markup: the report must show it as text.
HOSTILE_NAME = "<script>alert('x')</script>Qwen2.5-0.5B"


def synthetic_results(student_names: dict[str, str] | None = None, seed: int = 0) -> pd.DataFrame:
    """One domain (math), three tasks, four pairs, fkl/rkl at tau = 1: no ablations, no agreement/BLEU.

    ``student_names`` renames students (e.g. to inject markup into a model name).
    """
    rng = np.random.default_rng(seed)
    names = student_names or {}
    records = []

    def add(
        student: str,
        task: str,
        method: str,
        value: float,
        teacher: str = "none",
        temperature: float = float("nan"),
    ) -> None:
        records.append(
            {
                "study": "synthetic",
                "domain": "math",
                "task": task,
                "student": names.get(student, student),
                "teacher": teacher,
                "method": method,
                "temperature": temperature,
                "metric": "accuracy",
                "value": float(np.clip(value, 0, 100)),
                "n": SYNTHETIC_TASKS[task],
                "seed": 1,
                "teacher_kind": "none" if teacher == "none" else "task_aware",
            }
        )

    teachers = sorted({t for t, _ in SYNTHETIC_PAIRS})
    students = [s for _, s in SYNTHETIC_PAIRS]
    for task in SYNTHETIC_TASKS:
        for model in teachers:
            add(model, task, "sft", rng.uniform(60, 80))
        for student in students:
            base = rng.uniform(10, 30)
            add(student, task, "base", base)
            add(student, task, "sft", base + rng.uniform(10, 20))
        for teacher, student in SYNTHETIC_PAIRS:
            for method in ("fkl", "rkl"):
                add(student, task, method, 40 + rng.normal(3, 4), teacher=teacher, temperature=1.0)
    return results_frame(records)


@pytest.fixture(scope="session")
def bundled_report(tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    """The report of the bundled published results, HTML and PDF (built once)."""
    return build_report(out_dir=tmp_path_factory.mktemp("bundled") / "report")


@pytest.fixture(scope="session")
def synthetic_report(tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    """The HTML report of :func:`synthetic_results`, one student named :data:`HOSTILE_NAME`."""
    results = synthetic_results({"Qwen2.5-0.5B": HOSTILE_NAME})
    return build_report(
        results,
        out_dir=tmp_path_factory.mktemp("synthetic") / "report",
        formats=("html",),
        title="Synthetic study",
        workers=1,
    )


def read_html(paths: ReportPaths) -> str:
    assert paths.html is not None
    return Path(paths.html).read_text(encoding="utf-8")
