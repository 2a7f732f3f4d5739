"""``python -m runners`` runs the whole ``kdanalysis`` command (analysis and execution commands)."""

from runners.cli import main

main()
