#!/usr/bin/env python
"""Rebuild the bundled paper results in ``data/`` from the paper's released CSV folder.

Usage::

    python scripts/convert_paper_results.py RAW_DIR [--out data/]

``RAW_DIR`` is the ``results/`` folder of github.com/LCS2-IIITD/KD_generalization (the ten
CSV files). Writes ``paper_results.parquet`` and ``paper_models.csv`` into ``--out``; the
mapping is documented in :mod:`kdanalysis.datasets.kd_generalization` and ``data/README.md``.
Nothing is written unless all ten files convert cleanly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kdanalysis.datasets.kd_generalization import RAW_FILES, write_paper_tables
from kdanalysis.errors import KDAnalysisError

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, convert, and return the exit code (2 on a conversion error)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw_dir", type=Path, help=f"folder with the raw CSVs ({', '.join(RAW_FILES)})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: data/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = write_paper_tables(args.raw_dir, args.out)
    except KDAnalysisError as exc:
        logging.getLogger("convert_paper_results").error("error: %s", exc)
        return 2
    for path in written:
        logging.getLogger("convert_paper_results").info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
