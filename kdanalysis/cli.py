"""Command-line interface of the analysis layer: ``report``, ``collect`` and ``validate``.

:data:`app` is the ``kdanalysis`` command's typer app; :mod:`runners.cli` adds the commands
of the execution layer (``run-grid``, ``rescore``) to it and is the console script's entry
point, so the installed ``kdanalysis`` command has every command, while this module never
imports ``runners`` and works in an analysis-only install. ``python -m kdanalysis`` runs
this app alone (``python -m runners`` runs the whole command).

The commands are thin: each parses its arguments and delegates to a library function,
imported lazily so that ``kdanalysis --help`` stays fast and torch-free. Any
:class:`~kdanalysis.errors.KDAnalysisError`, and any error of the file system (a full
disk names the path and the free space), becomes one line on stderr and exit code 2
(``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kdanalysis.errors import ConfigError, KDAnalysisError, SchemaError

__all__ = ["app", "main"]

app = typer.Typer(
    name="kdanalysis",
    help="Knowledge-distillation research toolkit: run KD grids, evaluate, and report honest statistics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="Results table (.parquet or .csv) to check.")],
) -> None:
    """Check a results table against the results contract and summarise it."""
    from kdanalysis.results import read_results

    df = read_results(path)
    if df.empty:
        raise SchemaError(f"{path}: the results table has no rows")
    typer.echo(
        f"{path}: valid results table, {len(df)} rows, "
        f"{df['student'].nunique()} students, {df['task'].nunique()} tasks, "
        f"metrics: {', '.join(sorted(df['metric'].unique()))}"
    )


@app.command()
def collect(
    runs_dir: Annotated[
        Path, typer.Argument(help="Folder of run folders (a grid's runs folder), or lm-eval's --output_path.")
    ],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: RUNS_DIR).")] = None,
    source: Annotated[
        str, typer.Option("--from", help="What RUNS_DIR holds: runs (kdanalysis run folders) or lm-eval.")
    ] = "runs",
    study_map: Annotated[
        Path | None,
        typer.Option("--map", help="lm-eval: study mapping YAML; default: RUNS_DIR/study.yaml."),
    ] = None,
) -> None:
    """Collect run folders (or lm-evaluation-harness output) into results.parquet and items.parquet."""
    from kdanalysis.results import check_choice, read_items, read_results

    check_choice("--from source", source, ("runs", "lm-eval"))
    if source == "lm-eval":
        from kdanalysis.importers import write_lm_eval_import

        results_path, items_path = write_lm_eval_import(runs_dir, study_map, out or runs_dir)
    else:
        from kdanalysis.collect import write_collected

        if study_map is not None:
            raise ConfigError("--map is read only with --from lm-eval")
        results_path, items_path = write_collected(runs_dir, out)
    typer.echo(
        f"{results_path}: {len(read_results(results_path))} result rows; "
        f"{items_path}: {len(read_items(items_path))} items"
    )


@app.command()
def report(
    results: Annotated[
        Path | None,
        typer.Argument(
            help="Results table (.parquet/.csv) or a runs folder; default: the bundled published results.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("report"),
    formats: Annotated[str, typer.Option("--format", "-f", help="Comma-separated: html, pdf.")] = "html,pdf",
    title: Annotated[str | None, typer.Option("--title", help="Report title.")] = None,
    models: Annotated[
        Path | None,
        typer.Option("--models", help="Models table (model, family, params_b, ...) for sizes and families."),
    ] = None,
) -> None:
    """Build the study report: report.html, report.pdf, figures/ (PNG, SVG) and tables/ (CSV)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from kdanalysis.report import build_report, load_report_data
    from kdanalysis.report.build import DEFAULT_TITLE
    from kdanalysis.results import read_models

    data, found_models, source, items = load_report_data(results)
    models_table = read_models(models) if models is not None else found_models
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("report: starting", total=None)
        paths = build_report(
            data,
            out,
            formats=formats.split(","),
            title=title or DEFAULT_TITLE,
            progress=lambda message: bar.update(task, description=f"report: {message}"),
            models=models_table,
            source=source,
            items=items,
        )
    for message in paths.messages:
        console.print(f"[yellow]note:[/] {message}", highlight=False, soft_wrap=True)
    for label, path in (("html", paths.html), ("pdf", paths.pdf)):
        if path is not None:
            typer.echo(f"{label}: {path}")
    typer.echo(f"figures: {len(paths.figures)} files in {paths.out_dir / 'figures'}")
    typer.echo(f"tables: {len(paths.tables)} files in {paths.out_dir / 'tables'}")


def main() -> None:
    """Run :data:`app` with the commands registered so far; errors become one line (exit code 2)."""
    try:
        app()
    except KDAnalysisError as exc:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # the file system refused (full disk, permissions): one line too
        if _state["debug"]:
            raise
        from kdanalysis.io import disk_full_error

        error = disk_full_error(exc.filename or Path.cwd(), exc)
        message = str(error) if error is not None else f"{exc.filename or 'a file'}: {exc.strerror or exc}"
        console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)
