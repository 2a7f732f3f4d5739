"""``python -m runners.distill CONFIG.yaml [--out RUN_DIR]``: one distillation run with a progress bar.

Multi-GPU: ``accelerate launch -m runners.distill CONFIG.yaml --out RUN_DIR`` (DDP; only
process 0 draws the bar and writes files). Errors the user can fix end in one line on
stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from kdanalysis.errors import KDAnalysisError

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, help=__doc__)


class _ProgressBar:
    """A rich progress bar fed by the trainer's per-step callback."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]distill"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:,.0f} tok/s"),
            TimeRemainingColumn(),
        )
        self.task: Any = None

    def __call__(self, record: dict[str, Any]) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("train", total=record["total_steps"], loss=0.0, tps=0.0)
        self.progress.update(
            self.task, completed=record["step"], loss=record["loss"], tps=record["tokens_per_s"]
        )

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()


@app.command()
def distill(
    config: Annotated[Path, typer.Argument(help="DistillConfig YAML file")],
    out: Annotated[Path | None, typer.Option(help="run folder (default: runs/<config file stem>)")] = None,
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads (default: the cores free at the start)")
    ] = None,
) -> None:
    """Train one student as CONFIG.yaml describes and write its run folder."""
    from runners.distill.run import run_distill
    from runners.env import torch_threads

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bar = _ProgressBar()
    try:
        with torch_threads(threads):
            run_dir = run_distill(config, out or Path("runs") / config.stem, callbacks=[bar])
    except KDAnalysisError as err:
        bar.close()
        if debug:
            raise
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    bar.close()
    if int(os.environ.get("RANK", "0")) == 0:  # one line, also under torchrun / accelerate launch
        typer.echo(str(run_dir))


def main() -> None:
    """Console entry point."""
    app(prog_name="python -m runners.distill")


if __name__ == "__main__":
    main()
