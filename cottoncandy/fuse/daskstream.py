"""The C-order bytes of a whole dask array, gathered from its parts on the fly.

A byte range of the array is a range of elements in C order. Such a range
splits into at most ``2 * ndim - 1`` *rectangles*: a fixed index on the
leading axes, a run along one axis ``k``, and everything along the axes after
``k``. A rectangle meets each part in a box whose bytes are **contiguous** in a
C-order part (fixed leading indices, a run on ``k``, the part's whole extent
after ``k``), so every piece is one ranged read of the part's decoded stream,
copied into place with one strided numpy assignment. F-order parts are read as
the span covering the box and viewed with F strides. This is exact for any
chunking; for the common ones (chunks along the first or the last axis only)
a read touches exactly the bytes it returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..backends.base import ObjectInfo
from ..errors import ArrayFormatError
from ..format.manifests import DaskManifest
from ..format.metadata import ArrayMeta
from .blocks import BlockStream, ReadContext

__all__ = ["DaskStream", "decompose"]

StreamFactory = Callable[[str, str, int, ArrayMeta], BlockStream]


def decompose(shape: tuple[int, ...], start: int, stop: int) -> Iterator[tuple[tuple[int, ...], int, int, int]]:
    """Split the C-order element range ``[start, stop)`` into rectangles.

    Yields
    ------
    (prefix, k, lo, hi)
        Elements whose index starts with ``prefix`` (length ``k``), has
        ``lo <= index[k] < hi`` and anything on the axes after ``k``.
    """
    ndim = len(shape)
    strides = [math.prod(shape[a + 1:]) for a in range(ndim)]
    while start < stop:
        idx = []
        rem = start
        for s in strides:
            idx.append(rem // s)
            rem %= s
        k = ndim - 1
        while k > 0 and idx[k] == 0:
            k -= 1
        # idx[k+1:] are all zero: whole sub-blocks along k fit if the range allows
        while True:
            n = min(shape[k] - idx[k], (stop - start) // strides[k])
            if n > 0:
                break
            k += 1
        yield tuple(idx[:k]), k, idx[k], idx[k] + n
        start += n * strides[k]


@dataclass
class _Part:
    stream: BlockStream
    shape: tuple[int, ...]
    offset: tuple[int, ...]  # element offset of the chunk in the whole array
    strides: tuple[int, ...]  # byte strides of the part's stored order


#: ``(rect_pos, rect_shape, part, span_start, span_len, box_shape, dst)``: one piece of a read.
_Piece = tuple[int, tuple[int, ...], _Part, int, int, tuple[int, ...], tuple[slice, ...]]


def _byte_strides(shape: tuple[int, ...], itemsize: int, order: str) -> tuple[int, ...]:
    axes = range(len(shape)) if order == "F" else range(len(shape) - 1, -1, -1)
    strides = [0] * len(shape)
    step = itemsize
    for a in axes:
        strides[a] = step
        step *= shape[a]
    return tuple(strides)


class DaskStream:
    """The whole array's C-order bytes (``size`` = ``prod(shape) * itemsize``).

    Parameters
    ----------
    ctx : ReadContext
    manifest : DaskManifest
    parts : dict
        Part key -> ObjectInfo. Parts without metadata are HEADed here.
    make_stream : callable
        ``make_stream(key, etag, body_size, meta) -> BlockStream`` for one part.

    Raises
    ------
    ArrayFormatError
        A non-empty chunk's part is missing, or its metadata disagrees with the
        manifest (dtype, shape).
    """

    def __init__(self, ctx: ReadContext, manifest: DaskManifest, parts: dict[str, ObjectInfo],
                 make_stream: StreamFactory):
        self.ctx = ctx
        self.manifest = manifest
        self.key = manifest.key
        self.shape = manifest.shape
        self.dtype = manifest.dtype
        self.itemsize = manifest.dtype.itemsize
        self.size = manifest.nbytes
        self.block_size = ctx.block_size
        self._parts: dict[tuple[int, ...], _Part] = {}
        if self.size == 0:
            return
        for index, part_key in manifest.nonempty_parts().items():
            info = parts.get(part_key)
            if info is None:
                raise ArrayFormatError(f"{self.key}: part {part_key} of chunk {list(index)} is missing", part_key)
            if info.metadata is None:
                info = ctx.backend.head(part_key)
            meta = ArrayMeta.from_metadata(info.metadata or {}, part_key)
            chunk_shape = manifest.chunk_shape(index)
            if meta.dtype != self.dtype or meta.shape != chunk_shape:
                raise ArrayFormatError(
                    f"{part_key}: part is {meta.dtype.str} {meta.shape}, manifest {self.key} says "
                    f"{self.dtype.str} {chunk_shape}", part_key)
            self._parts[index] = _Part(
                stream=make_stream(part_key, info.etag, info.size, meta),
                shape=chunk_shape,
                offset=manifest.chunk_offset(index),
                strides=_byte_strides(chunk_shape, self.itemsize, meta.order),
            )

    # -- planning ------------------------------------------------------------
    def _plan(self, e0: int, e1: int) -> Iterator[_Piece]:
        """Yield ``(rect_pos, rect_shape, part, span_start, span_len, box_shape, dst)`` for ``[e0, e1)``.

        ``rect_pos`` is the rectangle's first element relative to ``e0``;
        ``dst`` the slices of the piece inside the rectangle.
        """
        pos = 0
        ndim = len(self.shape)
        for prefix, k, lo, hi in decompose(self.shape, e0, e1):
            rect_shape = (hi - lo,) + self.shape[k + 1:]
            box = [slice(prefix[a], prefix[a] + 1) for a in range(k)] + [slice(lo, hi)]
            box += [slice(0, self.shape[a]) for a in range(k + 1, ndim)]
            for index in self.manifest.chunks_touching(box):
                part = self._parts[index]
                off, shp = part.offset, part.shape
                box_lo = [prefix[a] - off[a] for a in range(k)]
                box_lo.append(max(lo, off[k]) - off[k])
                box_hi = [b + 1 for b in box_lo[:k]]
                box_hi.append(min(hi, off[k] + shp[k]) - off[k])
                box_lo += [0] * (ndim - k - 1)
                box_hi += list(shp[k + 1:])
                box_shape = tuple(h - l for l, h in zip(box_lo[k:], box_hi[k:]))
                start = sum(l * s for l, s in zip(box_lo, part.strides))
                last = sum((h - 1) * s for h, s in zip(box_hi, part.strides))
                dst: tuple[slice, ...] = (slice(box_lo[k] + off[k] - lo, box_hi[k] + off[k] - lo),)
                dst += tuple(slice(off[a], off[a] + shp[a]) for a in range(k + 1, ndim))
                yield pos, rect_shape, part, start, last + self.itemsize - start, box_shape, dst
            pos += math.prod(rect_shape)

    def _elements(self, offset: int, length: int) -> tuple[int, int, int]:
        end = min(self.size, offset + length)
        e0 = offset // self.itemsize
        e1 = -(-end // self.itemsize)
        return e0, e1, end

    # -- reading -------------------------------------------------------------
    def prefetch_range(self, offset: int, length: int) -> None:
        """Load the part blocks behind ``[offset, offset + length)`` in the background."""
        if length <= 0 or offset >= self.size:
            return
        if not self.shape:
            self._parts[()].stream.prefetch_range(0, self.itemsize)
            return
        e0, e1, _ = self._elements(offset, length)
        for _, _, part, start, span, _, _ in self._plan(e0, e1):
            part.stream.prefetch_range(start, span)

    def read(self, offset: int, length: int, random: bool = False) -> bytes:
        """Return bytes ``[offset, offset + length)`` of the C-order array, short only at the end.

        ``random`` is passed on to the parts' streams.
        """
        if length <= 0 or offset >= self.size:
            return b""
        if not self.shape:  # 0-d: one part, one element
            return self._parts[()].stream.read(offset, length, random)
        e0, e1, end = self._elements(offset, length)
        plan = list(self._plan(e0, e1))
        for _, _, part, start, span, _, _ in plan[1:]:  # parallel loads of the other parts' blocks
            part.stream.prefetch_range(start, span)
        void = np.dtype((np.void, self.itemsize))
        out = np.empty(e1 - e0, dtype=void)
        for pos, rect_shape, part, start, span, box_shape, dst in plan:
            raw = part.stream.read(start, span, random)
            if len(raw) != span:
                raise ArrayFormatError(f"{part.stream.key}: part body ends early", part.stream.key)
            rect = out[pos:pos + math.prod(rect_shape)].reshape(rect_shape)
            piece_strides = part.strides[len(part.strides) - len(box_shape):]
            piece = np.ndarray(box_shape, dtype=void, buffer=raw, strides=piece_strides)
            rect[dst] = piece
        skip = offset - e0 * self.itemsize
        return out.view(np.uint8)[skip:skip + end - offset].tobytes()
