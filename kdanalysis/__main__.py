"""``python -m kdanalysis`` runs the analysis commands (report, collect, validate).

``run-grid`` and ``rescore`` belong to the execution layer: use the installed ``kdanalysis``
command or ``python -m runners``.
"""

from kdanalysis.cli import main

main()
