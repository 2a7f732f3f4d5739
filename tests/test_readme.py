"""The README's notebook example runs as written (copy-paste runnable)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_notebook_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## In a notebook", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["paper"]) > 300
    assert "np.log2(params_b)" in set(namespace["fit"].coefs["term"])
    assert set(namespace["tables"]) >= {"paper_hypotheses", "size_vs_gain"}
