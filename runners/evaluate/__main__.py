"""``python -m runners.evaluate CONFIG.yaml [--out RUN_DIR] [--limit N] [--threads N] [--debug]``.

Evaluates the model of an :class:`~runners.evaluate.config.EvalConfig` YAML file and
writes the run folder (layout in :mod:`runners.evaluate.run`). Without ``--out`` the
folder is ``runs/eval-<config fingerprint>`` in the working directory, so the same
command resumes an interrupted run. Errors are reported as one line (exit code 2);
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kdanalysis.errors import KDAnalysisError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.evaluate", description=__doc__.split("\n\n")[1])
    parser.add_argument("config", type=Path, help="EvalConfig YAML file")
    parser.add_argument(
        "--out", type=Path, default=None, help="run folder (default: runs/eval-<fingerprint>)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="evaluate only the first N items of each task"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: the cores free at the start)"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not draw the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(message)s"
    )
    from runners.env import torch_threads
    from runners.evaluate.config import load_eval_config
    from runners.evaluate.run import run_eval

    try:
        overrides = {"limit": args.limit} if args.limit is not None else {}
        config = load_eval_config(args.config, **overrides)
        out = args.out or Path("runs") / f"eval-{config.fingerprint()}"
        with torch_threads(args.threads):
            run_dir = run_eval(config, out, show_progress=not args.no_progress)
    except KDAnalysisError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
