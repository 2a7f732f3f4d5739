"""The ``kdanalysis`` command: the analysis app of :mod:`kdanalysis.cli` plus ``run-grid`` and ``rescore``.

Importing this module adds the execution layer's commands to :data:`kdanalysis.cli.app`;
the console script ``kdanalysis`` and ``python -m runners`` run :func:`main`. The commands
import their runners inside the function, so ``kdanalysis --help`` loads no torch and an
analysis-only install (no torch) still runs ``report``, ``collect`` and ``validate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdanalysis.cli import app, main
from kdanalysis.runfolder import RESULTS_FILE

__all__ = ["app", "main"]


@app.command()
def rescore(
    run_dir: Annotated[Path, typer.Argument(help="Run folder with items.parquet and run_meta.json.")],
    extractor: Annotated[
        str, typer.Option("--extractor", "-e", help="Answer extractor: published or strict.")
    ] = "published",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the results table here instead of updating the run folder."),
    ] = None,
) -> None:
    """Re-score a run's saved outputs with another answer extractor (no model needed)."""
    from runners.evaluate.rescore import rescore_run

    _, results = rescore_run(run_dir, extractor, out=out)
    acc = results[results["metric"] == "accuracy"]
    where = out if out is not None else run_dir / RESULTS_FILE
    summary = ", ".join(
        f"{t} {v:.2f}% (n={n})" for t, v, n in zip(acc["task"], acc["value"], acc["n"], strict=True)
    )
    typer.echo(f"{run_dir}: re-scored with {extractor!r}: {summary}; wrote {where}")


@app.command("run-grid")
def run_grid(
    grid: Annotated[str, typer.Argument(help="Grid YAML file, or a bundled grid name (demo, paper).")],
    runs_dir: Annotated[
        Path | None, typer.Option("--runs-dir", "-o", help="Runs folder (default: runs/<study>).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show stages, states, estimate, missing inputs; run nothing.")
    ] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Recompute failed cells.")] = False,
    list_cells: Annotated[bool, typer.Option("--list", help="With --dry-run: one line per cell.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No live progress bar.")] = False,
    report: Annotated[
        bool | None,
        typer.Option(
            "--report/--no-report",
            help="Build the report at the end if its inputs changed (default: the grid's setting).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="torch threads per cell (default: cores free at its start)"),
    ] = None,
) -> None:
    """Run (or resume) a KD grid: train, evaluate, measure fidelity, collect results."""
    from runners.grid.command import run_grid_command

    code = run_grid_command(
        grid,
        runs_dir,
        dry_run=dry_run,
        retry_failed=retry_failed,
        list_cells=list_cells,
        progress=not no_progress,
        report=report,
        threads=threads,
    )
    if code:
        raise typer.Exit(code)
