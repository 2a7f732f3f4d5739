"""Makes ``grid_helpers`` (the small toy grid and the fake stages) importable by the grid tests.

The suite runs with ``--import-mode=importlib``, which does not put test folders on
``sys.path``; the helpers are also imported by subprocesses of the kill -9 test.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
