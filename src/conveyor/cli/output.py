"""What the commands print, on a terminal and in a pipe.

On a terminal, tables are rich tables fitted to its width (long cells end with `…`). Anywhere
else (`conveyor workers | cut -f2`, a file, a script) nothing is cut: a table is tab-separated
values, a header line then one line per row, with tabs and line breaks inside a cell written as
`\\t` and `\\n`, and its title and notes go to stderr, so that stdout holds the rows only.
`--json` prints the API's own answers instead, times in ISO 8601 UTC.

Times are shown in the local timezone, to the second (`2026-12-07 14:03:12 CET`). Text that
came from the server (task names, errors, results) is never read as rich markup.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

Cell = str | Text
WIDE = 100_000
"""The width of a console that is not a terminal: wide enough that no line is ever wrapped."""


def on_terminal(stderr: bool = False) -> bool:
    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def console(stderr: bool = False) -> Console:
    """A rich Console for stdout (or stderr): the terminal's, or one that never wraps a line and
    writes no colour when it is not a terminal."""
    if on_terminal(stderr):
        return Console(stderr=stderr)
    return Console(
        stderr=stderr, width=WIDE, soft_wrap=True, no_color=True, highlight=False, emoji=False
    )


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    justify: Literal["left", "right"] = "left"
    min_width: int | None = None
    wrap: bool = False
    """On a terminal, wrap this column's long cells instead of cutting them."""


def print_table(
    columns: Sequence[Column | str],
    rows: Iterable[Sequence[Cell]],
    *,
    title: str | None = None,
) -> None:
    """A table on stdout: rich on a terminal, tab-separated values elsewhere."""
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    if not on_terminal():
        if title:
            click.echo(title, err=True)
        click.echo("\t".join(c.name for c in cols))
        for row in rows:
            click.echo("\t".join(_tsv(cell) for cell in row))
        return
    table = Table(title=title)
    for c in cols:
        table.add_column(
            c.name,
            justify=c.justify,
            no_wrap=not c.wrap,
            overflow="fold" if c.wrap else "ellipsis",
            min_width=c.min_width,
        )
    for row in rows:
        table.add_row(*(_rich(cell, c.wrap) for cell, c in zip(row, cols, strict=True)))
    console().print(table)


def _rich(cell: Cell, wrap: bool) -> Text:
    text = cell.copy() if isinstance(cell, Text) else Text(cell)
    if not wrap:  # one line per row: the cell is cut at the column's width, with an ellipsis
        text.plain = " ".join(text.plain.splitlines())
    return text


def note(text: str) -> None:
    """A line about the output (a cursor, a total), not part of it: stderr when piped."""
    click.echo(text, err=not on_terminal())


def _tsv(cell: Cell) -> str:
    text = cell.plain if isinstance(cell, Text) else cell
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


def local_time(moment: datetime | None, *, milliseconds: bool = False) -> str:
    """`moment` in the local timezone, readable: `2026-12-07 14:03:12 CET`; "" for None."""
    if moment is None:
        return ""
    local = moment.astimezone()
    clock = local.strftime("%H:%M:%S") + (
        f".{local.microsecond // 1000:03d}" if milliseconds else ""
    )
    return f"{local:%Y-%m-%d} {clock} {local:%Z}".rstrip()


def duration(span: timedelta | float) -> str:
    """A duration as people say it: 850 ms, 12.5 s, 3 min 20 s, 2 h 05 min."""
    seconds = span.total_seconds() if isinstance(span, timedelta) else float(span)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
