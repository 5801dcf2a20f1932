"""The rows of the mount benchmark's table: one figure on every file system, its ratios and targets.

A :class:`Figure` holds one measured quantity for cottoncandy and each peer
(a number, or the reason there is none: ``mount failed``, ``not installed``),
optionally a baseline measured in the same run (raw boto3, or cottoncandy
0.4.0), and the targets it is held to. Every ratio is cottoncandy's value
divided by the reference's, in the figure's own unit: below 1 is better for
times, latencies and memory, above 1 for throughput. The best peer is the one
with the best value of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from benchtable import format_table
from mountbench.mounts import OURS

#: A measured value, or why there is none.
Outcome = float | str
#: ``Target.of`` naming the best peer of the run.
BEST_PEER = "best peer"
#: ``Target.of`` naming the figure's baseline.
BASELINE = "baseline"


@dataclass(frozen=True)
class Unit:
    """How a figure is printed, and which way is better."""

    symbol: str
    digits: int
    higher_is_better: bool = False

    def format(self, value: float) -> str:
        return f"{value:.{self.digits}f} {self.symbol}".rstrip()


SECONDS = Unit("s", 3)
MS = Unit("ms", 2)
MB_PER_S = Unit("MB/s", 0, higher_is_better=True)
MIB = Unit("MiB", 0)
FACTOR = Unit("", 2)  # a plain number, e.g. bytes fetched per byte read


@dataclass(frozen=True)
class Target:
    """A goal: cottoncandy's value (``of=''``) or its ratio to a reference, ``op`` (``<=``/``>=``) ``bound``.

    ``of`` is ``''`` for an absolute bound, a peer's name, :data:`BEST_PEER`
    or :data:`BASELINE`; ``note`` says where the bound comes from.
    """

    op: str
    bound: float
    of: str = ""
    note: str = ""

    def text(self, figure: Figure) -> str:
        goal = f"{self.bound:g}x {figure.baseline_name if self.of == BASELINE else self.of}" if self.of \
            else figure.unit.format(self.bound)
        return f"{self.op} {goal}" + (f" ({self.note})" if self.note else "")

    def met(self, figure: Figure) -> bool | None:
        """Whether the figure meets it; None when a value it needs is missing."""
        ours = figure.values.get(OURS)
        if not isinstance(ours, float):
            return None
        value = ours
        if self.of:
            reference = figure.reference(self.of)
            if reference is None:
                return None
            value = ours / reference
        return value <= self.bound if self.op == "<=" else value >= self.bound


@dataclass
class Figure:
    """One row: ``values`` maps a file system's name to its :data:`Outcome` (absent: not measured there)."""

    label: str
    unit: Unit
    values: dict[str, Outcome]
    baseline: Outcome | None = None
    baseline_name: str = "boto3"
    targets: Sequence[Target] = field(default_factory=tuple)

    def best_peer(self) -> tuple[str, float] | None:
        """The peer with the best value, and that value; None if no peer has one."""
        measured = [(name, v) for name, v in self.values.items() if name != OURS and isinstance(v, float)]
        if not measured:
            return None
        pick = max if self.unit.higher_is_better else min
        return pick(measured, key=lambda item: item[1])

    def reference(self, of: str) -> float | None:
        """The value a ratio is taken against: a peer's, the best peer's or the baseline."""
        if of == BEST_PEER:
            best = self.best_peer()
            return best[1] if best else None
        value = self.baseline if of == BASELINE else self.values.get(of)
        return value if isinstance(value, float) and value > 0 else None

    def ratio(self, of: str) -> str:
        ours, reference = self.values.get(OURS), self.reference(of)
        if not isinstance(ours, float) or reference is None:
            return "-"
        suffix = f" {self.best_peer()[0]}" if of == BEST_PEER else ""
        return f"{ours / reference:.2f}x{suffix}"

    def verdict(self) -> str:
        """``pass``, ``FAIL``, ``no ref`` (a value a target needs is missing) or empty (no target)."""
        verdicts = [target.met(self) for target in self.targets]
        if not verdicts:
            return ""
        if False in verdicts:
            return "FAIL"
        return "no ref" if None in verdicts else "pass"

    def cells(self, columns: Sequence[str]) -> list[str]:
        """The row's cells under :func:`headers` ``(columns)``."""
        def show(value: Outcome | None) -> str:
            if value is None:
                return "-"
            return self.unit.format(value) if isinstance(value, float) else value

        peer_ratio = [self.ratio(BEST_PEER)] if len(columns) > 1 else []
        baseline = "-" if self.baseline is None else f"{self.baseline_name} {show(self.baseline)}"
        return [self.label, *(show(self.values.get(name)) for name in columns), *peer_ratio, baseline,
                self.ratio(BASELINE), "; ".join(t.text(self) for t in self.targets), self.verdict()]


def headers(columns: Sequence[str]) -> list[str]:
    """Header of the table for file systems ``columns`` (cottoncandy first)."""
    peer_ratio = ["vs best peer"] if len(columns) > 1 else []
    return ["figure", *columns, *peer_ratio, "baseline", "vs baseline", "target", "pass"]


def render(figures: Sequence[Figure], columns: Sequence[str]) -> str:
    """The table of ``figures`` as text."""
    return format_table(headers(columns), [figure.cells(columns) for figure in figures])
