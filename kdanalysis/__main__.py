"""``python -m kdanalysis`` runs the command-line interface."""

from kdanalysis.cli import main

main()
