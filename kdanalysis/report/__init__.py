"""The study report: findings, figures and tables as a self-contained HTML page and a PDF.

>>> import kdanalysis as kd
>>> paths = kd.report.build_report(out_dir="report")        # the bundled published study
>>> paths.html, paths.pdf                                     # doctest: +SKIP

The report only presents :func:`kdanalysis.studies.run_all`'s tables (every statistic is
computed there). Modules: :mod:`~kdanalysis.report.content` (sections),
:mod:`~kdanalysis.report.findings` (sentences from the primary tests),
:mod:`~kdanalysis.report.methods_text` (the Methods text), :mod:`~kdanalysis.report.formatting`
(the only rounding), :mod:`~kdanalysis.report.render` (files, HTML, PDF),
:mod:`~kdanalysis.report.build`.
"""

from kdanalysis.report.build import FORMATS, ReportPaths, build_report, load_report_data, load_report_input

__all__ = ["FORMATS", "ReportPaths", "build_report", "load_report_data", "load_report_input"]
