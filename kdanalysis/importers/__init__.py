"""Importers: other tools' evaluation outputs into the results contract.

- :func:`import_lm_eval`, :func:`write_lm_eval_import` — lm-evaluation-harness output
  folders (``results_*.json``, ``samples_*.jsonl``) with a study mapping file
  (:mod:`kdanalysis.importers.lm_eval_files`);
- :class:`StudyMap`, :func:`read_study_map` — the mapping file (:mod:`kdanalysis.importers.mapping`).
"""

from kdanalysis.importers.lm_eval_files import (
    IMPORTED_METRICS,
    LMEvalRun,
    find_lm_eval_runs,
    import_lm_eval,
    write_lm_eval_import,
)
from kdanalysis.importers.mapping import RunEntry, StudyMap, TaskEntry, read_study_map

__all__ = [
    "IMPORTED_METRICS",
    "LMEvalRun",
    "RunEntry",
    "StudyMap",
    "TaskEntry",
    "find_lm_eval_runs",
    "import_lm_eval",
    "read_study_map",
    "write_lm_eval_import",
]
