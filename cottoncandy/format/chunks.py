"""Chunk grid arithmetic of a chunked array: where each chunk lies, which chunks a box meets.

``chunks`` holds the chunk lengths along each axis, as ``dask.array`` spells
them (``((64,), (64,), (1280, 220, 0))``); chunk indices are tuples of
positions in that grid. Empty chunks (length 0 along some axis, which
cottoncandy 0.4.0 may leave at the end of an axis) are part of the grid but
hold no element. Shared by the writer and reader of dask arrays and by the
mount's assembly of their bytes.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import Iterator, Sequence


@dataclass(frozen=True)
class ChunkGrid:
    """The chunk lengths of an array along each axis.

    Attributes
    ----------
    chunks : tuple of tuple of int
        Chunk lengths along each axis (they sum to the array's shape).
    """

    chunks: tuple[tuple[int, ...], ...]

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of chunks along each axis."""
        return tuple(len(c) for c in self.chunks)

    def offsets(self, axis: int) -> tuple[int, ...]:
        """Start of every chunk along ``axis``, plus the axis length at the end."""
        return tuple(itertools.accumulate(self.chunks[axis], initial=0))

    def chunk_offset(self, index: Sequence[int]) -> tuple[int, ...]:
        """Element offset (start corner) of the chunk ``index`` in the whole array."""
        return tuple(sum(self.chunks[ax][:i]) for ax, i in enumerate(index))

    def chunk_shape(self, index: Sequence[int]) -> tuple[int, ...]:
        """Shape of the chunk ``index``."""
        return tuple(self.chunks[ax][i] for ax, i in enumerate(index))

    def chunk_slices(self, index: Sequence[int]) -> tuple[slice, ...]:
        """Slices selecting the chunk ``index`` in the whole array."""
        start = self.chunk_offset(index)
        return tuple(slice(s, s + n) for s, n in zip(start, self.chunk_shape(index)))

    def chunk_along(self, axis: int, position: int) -> int:
        """Index of the (non-empty) chunk holding element ``position`` along ``axis``."""
        offsets = self.offsets(axis)
        if not 0 <= position < offsets[-1]:
            raise IndexError(f"position {position} outside axis {axis} of length {offsets[-1]}")
        return bisect.bisect_right(offsets, position) - 1

    def indices(self) -> Iterator[tuple[int, ...]]:
        """Every chunk index, in C order of the grid."""
        return itertools.product(*(range(n) for n in self.grid))

    def is_empty(self, index: Sequence[int]) -> bool:
        """Tell whether the chunk ``index`` holds no element."""
        return math.prod(self.chunk_shape(index)) == 0

    def chunk_range(self, axis: int, lo: int, hi: int) -> range:
        """Chunks along ``axis`` that meet the elements ``[lo, hi)``.

        The first and last chunk of the range hold elements of ``[lo, hi)``;
        empty chunks between them are included (they hold nothing to read).
        """
        offsets = self.offsets(axis)
        first = bisect.bisect_right(offsets, lo) - 1
        last = bisect.bisect_left(offsets, hi)
        return range(max(first, 0), min(last, len(offsets) - 1))

    def chunks_touching(self, box: Sequence[slice]) -> list[tuple[int, ...]]:
        """The non-empty chunks that meet ``box``, in C order.

        Parameters
        ----------
        box : sequence of slice
            One ``slice(start, stop)`` per axis (steps are not allowed), as
            :func:`cottoncandy.extensions.lazy_sources.box_index` makes them.
        """
        ranges = [self.chunk_range(axis, sel.start, sel.stop) for axis, sel in enumerate(box)]
        return [index for index in itertools.product(*ranges) if not self.is_empty(index)]
