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
    size = namespace["fit"].coefs.set_index("term").loc["log2_size"]
    # the issue-10 reference row: CR2 by student, Satterthwaite df (R clubSandwich coef_test)
    assert abs(size["se"] - 0.3459) < 1e-4 and abs(size["df"] - 2.10) < 0.01
    assert {"estimate", "df", "p_val"} <= set(namespace["mixed"].coefs.columns)
    assert len(namespace["tables"].claims_audit) > 0
