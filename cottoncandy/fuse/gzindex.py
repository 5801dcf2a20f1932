"""The mount's gzip checkpoint index: decoder snapshots per object version, bounded in memory.

A checkpoint is a snapshot of a gzip decoder (``decompressobj().copy()``) at
an output offset that is a multiple of the checkpoint interval, with the input
offset it had consumed; :mod:`cottoncandy.fuse.gzstream` resumes decoding from
the nearest one. The :class:`GzipIndex` holds them per ``(key, etag)``,
bounded in the bytes they take (:data:`SNAPSHOT_BYTES` each; the mount carves
this budget out of its block cache's, see :class:`~cottoncandy.fuse.reader.ReadPath`):
over it, the object holding the most keeps every other checkpoint, its
spacing doubling, so random reads get a bit slower everywhere rather than much
slower for whole objects. It is also bounded in the number of objects (least
recently used forgotten first), and only the :data:`MAX_CURSORS` most recently
used objects keep a live decoder. Snapshots cannot be pickled; the index is
in memory only.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["GzipIndex", "GzipStats", "ObjectState", "SNAPSHOT_BYTES", "MAX_CURSORS"]

#: Memory of one checkpoint: a decoder snapshot (measured with tracemalloc: zlib-ng
#: 41.3 KiB, zlib 39.2 KiB) and its list entries.
SNAPSHOT_BYTES = 42 << 10
#: Objects that keep a live decoder (about a snapshot plus up to two fetched ranges each).
MAX_CURSORS = 8


@dataclass(frozen=True)
class GzipStats:
    """Counters of gzip decoding (for tests and benchmarks).

    Attributes
    ----------
    bytes_decompressed : int
        Output bytes produced by zlib.
    bytes_fetched : int
        Compressed bytes fetched.
    restarts : int
        Decodes started from byte 0.
    checkpoint_resumes : int
        Decodes resumed from a checkpoint.
    cursor_resumes : int
        Decodes continued from the live decoder of a previous one.
    checkpoints : int
        Checkpoints held now.
    """

    bytes_decompressed: int
    bytes_fetched: int
    restarts: int
    checkpoint_resumes: int
    cursor_resumes: int
    checkpoints: int


class ObjectState:
    """Checkpoints and the live cursor of one ``(key, etag)``; ``lock`` serialises its decodes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.offsets: list[int] = []  # output offsets, ascending
        self.snapshots: list[tuple[int, Any]] = []  # (input offset, decompressobj of zlib, isal or zlib-ng)
        self.stride = 1  # keep checkpoints at multiples of stride * interval
        self.cursor: Any = None  # the live decoder of the last decode (a gzstream cursor)

    def best(self, out_off: int) -> int:
        """Index of the last checkpoint at or before ``out_off``, or -1."""
        return bisect.bisect_right(self.offsets, out_off) - 1


class GzipIndex:
    """Checkpoints of every gzip object of a mount, bounded in number.

    Parameters
    ----------
    interval : int
        Output bytes between checkpoints (a multiple of the gzip block size).
    max_bytes : int
        Bound on the memory of the snapshots held for all objects together
        (:data:`SNAPSHOT_BYTES` each); less than one snapshot: none are kept.
    max_checkpoints : int, optional
        A tighter bound on their number.
    max_objects : int
        Bound on the objects whose checkpoints are kept.
    """

    def __init__(self, interval: int, max_bytes: int = 64 << 20, max_checkpoints: int | None = None,
                 max_objects: int = 256):
        by_bytes = max(0, max_bytes) // SNAPSHOT_BYTES
        if interval <= 0 or (max_checkpoints is not None and max_checkpoints < 0) or max_objects < 1:
            raise ValueError("checkpoint interval and max_objects must be positive, max_checkpoints >= 0")
        self.interval = interval
        self.max_checkpoints = by_bytes if max_checkpoints is None else min(by_bytes, max_checkpoints)
        self.max_objects = max_objects
        self._states: OrderedDict[tuple[str, str], ObjectState] = OrderedDict()
        self._lock = threading.Lock()
        self._counts = {"bytes_decompressed": 0, "bytes_fetched": 0, "restarts": 0,
                        "checkpoint_resumes": 0, "cursor_resumes": 0}

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counts[name] += n

    def stats(self) -> GzipStats:
        """Snapshot of the counters."""
        with self._lock:
            held = sum(len(s.offsets) for s in self._states.values())
            return GzipStats(checkpoints=held, **self._counts)

    def state(self, key: str, etag: str) -> ObjectState:
        """The state of ``(key, etag)``, created if needed, marked recently used.

        The object used :data:`MAX_CURSORS` objects ago loses its live decoder
        (if no decode holds it now; a later one will, then).
        """
        with self._lock:
            st = self._states.get((key, etag))
            if st is None:
                st = self._states[(key, etag)] = ObjectState()
            else:
                self._states.move_to_end((key, etag))
            if len(self._states) > MAX_CURSORS:
                for old in list(self._states.values())[:-MAX_CURSORS]:
                    if old.cursor is not None and old.lock.acquire(blocking=False):
                        old.cursor = None
                        old.lock.release()
            return st

    def wants(self, st: ObjectState, out_off: int) -> bool:
        """Whether a checkpoint belongs at output offset ``out_off``."""
        if not self.max_checkpoints or out_off % (self.interval * st.stride):
            return False
        i = st.best(out_off)
        return i < 0 or st.offsets[i] != out_off

    def add(self, st: ObjectState, out_off: int, in_off: int, dobj: Any) -> None:
        """Store a snapshot (the caller holds ``st.lock``), enforcing the bounds.

        Over the bound, the object holding the most checkpoints is thinned
        (every other one dropped, its spacing doubled): random reads get a bit
        slower everywhere rather than much slower for whole objects. Objects
        beyond ``max_objects`` are forgotten least recently used first.
        """
        i = st.best(out_off) + 1
        st.offsets.insert(i, out_off)
        st.snapshots.insert(i, (in_off, dobj))
        with self._lock:
            while len(self._states) > self.max_objects:
                oldest = next(iter(self._states))
                if self._states[oldest] is st:
                    self._states.move_to_end(oldest)
                    continue
                del self._states[oldest]
            total = sum(len(s.offsets) for s in self._states.values())
            if st not in self._states.values():
                total += len(st.offsets)
            while total > self.max_checkpoints:
                victim, locked = self._fattest(st)
                try:
                    total -= _thin(victim, self.interval)
                finally:
                    if locked:
                        victim.lock.release()

    def _fattest(self, st: ObjectState) -> tuple[ObjectState, bool]:
        """The state with the most checkpoints that may be thinned now, and whether we locked it.

        The caller holds ``st.lock`` and ``self._lock``. Another object's state
        is taken only if its lock is free right now (never wait for it: its
        holder may be waiting for ``self._lock``).
        """
        for cand in sorted([*self._states.values(), st], key=lambda s: len(s.offsets), reverse=True):
            if cand is st:
                return st, False
            if cand.lock.acquire(blocking=False):
                return cand, True
        return st, False


def _thin(st: ObjectState, interval: int) -> int:
    """Double the checkpoint spacing of ``st``; return how many checkpoints were dropped."""
    before = len(st.offsets)
    st.stride *= 2
    step = interval * st.stride
    keep = [j for j, off in enumerate(st.offsets) if off % step == 0]
    st.offsets = [st.offsets[j] for j in keep]
    st.snapshots = [st.snapshots[j] for j in keep]
    return before - len(keep)
