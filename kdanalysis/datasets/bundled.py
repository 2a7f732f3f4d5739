"""Loaders for the data bundled with kdanalysis (package ``kdanalysis._bundled``).

The files live in the repository's top-level ``data/`` folder, which the build maps to the
package ``kdanalysis._bundled``; they are read with :mod:`importlib.resources`, so the
loaders work from an editable install, a wheel or a zip alike.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from kdanalysis.datasets.kd_generalization import MODELS_FILE, RESULTS_FILE
from kdanalysis.errors import SchemaError
from kdanalysis.results import read_models, read_results

__all__ = ["BUNDLED_PACKAGE", "load_paper_results", "load_paper_models"]

BUNDLED_PACKAGE = "kdanalysis._bundled"


def _read_bundled(name: str, reader) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    resource = resources.files(BUNDLED_PACKAGE).joinpath(name)
    if not resource.is_file():
        raise SchemaError(
            f"bundled file {name} is missing from package {BUNDLED_PACKAGE}; "
            "rebuild it with scripts/convert_paper_results.py"
        )
    with resources.as_file(resource) as path:
        return reader(path)


def load_paper_results() -> pd.DataFrame:
    """The published results of arXiv 2505.15442 as a validated results table.

    Every number of the paper's ten released CSVs, one row per value: accuracy of the
    base, SFT and KD students (metric ``accuracy``), agreement with the teacher
    (``agreement``, ``agreement2``) and rationale fidelity (``bleu``, ``bleu2``).
    See ``data/README.md`` and :mod:`kdanalysis.datasets.kd_generalization` for the mapping.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`kdanalysis.results.RESULT_COLUMNS`; ``study == "kd_generalization"``.

    Examples
    --------
    >>> import kdanalysis as kd
    >>> res = kd.load_paper_results()
    >>> res.query("metric == 'accuracy' and method == 'sft'").shape[0]
    128
    """
    return _read_bundled(RESULTS_FILE, read_results)


def load_paper_models() -> pd.DataFrame:
    """The paper's models table.

    Returns
    -------
    pandas.DataFrame
        Columns ``model, family, params_b, vocab_size, role`` (one row per model of the paper;
        ``role`` is ``student``, ``teacher`` or ``both``).
    """
    return _read_bundled(MODELS_FILE, read_models)
