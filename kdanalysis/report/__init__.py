"""The study report: findings, figures and tables as a self-contained HTML page and a PDF.

>>> import kdanalysis as kd
>>> paths = kd.report.build_report(out_dir="report")        # the bundled published study
>>> paths.html, paths.pdf                                     # doctest: +SKIP

The report only presents :func:`kdanalysis.studies.run_all`'s tables (every statistic is
computed there). Modules: :mod:`~kdanalysis.report.content` (sections),
:mod:`~kdanalysis.report.findings` (sentences from the primary tests),
:mod:`~kdanalysis.report.methods_text` (the Methods text), :mod:`~kdanalysis.report.formatting`
(the only rounding), :mod:`~kdanalysis.report.render` (files, HTML, PDF),
:mod:`~kdanalysis.report.build`, :mod:`~kdanalysis.report.fingerprint` (whether a report is
current). The names below load on first access (:mod:`~kdanalysis.report.build` imports the
statistics and plotting libraries), so that a light submodule such as
:mod:`~kdanalysis.report.fingerprint` can be imported alone.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FORMATS", "ReportPaths", "build_report", "load_report_data", "load_report_input"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("kdanalysis.report.build"), name)
    raise AttributeError(f"module 'kdanalysis.report' has no attribute {name!r}")
