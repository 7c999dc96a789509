"""Tables for people, the same way in every command: boxed on a terminal, plain columns
when piped.

On a terminal a table is drawn by rich, as wide as the terminal. Piped or redirected it is
plain text: a header line and one line per row, the columns aligned and separated by two
spaces, never folded however long a row is, an empty cell written ``-``, so that ``grep``,
``sort`` and ``awk`` see one row per line. Cells are text, never markup: addresses and
server replies may hold ``[...]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["console", "plain_lines", "show_table"]


def console() -> Console:
    """The console for stdout: a terminal's width, or unbounded when piped (no folding)."""
    terminal = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if terminal else 100_000, highlight=False)


def plain_lines(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The table as aligned plain lines: the header, then one line per row; an empty cell
    is ``-``, so that every line has as many words as columns."""
    rows = [[cell or "-" for cell in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in (list(columns), *rows)
    ]


def show_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None,
    right: Sequence[str] = (), out: Console | None = None,
) -> None:
    """Print ``rows`` under ``columns``: a rich table on a terminal (``right`` names the
    columns aligned right), plain aligned lines otherwise (the title first, when given)."""
    out = out if out is not None else console()
    if not out.is_terminal:
        if title:
            click.echo(title)
        for line in plain_lines(columns, rows):
            click.echo(line)
        return
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    out.print(table)
