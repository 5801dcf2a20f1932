"""Lazy array sources for dask: read only what a slice needs, pickle without connections.

:func:`dask.array.from_array` wraps these array-likes (``shape``, ``dtype``,
``__getitem__``). :class:`DaskPartsSource` loads the parts of a stored dask
array that a slice overlaps; :class:`RawRangeSource` reads the byte ranges of
an uncompressed raw array that a slice covers. Both hold a picklable
:class:`BackendHandle`, so a task graph built on them runs on
``dask.distributed`` workers.
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import uuid
from typing import Any, Sequence

import numpy as np
from typing_extensions import override

from ..backends.base import StorageBackend
from ..format.manifests import DaskManifest
from ..format.metadata import ArrayMeta
from ..transfer import arrayio

#: Extra bytes a ranged read may fetch to save a request (see :class:`RawRangeSource`).
MAX_OVERREAD = 1 << 20

# -- picklable backend reference ----------------------------------------------

_HANDLE_CACHE: "collections.OrderedDict[str, BackendHandle]" = collections.OrderedDict()
_HANDLE_CACHE_SIZE = 8
_HANDLE_LOCK = threading.Lock()


class BackendHandle:
    """A picklable reference to a storage backend.

    Pickling stores the backend itself (backends drop their live client when
    pickled and rebuild it when first used). All copies of one handle
    unpickled in the same process share one backend, so a worker builds one
    client per handle, not one per task.

    Parameters
    ----------
    backend : StorageBackend
    token : str, optional
        Identity shared by the copies; a fresh one by default.
    """

    def __init__(self, backend: StorageBackend, token: str | None = None):
        self.backend = backend
        self.token = token or uuid.uuid4().hex

    @override
    def __reduce__(self):
        return _restore_handle, (self.token, self.backend)

    @override
    def __repr__(self) -> str:
        return f"BackendHandle({self.backend!r})"


def _restore_handle(token: str, backend: StorageBackend) -> BackendHandle:
    with _HANDLE_LOCK:
        handle = _HANDLE_CACHE.get(token)
        if handle is None:
            handle = _HANDLE_CACHE[token] = BackendHandle(backend, token)
            while len(_HANDLE_CACHE) > _HANDLE_CACHE_SIZE:
                _HANDLE_CACHE.popitem(last=False)
        else:
            _HANDLE_CACHE.move_to_end(token)
        return handle


# -- lazy sources ---------------------------------------------------------------


def box_index(index: Any, shape: Sequence[int]) -> tuple[tuple[slice, ...], tuple]:
    """Split a numpy index into the bounding box it touches and an index into that box.

    Parameters
    ----------
    index : int, slice, Ellipsis, None, integer array, or a tuple of them
    shape : sequence of int

    Returns
    -------
    box : tuple of slice
        One ``slice(start, stop)`` per axis covering every selected element.
    post : tuple
        Index that, applied to ``array[box]``, gives ``array[index]``.
    """
    items = index if isinstance(index, tuple) else (index,)
    n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
    if n_real > len(shape):
        raise IndexError(f"too many indices for an array of {len(shape)} dimensions")
    expanded: list[Any] = []
    for item in items:
        if item is Ellipsis:
            expanded.extend([slice(None)] * (len(shape) - n_real))
            n_real = len(shape)
        else:
            expanded.append(item)
    expanded.extend([slice(None)] * (len(shape) - n_real))
    box: list[slice] = []
    post: list[Any] = []
    axis = 0
    for item in expanded:
        if item is None:
            post.append(None)
            continue
        n = shape[axis]
        axis += 1
        if isinstance(item, slice):
            rng = range(*item.indices(n))
            if not rng:
                box.append(slice(0, 0))
                post.append(slice(0, 0))
                continue
            lo, hi = min(rng[0], rng[-1]), max(rng[0], rng[-1]) + 1
            stop = rng[-1] - lo + (1 if rng.step > 0 else -1)
            box.append(slice(lo, hi))
            post.append(slice(rng[0] - lo, stop if stop >= 0 else None, rng.step))
            continue
        arr = np.asarray(item)
        if arr.dtype == bool:
            if arr.ndim != 1:
                raise IndexError("only 1-d boolean masks are supported")
            arr = np.flatnonzero(arr)
        if arr.dtype.kind not in "iu":
            raise IndexError(f"unsupported index {item!r}")
        arr = np.where(arr < 0, arr + n, arr)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise IndexError(f"index out of bounds for axis {axis - 1} with size {n}")
        lo = int(arr.min()) if arr.size else 0
        box.append(slice(lo, int(arr.max()) + 1 if arr.size else 0))
        post.append(arr - lo if arr.ndim else int(arr) - lo)
    return tuple(box), tuple(post)


class _LazySource:
    """Array-like read by :func:`dask.array.from_array`: ``shape``, ``dtype`` and ``__getitem__``."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        box, post = box_index(index, self.shape)
        lengths = tuple(s.stop - s.start for s in box)
        if math.prod(lengths) == 0:
            block = np.empty(lengths, dtype=self.dtype)
        else:
            block = self._read_box(box)
        return block[post]

    def _read_box(self, box: tuple[slice, ...]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class DaskPartsSource(_LazySource):
    """The parts of a stored dask array, loaded part by part as slices need them.

    Parameters
    ----------
    handle : BackendHandle
    manifest : DaskManifest
    """

    def __init__(self, handle: BackendHandle, manifest: DaskManifest):
        self.handle = handle
        self.manifest = manifest
        self.shape = manifest.shape
        self.dtype = manifest.dtype

    @override
    def __repr__(self) -> str:
        return f"DaskPartsSource({self.manifest.key!r}, shape={self.shape}, dtype={self.dtype})"

    def load_part(self, index: tuple[int, ...]) -> np.ndarray:
        """Download the part holding chunk ``index`` and check its shape."""
        part = arrayio.download_raw(self.handle.backend, self.manifest.parts[index], None)
        self.manifest.check_part(index, part.dtype, part.shape)
        return part

    @override
    def _read_box(self, box: tuple[slice, ...]) -> np.ndarray:
        m = self.manifest
        indices = m.chunks_touching(box)
        if len(indices) == 1 and m.chunk_slices(indices[0]) == box:
            return self.load_part(indices[0])
        out = np.empty(tuple(s.stop - s.start for s in box), dtype=self.dtype)
        for index in indices:
            chunk = m.chunk_slices(index)
            inter = [slice(max(b.start, c.start), min(b.stop, c.stop)) for b, c in zip(box, chunk)]
            dst = tuple(slice(i.start - b.start, i.stop - b.start) for i, b in zip(inter, box))
            src = tuple(slice(i.start - c.start, i.stop - c.start) for i, c in zip(inter, chunk))
            out[dst] = self.load_part(index)[src]
        return out


class RawRangeSource(_LazySource):
    """An uncompressed raw array read with ranged GETs of just the bytes a slice needs.

    Parameters
    ----------
    handle : BackendHandle
    key : str
    meta : ArrayMeta
        Must describe an uncompressed body.
    etag : str
        Version the reads must match (a replaced object raises ``ObjectNotFoundError``).
    """

    def __init__(self, handle: BackendHandle, key: str, meta: ArrayMeta, etag: str | None):
        self.handle = handle
        self.key = key
        self.meta = meta
        self.etag = etag
        self.shape = meta.shape
        self.dtype = meta.dtype

    @override
    def __repr__(self) -> str:
        return f"RawRangeSource({self.key!r}, shape={self.shape}, dtype={self.dtype})"

    @override
    def _read_box(self, box: tuple[slice, ...]) -> np.ndarray:
        if self.meta.order == "F":  # the body holds the transpose in C order
            return self._read_c_box(self.shape[::-1], box[::-1]).T
        return self._read_c_box(self.shape, box)

    def _read_c_box(self, shape: tuple[int, ...], box: tuple[slice, ...]) -> np.ndarray:
        itemsize = self.dtype.itemsize
        strides = [itemsize * math.prod(shape[a + 1:]) for a in range(len(shape))]
        lengths = [s.stop - s.start for s in box]
        # Read the box as sub-boxes over axes >= j, one GET each, for the smallest j
        # whose bounding byte span does not over-read too much.
        for j in range(len(shape) + 1):
            needed = math.prod(lengths[j:]) * itemsize
            span = sum((n - 1) * st for n, st in zip(lengths[j:], strides[j:])) + itemsize
            if span <= max(2 * needed, needed + MAX_OVERREAD):
                break
        out = np.empty(lengths, dtype=self.dtype)
        inner_start = sum(s.start * st for s, st in zip(box[j:], strides[j:]))
        for outer in itertools.product(*(range(s.start, s.stop) for s in box[:j])):
            start = inner_start + sum(i * st for i, st in zip(outer, strides[:j]))
            buffer = np.empty(span, dtype=np.uint8)
            self.handle.backend.read_into(self.key, buffer.data, start, etag=self.etag)
            view = np.ndarray(tuple(lengths[j:]), dtype=self.dtype, buffer=buffer, strides=tuple(strides[j:]))
            out[tuple(i - s.start for i, s in zip(outer, box[:j]))] = view
        return out
