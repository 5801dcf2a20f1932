"""Chunked arrays: cottoncandy 0.4.0's dask layout, and lazy dask views of raw arrays.

A dask array ``<name>`` is stored as raw-array parts ``<name>/pt0000``... and a
manifest ``<name>/metadata.json`` (see :mod:`cottoncandy.format.manifests`).

Reading is lazy. The returned :class:`dask.array.Array` is built with
:func:`dask.array.from_array` over a small *source* object whose
``__getitem__`` fetches only the parts (or, for uncompressed raw arrays, only
the byte ranges) a slice touches (:mod:`.lazy_sources`). Sources hold a
picklable backend handle, so the task graph runs on ``dask.distributed``
workers, each of which rebuilds its client once.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..backends.base import StorageBackend
from ..errors import ArrayFormatError
from ..format.arrays import encode_array
from ..format.compression import DEFAULT_COMPRESSION
from ..format.chunks import ChunkGrid
from ..format.manifests import DaskManifest, dask_manifest_json, manifest_key, parse_dask_manifest, part_key
from ..format.metadata import ArrayMeta
from ..transfer import arrayio
from ..transfer.objectio import read_body
from ..transfer.progress import ProgressArg, progress_callback
from .lazy_sources import BackendHandle, DaskPartsSource, RawRangeSource

if TYPE_CHECKING:  # pragma: no cover
    import dask.array

logger = logging.getLogger(__name__)

#: Default bytes per part written by :func:`upload_dask_array` (0.4.0's ``dask_chunksize``).
DEFAULT_BUFFERSIZE = 100 * 2**20
_PART_NAME = re.compile(r"pt\d{4,}")
_UPLOAD_THREADS = 4


def _dask_array():
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("dask arrays need dask: pip install 'cottoncandy[dask]'") from exc
    return da


def _token(*parts: Any) -> str:
    from dask.base import tokenize

    return tokenize(*parts)


def download_dask_array(backend: StorageBackend, key: str, dask_name: str = "array") -> "dask.array.Array":
    """Open the dask array stored under ``key`` lazily.

    Parameters
    ----------
    backend : StorageBackend
    key : str
        The array's prefix (``<key>/metadata.json`` is its manifest).
    dask_name : str
        Prefix of the graph's key names (a token identifying the stored version is appended).

    Returns
    -------
    dask.array.Array
        Chunked like the stored parts; computing a slice downloads only the
        parts it overlaps. Empty chunks are never downloaded.

    Raises
    ------
    ObjectNotFoundError
        No manifest under ``key``.
    ArrayFormatError
        The manifest is invalid, or a part does not match it (when computed).
    """
    mkey = manifest_key(key)
    body = read_body(backend, mkey)
    return lazy_dask_array(backend, parse_dask_manifest(body, mkey), body, dask_name)


def lazy_dask_array(backend: StorageBackend, manifest: DaskManifest, body: bytes,
                    dask_name: str = "array") -> "dask.array.Array":
    """The lazy dask array of a parsed manifest (see :func:`download_dask_array`).

    Parameters
    ----------
    backend : StorageBackend
    manifest : DaskManifest
    body : bytes
        The manifest's body: the graph's key names are a token of it, so that
        another stored version gets other names.
    dask_name : str
    """
    da = _dask_array()
    source = DaskPartsSource(BackendHandle(backend), manifest)
    name = f"{dask_name}-{_token(repr(backend), manifest.key, body)}"
    return da.from_array(source, chunks=manifest.chunks, name=name, asarray=False, inline_array=True,
                         meta=np.empty((0,) * manifest.ndim, dtype=manifest.dtype))


def open_dask_array(backend: StorageBackend, key: str, chunks: Any = "auto") -> "dask.array.Array":
    """Open an uncompressed raw array lazily; each chunk is read with ranged GETs.

    Parameters
    ----------
    backend : StorageBackend
    key : str
    chunks : str, int, tuple
        Any :func:`dask.array.from_array` chunk spec. ``'auto'`` chunks along
        the slowest axis only (whole rows for C order), so that every chunk is
        one contiguous byte range.

    Raises
    ------
    ValueError
        The array is compressed (compressed bodies cannot be read by range).
    ArrayFormatError
        Missing or invalid array metadata, or a body of the wrong size.
    """
    da = _dask_array()
    info = backend.head(key)
    meta = ArrayMeta.from_metadata(info.metadata or {}, key)
    if meta.compression is not None:
        raise ValueError(f"{key} is compressed ({meta.compression}); use download_raw_array, "
                         "or store it with compression=False to open it lazily")
    if info.size != meta.nbytes:
        raise ArrayFormatError(f"{key}: body has {info.size} bytes, the metadata needs {meta.nbytes}", key)
    if isinstance(chunks, str) and chunks == "auto" and len(meta.shape) > 1:
        spec: list[Any] = [-1] * len(meta.shape)
        spec[0 if meta.order == "C" else -1] = "auto"
        chunks = da.core.normalize_chunks(tuple(spec), meta.shape, dtype=meta.dtype)
    source = RawRangeSource(BackendHandle(backend), key, meta, info.etag)
    name = f"raw-{_token(repr(backend), key, info.etag, meta.to_metadata())}"
    return da.from_array(source, chunks=chunks, name=name, asarray=False, inline_array=True,
                         meta=np.empty((0,) * len(meta.shape), dtype=meta.dtype))


# -- writing ---------------------------------------------------------------------


def plan_chunks(shape: Sequence[int], dtype: np.dtype, axis: int | None, buffersize: int) -> tuple[tuple[int, ...], ...]:
    """Chunks for storing an array: slabs along ``axis`` of at most ``buffersize`` bytes.

    ``axis=None`` lets dask choose chunks of at most ``buffersize`` bytes along
    every axis. A zero-size array gets a single (empty) chunk. No chunk is empty
    otherwise.
    """
    shape = tuple(int(n) for n in shape)
    if not shape:
        return ()
    if math.prod(shape) == 0:
        return tuple((n,) for n in shape)
    if axis is None:
        return _dask_array().core.normalize_chunks("auto", shape, limit=buffersize, dtype=dtype)
    axis = _axis(axis, len(shape))
    slab = math.prod(n for a, n in enumerate(shape) if a != axis) * np.dtype(dtype).itemsize
    per = max(1, buffersize // max(slab, 1))
    n = shape[axis]
    along = (per,) * (n // per) + ((n % per,) if n % per else ())
    return tuple(along if a == axis else (size,) for a, size in enumerate(shape))


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {ndim} dimensions")
    return axis % ndim


def _is_dask(arr: Any) -> bool:
    return type(arr).__module__.startswith("dask.") and hasattr(arr, "chunks") and hasattr(arr, "compute")


class _PartWriter:
    """Task function of an upload graph: store one block as part number ``ravel(block_id)``."""

    def __init__(self, handle: BackendHandle, key: str, grid: tuple[int, ...], compression: str | None):
        self.handle = handle
        self.key = key
        self.grid = grid
        self.compression = compression

    def __call__(self, block: np.ndarray, block_id: tuple[int, ...] = ()) -> np.ndarray:
        number = int(np.ravel_multi_index(block_id, self.grid))
        name = part_key(self.key, number)
        arrayio.upload_raw(self.handle.backend, name, block, self.compression, {}, None)
        logger.debug("uploaded %s: %s %s", name, block.shape, block.dtype)
        return np.full((1,) * block.ndim, block.nbytes, dtype=np.int64)


def _write_numpy(backend: StorageBackend, key: str, arr: np.ndarray, grid: ChunkGrid, progress: ProgressArg) -> None:
    indices = list(grid.indices())
    with progress_callback(progress, arr.nbytes, f"upload {key}") as callback:

        def write(numbered: tuple[int, tuple[int, ...]]) -> None:
            number, index = numbered
            block = arr[grid.chunk_slices(index)]
            name = part_key(key, number)
            arrayio.upload_raw(backend, name, block, DEFAULT_COMPRESSION, {}, None)
            logger.debug("uploaded %s (%d/%d): %s", name, number + 1, len(indices), block.shape)
            if callback:
                callback(block.nbytes)

        with ThreadPoolExecutor(min(_UPLOAD_THREADS, len(indices)), "cc-dask-upload") as pool:
            list(pool.map(write, enumerate(indices)))


def _write_dask(backend: StorageBackend, key: str, arr: Any, axis: int | None, buffersize: int,
                progress: ProgressArg) -> tuple[tuple[int, ...], ...]:
    from dask.callbacks import Callback

    if any(isinstance(c, float) and math.isnan(c) for axis_chunks in arr.chunks for c in axis_chunks):
        raise ValueError("the dask array has unknown chunk sizes; call arr.compute_chunk_sizes() first")
    encode_array(np.empty(0, dtype=arr.dtype), None)  # refuse object/structured dtypes before any work
    if axis is None:
        chunks = tuple(tuple(c for c in ax if c) or (0,) for ax in arr.chunks)
        biggest = math.prod(max(ax) for ax in chunks) * arr.dtype.itemsize
        if biggest > buffersize:
            chunks = plan_chunks(arr.shape, arr.dtype, None, buffersize)
    else:
        chunks = plan_chunks(arr.shape, arr.dtype, axis, buffersize)
    if chunks != arr.chunks:
        arr = arr.rechunk(chunks)
    grid = tuple(len(c) for c in chunks)
    writer = _PartWriter(BackendHandle(backend), key, grid, DEFAULT_COMPRESSION)
    name = f"cc-upload-{uuid.uuid4().hex}"
    written = arr.map_blocks(writer, name=name, chunks=tuple((1,) * g for g in grid), dtype=np.int64,
                             meta=np.empty((0,) * arr.ndim, dtype=np.int64))
    with progress_callback(progress, int(arr.nbytes), f"upload {key}") as callback:

        def posttask(task_key, result, dsk, state, worker_id) -> None:
            if callback and isinstance(task_key, tuple) and task_key[0] == name:
                callback(int(np.sum(result)))

        with Callback(posttask=posttask):
            written.compute()
    return chunks


def _remove_stale_parts(backend: StorageBackend, key: str, keep: set[str]) -> None:
    prefix = f"{key}/"
    stale = [info.key for info in backend.list_dir(prefix).objects
             if _PART_NAME.fullmatch(info.key[len(prefix):]) and info.key not in keep]
    if stale:
        logger.info("removing %d parts of the previous version of %s", len(stale), key)
        backend.delete(stale)


def upload_dask_array(backend: StorageBackend, key: str, arr: Any, axis: int | None = -1,
                      buffersize: int | None = None, progress: ProgressArg = None,
                      metadata: Mapping[str, str] | None = None) -> None:
    """Store a numpy or dask array in cottoncandy 0.4.0's chunked layout.

    Parameters
    ----------
    backend : StorageBackend
    key : str
        Prefix of the parts ``<key>/pt0000``... and of ``<key>/metadata.json``.
    arr : numpy.ndarray or dask.array.Array
        A dask array is written block by block by its own scheduler (workers of
        a distributed cluster write their blocks directly); it is never
        materialised as a whole.
    axis : int or None
        Chunk along this axis only, in slabs of at most ``buffersize`` bytes
        (0.4.0's layout). ``None``: keep a dask array's own chunks if none
        exceeds ``buffersize``, else let dask choose chunks along every axis.
    buffersize : int, optional
        Maximum bytes per part (default 100 MiB); a single slab larger than it
        is written as one part.
    progress : bool or callable, optional
        ``True`` shows a tqdm bar, a callable receives byte counts (local
        schedulers only for dask input); parts are also logged at DEBUG level.
    metadata : dict of str, optional
        User metadata stored on ``metadata.json``.

    Notes
    -----
    Parts are written with the default compression, then the manifest, then
    parts left over from a previous, larger version are removed. No empty part
    is written except for a zero-size array, which needs one.
    """
    buffersize = DEFAULT_BUFFERSIZE if buffersize is None else int(buffersize)
    if buffersize <= 0:
        raise ValueError(f"buffersize must be positive, got {buffersize}")
    if _is_dask(arr) and arr.ndim and not (isinstance(arr.size, int) and arr.size == 0):
        chunks = _write_dask(backend, key, arr, axis, buffersize, progress)
        shape, dtype = arr.shape, arr.dtype
    else:
        array = np.asarray(arr.compute() if _is_dask(arr) else arr)
        chunks = plan_chunks(array.shape, array.dtype, axis, buffersize)
        _write_numpy(backend, key, array, ChunkGrid(chunks), progress)
        shape, dtype = array.shape, array.dtype
    names = {index: part_key(key, n) for n, index in enumerate(ChunkGrid(chunks).indices())}
    body = dask_manifest_json(shape, dtype, chunks, names)
    backend.write(manifest_key(key), body, dict(metadata or {}))
    _remove_stale_parts(backend, key, set(names.values()))
    logger.info("stored %s %s as %d parts under %s/", shape, dtype, len(names), key)
