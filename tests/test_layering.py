"""Layering rules of the house, read from the source: ``kdanalysis`` never imports ``runners``, no
package has an import cycle, and the ``kdanalysis`` command is whole without loading torch.

Imports are read with :mod:`ast` from every module, at module level and inside functions alike
(a lazy import is still an import); only blocks under ``if TYPE_CHECKING:`` are left out, since
they never run. Cycles are found by :class:`graphlib.TopologicalSorter`.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdanalysis.results import results_frame, write_results

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("kdanalysis", "runners")
ANALYSIS_COMMANDS = ("validate", "collect", "report")
ALL_COMMANDS = (*ANALYSIS_COMMANDS, "run-grid", "rescore")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` without the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            yield from (n for stmt in child.orelse for n in [stmt, *_walk(stmt)])
            continue
        yield child
        yield from _walk(child)


def imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """``(dotted name, line)`` of everything ``module`` imports; ``from a import b`` gives ``a.b``."""
    is_package = path.name == "__init__.py"
    for node in _walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ``modules`` that importing ``name`` names explicitly (longest match)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(package: str) -> dict[str, set[str]]:
    """Module → modules of the same package it imports (parents' ``__init__`` only when named)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {_target(name, modules) for name, _ in imported_names(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def test_kdanalysis_never_imports_runners() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for module, path in _modules("kdanalysis").items()
        for name, line in imported_names(module, path)
        if name == "runners" or name.startswith("runners.")
    ]
    assert offenders == [], "kdanalysis imports runners:\n" + "\n".join(offenders)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    try:
        graphlib.TopologicalSorter(import_graph(package)).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle in {package}: {' -> '.join(exc.args[1])}")


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "def f():\n    import runners.grid.plan\n"
        "if TYPE_CHECKING:\n    from runners.cli import app\n",
        encoding="utf-8",
    )
    names = [name for name, _ in imported_names("kdanalysis.pkg.mod", source)]
    assert names == ["typing.TYPE_CHECKING", "kdanalysis.pkg.sibling", "runners.grid.plan"]


def _commands(module: str) -> list[str]:
    """Command names of ``module.app`` and the heavy modules loaded, from a fresh interpreter."""
    code = (
        f"import sys, typer, {module} as cli;"
        "print(' '.join(sorted(typer.main.get_command(cli.app).commands)));"
        "print(' '.join(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    commands, heavy = out.stdout.split("\n")[:2]
    assert heavy == "", f"import {module} loads {heavy}"
    return commands.split()


def test_runners_cli_is_torch_free_and_has_every_command() -> None:
    assert _commands("runners.cli") == sorted(ALL_COMMANDS)
    help_text = subprocess.run(
        [sys.executable, "-m", "runners", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(command in help_text for command in ALL_COMMANDS), help_text


def test_analysis_commands_run_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    rows = [
        {
            "study": "s",
            "domain": "math",
            "task": "gsm8k",
            "student": "tiny",
            "method": "sft",
            "metric": "accuracy",
            "value": 50.0,
            "n": 2,
            "seed": 6,
        }
    ]
    table = write_results(results_frame(rows), tmp_path / "results.parquet")
    code = (
        "import sys; sys.modules.update(torch=None, transformers=None, vllm=None);"  # import torch fails
        f"sys.argv = ['kdanalysis', 'validate', {str(table)!r}];"
        "from runners.cli import main; main()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "valid results table, 1 rows" in out.stdout


def test_python_m_kdanalysis_is_the_analysis_layer_alone() -> None:
    assert _commands("kdanalysis.cli") == sorted(ANALYSIS_COMMANDS)
    help_text = subprocess.run(
        [sys.executable, "-m", "kdanalysis", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(command in help_text for command in ANALYSIS_COMMANDS), help_text


def test_console_script_points_at_the_layer_with_every_command() -> None:
    # read from pyproject.toml: installed metadata may predate the checkout
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["kdanalysis"] == "runners.cli:main"
