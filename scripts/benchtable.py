"""The table the benchmark scripts print: fixed-width columns, the only output on stdout.

:func:`format_table` lays out any header and cells; :class:`Row` and
:func:`print_table` are the six-column table of ``bench_api.py`` (figure,
value, baseline, ratio, target, pass). ``bench_mount.py`` builds its wider
rows in ``mountbench/figures.py`` and prints them with :func:`format_table`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Row:
    """One line of the table; ``passed`` is None when there is no target."""

    figure: str
    value: str
    baseline: str
    ratio: str
    target: str
    passed: bool | None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The table as text: the first column left-aligned, the others right-aligned, a rule under the header."""
    cells = [list(headers)] + [list(row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table(rows: list[Row], title: str, baseline: str = "boto3 baseline") -> None:
    """Print the six-column table under ``title``; ``baseline`` heads the third column."""
    headers = ("figure", "value", baseline, "ratio", "target", "pass")
    print(f"\n{title}")
    print(format_table(headers, [(r.figure, r.value, r.baseline, r.ratio, r.target,
                                  "" if r.passed is None else ("pass" if r.passed else "FAIL")) for r in rows]))
