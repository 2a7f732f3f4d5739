"""The report's building blocks: sections holding paragraphs, figures and tables.

A :class:`Section` is either present (with content) or omitted (with a short note saying
which data it would need). Figures are described by a :class:`FigureSpec` — a plotting
function and its arguments — and drawn later, all together, by
:mod:`kdanalysis.report.render`; tables keep their raw values (written to CSV as they are)
and are rounded only when displayed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["FigureSpec", "TableSpec", "Section"]


@dataclass(frozen=True)
class FigureSpec:
    """A figure to draw: ``plot(*args, **kwargs)`` returns a matplotlib Figure.

    Attributes
    ----------
    id : str
        File stem under ``figures/`` and HTML anchor.
    title, caption : str
        Shown above and below the figure.
    plot : callable
        A module-level plotting function (picklable, so figures can be drawn in worker
        processes).
    args, kwargs
        Its arguments.
    """

    id: str
    title: str
    caption: str
    plot: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableSpec:
    """A table: raw values (written to ``tables/<id>.csv``) and the columns displayed.

    Attributes
    ----------
    id : str
        File stem under ``tables/`` and HTML anchor.
    title, caption : str
        Shown above and below the table.
    data : DataFrame
        Full-precision values; all of them go to the CSV.
    columns : mapping, optional
        Displayed columns: raw column → header (default: every column, as named).
    display_rows : DataFrame, optional
        A subset of ``data`` rows to display (default: all); the caption should say so.
    show : bool
        False for tables that only back a figure: the report links the CSV instead.
    """

    id: str
    title: str
    caption: str
    data: pd.DataFrame
    columns: Mapping[str, str] | None = None
    display_rows: pd.DataFrame | None = None
    show: bool = True

    def displayed(self) -> tuple[pd.DataFrame, list[str]]:
        """The rows and columns shown in the report (raw column names) and their headers."""
        frame = self.data if self.display_rows is None else self.display_rows
        if self.columns is None:
            return frame, [str(c) for c in frame.columns]
        return frame.loc[:, list(self.columns)], list(self.columns.values())


@dataclass
class Section:
    """One report section.

    Attributes
    ----------
    id, title : str
        Anchor and heading.
    paragraphs : list of str
        Text before the figures (plain text; escaped when rendered).
    bullets : list of str
        Findings or facts shown as a list.
    figures, tables : list
        :class:`FigureSpec` and :class:`TableSpec` items, in display order.
    note : str
        Why the section is omitted; empty for a present section.
    """

    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    figures: list[FigureSpec] = field(default_factory=list)
    tables: list[TableSpec] = field(default_factory=list)
    note: str = ""

    @property
    def present(self) -> bool:
        """True unless the section was omitted."""
        return not self.note

    @classmethod
    def omitted(cls, id: str, title: str, note: str) -> Section:
        """A section left out, with the reason."""
        return cls(id=id, title=title, note=note)
