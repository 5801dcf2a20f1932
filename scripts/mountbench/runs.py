"""Running one measurement on every file system, interleaved, and keeping what went wrong.

:func:`interleave` runs a measurement on cottoncandy, each peer and the
baseline in turn, ``repeat`` times, so that all of them see the same load of
a shared machine, and keeps the medians. A peer that fails to mount is marked
unavailable from then on and a peer whose figure fails shows ``failed``; both
are said in the notes under the tables. cottoncandy failing fails the run.
"""

from __future__ import annotations

import statistics
import subprocess
from collections import defaultdict
from collections.abc import Callable, Sequence

from mountbench.common import Bench
from mountbench.figures import Outcome
from mountbench.mounts import FileSystem, LiveMount
from tests.mountutil import MountFailed

#: The key of the baseline's values in :class:`Results`.
BASELINE_RUN = "baseline"

Measure = Callable[[FileSystem], dict[str, float]]


class Results:
    """Medians of each figure on each file system (or why it has none)."""

    def __init__(self, samples: dict[str, dict[str, list[float]]], reasons: dict[str, str]):
        self._samples = samples
        self._reasons = reasons

    def values(self, figure: str) -> dict[str, Outcome]:
        """``{file system: median or reason}`` for ``figure`` (the baseline left out)."""
        found: dict[str, Outcome] = dict(self._reasons)
        found.update({name: statistics.median(values) for name, values in self._samples[figure].items()
                      if name != BASELINE_RUN})
        return found

    def baseline(self, figure: str) -> float | None:
        values = self._samples[figure].get(BASELINE_RUN)
        return statistics.median(values) if values else None


def interleave(bench: Bench, measure: Measure, *, filesystems: Sequence[FileSystem] | None = None,
               baseline: Callable[[], dict[str, float]] | None = None, repeat: int | None = None) -> Results:
    """Run ``measure(fs)`` (figure name -> value) on each file system, then ``baseline()``, ``repeat`` times."""
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    reasons: dict[str, str] = {}
    filesystems = bench.filesystems if filesystems is None else filesystems
    for _ in range(bench.args.repeat if repeat is None else repeat):
        for fs in filesystems:
            if fs.unavailable:
                reasons[fs.name] = fs.unavailable
                continue
            try:
                values = measure(fs)
            except (MountFailed, OSError, RuntimeError, subprocess.SubprocessError, ValueError) as exc:
                if not fs.is_peer:
                    raise
                if isinstance(exc, MountFailed):
                    fs.unavailable = reasons[fs.name] = "mount failed"
                else:
                    reasons[fs.name] = "failed"
                last_lines = " | ".join(str(exc).strip().splitlines()[-3:])
                bench.note(f"{fs.name}: {type(exc).__name__}: {last_lines[-600:]}")
                continue
            for figure, value in values.items():
                samples[figure][fs.name].append(value)
        if baseline is not None:
            for figure, value in baseline().items():
                samples[figure][BASELINE_RUN].append(value)
    return Results(samples, reasons)


def on_fresh_mount(measure: Callable[[LiveMount], dict[str, float]]) -> Measure:
    """A :data:`Measure` that mounts the file system anew (fresh state) and runs ``measure`` on the mount."""
    def run(fs: FileSystem) -> dict[str, float]:
        with fs.mounted() as live:
            return measure(live)

    return run

