"""Packaging rules of the house: a torch-free analysis layer and a wheel that ships its data."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_kdanalysis_is_torch_free() -> None:
    code = (
        "import sys, kdanalysis, kdanalysis.stats, kdanalysis.studies, kdanalysis.results,"
        " kdanalysis.cli;"
        "print(' '.join(m for m in ('torch', 'transformers', 'vllm', 'runners') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_help_lists_commands() -> None:
    # the whole command (runners.cli, the console script's entry point); tests/test_layering.py
    # checks that python -m kdanalysis alone has the analysis commands
    out = subprocess.run(
        [sys.executable, "-m", "runners", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("report", "run-grid", "collect", "rescore", "validate"):
        assert command in out.stdout


def test_cli_error_is_one_line_and_nonzero(tmp_path) -> None:
    bad = tmp_path / "not_results.csv"
    bad.write_text("a,b\n1,2\n")
    out = subprocess.run(
        [sys.executable, "-m", "kdanalysis", "validate", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing column" in lines[0] and "Traceback" not in out.stderr


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """Build the wheel and install it (without dependencies) into a private folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp / "dist").glob("kdanalysis-*.whl"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(tmp / "site"),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return tmp / "site"


def test_non_editable_install_ships_data_and_templates(installed_wheel, tmp_path) -> None:
    code = textwrap.dedent("""
        import importlib.resources, json, kdanalysis
        assert "site" in kdanalysis.__file__, kdanalysis.__file__
        res = kdanalysis.load_paper_results()
        models = kdanalysis.load_paper_models()
        templates = [p.name for p in importlib.resources.files("kdanalysis._templates").iterdir()]
        grids = [p.name for p in importlib.resources.files("kdanalysis._bundled").joinpath("grids").iterdir()]
        from kdanalysis.tasks import task_table
        print(json.dumps([len(res), len(models), templates, grids, task_table().order()]))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(installed_wheel), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    n_rows, n_models, templates, grids, task_order = json.loads(out.stdout)
    assert n_rows > 1000 and n_models == 8
    assert any(name.endswith(".j2") for name in templates)
    assert {"demo.yaml", "paper.yaml"} <= set(grids)
    assert task_order[0] == "gsm8k" and task_order[-1] == "average"  # the task table ships too
