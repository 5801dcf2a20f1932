"""Manifests of chunked (dask) and sparse arrays: parsing and writing.

A dask array ``<name>`` is stored as raw-array parts ``<name>/pt0000``... plus
``<name>/metadata.json``::

    {"shape": [64, 64, 1500], "dtype": "|u1",
     "dask": [[[0, 0, 0], "<name>/pt0000"], ...],
     "chunk_sizes": [[64, 64, 1280], ...],
     "chunks": [[64], [64], [1280, 220, 0]]}

Part keys are full keys. cottoncandy 0.4.0 may leave trailing empty chunks
(size 0 along an axis); they are accepted. A sparse matrix ``<name>`` stores
its attribute arrays as raw arrays ``<name>/<attr>`` plus ``<name>/metadata.json``
= ``{"type", "attrs", "shape"}``.

This module knows only the JSON layout and what it means; it does no I/O and
is shared by the Python API and the mount. Whether a prefix holds a dask
array, a sparse matrix or neither is decided here (:func:`may_be_manifest`
from the HEAD of ``<prefix>/metadata.json``, then :func:`classify` from its
body). How a sparse matrix is put together from its attribute arrays is
:mod:`.sparse`'s job.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ArrayFormatError
from .chunks import ChunkGrid
from .metadata import MAX_ARRAY_BYTES, MAX_NDIM, is_array_metadata, parse_dtype

__all__ = ["MANIFEST_NAME", "MAX_MANIFEST_BYTES", "SPARSE_ATTRS", "DaskManifest", "SparseManifest", "classify",
           "may_be_manifest", "manifest_key", "part_key", "is_dask_manifest", "is_sparse_manifest",
           "parse_dask_manifest", "parse_sparse_manifest", "dask_manifest_json", "sparse_manifest_json"]

#: Name of the manifest object under the prefix of a dask array or sparse matrix.
MANIFEST_NAME = "metadata.json"
#: A ``metadata.json`` larger than this is not read as a manifest (real ones are a few KiB to MiB).
MAX_MANIFEST_BYTES = 64 << 20

#: Attribute arrays stored for each scipy.sparse format, in 0.4.0's order.
SPARSE_ATTRS: dict[str, tuple[str, ...]] = {
    "csr": ("data", "indices", "indptr"),
    "csc": ("data", "indices", "indptr"),
    "bsr": ("data", "indices", "indptr"),
    "coo": ("row", "col", "data"),
    "dia": ("data", "offsets"),
}


def manifest_key(prefix: str) -> str:
    """Key of the manifest of the array stored under ``prefix`` (``'a/b'`` or ``'a/b/'`` -> ``'a/b/metadata.json'``)."""
    return f"{prefix.rstrip('/')}/{MANIFEST_NAME}" if prefix.strip("/") else MANIFEST_NAME


def part_key(prefix: str, index: int) -> str:
    """Key of the ``index``-th part of the dask array stored under ``prefix`` (``<prefix>/pt0007``)."""
    return f"{prefix.rstrip('/')}/pt{index:04d}"


@dataclass(frozen=True)
class DaskManifest(ChunkGrid):
    """A parsed dask ``metadata.json``; its chunk arithmetic is :class:`~.chunks.ChunkGrid`'s.

    Attributes
    ----------
    key : str
        Key of the manifest object (for error messages).
    shape : tuple of int
    dtype : numpy.dtype
    chunks : tuple of tuple of int
        Chunk lengths along each axis; they sum to ``shape`` (empty chunks allowed).
    parts : dict
        Chunk index tuple -> full key of the part holding that chunk. Every
        chunk index of the grid has an entry.
    """

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    parts: Mapping[tuple[int, ...], str]

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the whole array's data in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize

    def iter_chunks(self) -> Iterator[tuple[tuple[int, ...], str]]:
        """Yield ``(chunk_index, part_key)`` in C order of the chunk grid."""
        for index in self.indices():
            yield index, self.parts[index]

    def nonempty_parts(self) -> dict[tuple[int, ...], str]:
        """Parts whose chunk holds at least one element."""
        return {i: k for i, k in self.parts.items() if not self.is_empty(i)}

    def check_part(self, index: tuple[int, ...], dtype: np.dtype, shape: tuple[int, ...]) -> None:
        """Raise ``ArrayFormatError`` (naming the part) unless a part of this dtype and shape fits chunk ``index``."""
        expected = self.chunk_shape(index)
        if dtype != self.dtype or tuple(shape) != expected:
            key = self.parts[index]
            raise ArrayFormatError(f"{key}: part is {np.dtype(dtype).str} {tuple(shape)}, manifest {self.key} says "
                                   f"{self.dtype.str} {expected}", key)


@dataclass(frozen=True)
class SparseManifest:
    """A parsed sparse ``metadata.json``.

    Attributes
    ----------
    key : str
        Key of the manifest object.
    type : str
        scipy.sparse format name (``csr``, ``csc``, ``bsr``, ``coo``, ``dia``).
    attrs : tuple of str
        Names of the attribute arrays, stored at ``<prefix>/<attr>``.
    shape : tuple of int
        Shape of the matrix.
    """

    key: str
    type: str
    attrs: tuple[str, ...]
    shape: tuple[int, ...]

    @property
    def prefix(self) -> str:
        """The prefix holding the attribute arrays (the manifest key without ``metadata.json``)."""
        return self.key.rsplit("/", 1)[0] if "/" in self.key else ""

    def attr_key(self, attr: str) -> str:
        """Full key of the attribute array ``attr``."""
        return f"{self.prefix}/{attr}" if self.prefix else attr

    def part_keys(self) -> dict[str, str]:
        """Attribute name -> key of its raw array, for the attributes a matrix of this type is made of.

        Raises
        ------
        ArrayFormatError
            The manifest's ``attrs`` lack one of them.
        """
        needed = SPARSE_ATTRS[self.type]
        missing = [a for a in needed if a not in self.attrs]
        if missing:
            raise ArrayFormatError(f"{self.key}: a {self.type} matrix needs attrs {missing}", self.key)
        return {attr: self.attr_key(attr) for attr in needed}


# -- parsing ------------------------------------------------------------------


def _load_json_object(data: bytes | str, key: str | None) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArrayFormatError(f"{key}: manifest is not valid JSON ({exc})", key) from exc
    if not isinstance(obj, dict):
        raise ArrayFormatError(f"{key}: manifest is not a JSON object", key)
    return obj


def _int_tuple(value: Any, what: str, key: str | None) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise ArrayFormatError(f"{key}: {what} must be a list of integers, got {value!r}", key)
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise ArrayFormatError(f"{key}: {what} must hold non-negative integers, got {value!r}", key)
        out.append(item)
    return tuple(out)


def _shape(value: Any, key: str | None) -> tuple[int, ...]:
    shape = _int_tuple(value, "shape", key)
    if len(shape) > MAX_NDIM:
        raise ArrayFormatError(f"{key}: shape has more than {MAX_NDIM} dimensions", key)
    return shape


def may_be_manifest(size: int, metadata: Mapping[str, str] | None) -> bool:
    """Tell from its HEAD whether a ``metadata.json`` object is worth reading as a manifest.

    Not when it is larger than :data:`MAX_MANIFEST_BYTES` or carries raw-array
    metadata (it is then an array that happens to have that name).
    """
    return size <= MAX_MANIFEST_BYTES and not is_array_metadata(metadata)


def classify(data: bytes | str | Mapping[str, Any] | None, key: str | None = None) -> DaskManifest | SparseManifest | None:
    """What a ``metadata.json`` body makes of its prefix: a dask array, a sparse matrix, or neither.

    Parameters
    ----------
    data : bytes, str, dict or None
        The body, or its already decoded JSON object.
    key : str, optional
        Key of the manifest, named in errors.

    Returns
    -------
    DaskManifest, SparseManifest or None
        ``None`` (a plain directory) when ``data`` is ``None``, not JSON, not a
        JSON object, or has the fields of neither kind (dask: ``dask`` and
        ``chunks``; sparse: ``type``, ``attrs`` and ``shape``).

    Raises
    ------
    ArrayFormatError
        The body has the fields of one kind but is not a valid manifest of it.
    """
    if data is None:
        return None
    if isinstance(data, Mapping):
        obj: Any = data
    else:
        try:
            obj = json.loads(data)
        except ValueError:  # includes UnicodeDecodeError
            return None
    if is_dask_manifest(obj):
        return parse_dask_manifest(obj, key)
    if is_sparse_manifest(obj):
        return parse_sparse_manifest(obj, key)
    return None


def is_dask_manifest(obj: Mapping[str, Any]) -> bool:
    """Tell whether a decoded ``metadata.json`` describes a dask array (has ``dask`` and ``chunks``)."""
    return isinstance(obj, Mapping) and "dask" in obj and "chunks" in obj


def is_sparse_manifest(obj: Mapping[str, Any]) -> bool:
    """Tell whether a decoded ``metadata.json`` describes a sparse matrix (has ``type``, ``attrs``, ``shape``)."""
    return isinstance(obj, Mapping) and all(k in obj for k in ("type", "attrs", "shape"))


def parse_dask_manifest(data: bytes | str | Mapping[str, Any], key: str | None = None) -> DaskManifest:
    """Parse and validate a dask ``metadata.json``.

    Parameters
    ----------
    data : bytes, str or dict
        The manifest body (or its already decoded JSON object).
    key : str, optional
        Key of the manifest, used in error messages.

    Returns
    -------
    DaskManifest

    Raises
    ------
    ArrayFormatError
        Invalid JSON, a missing field, chunks not summing to the shape, a chunk
        index outside the grid or listed twice, a grid cell without a part, or
        ``chunk_sizes`` contradicting ``chunks``.
    """
    obj = dict(data) if isinstance(data, Mapping) else _load_json_object(data, key)
    for field in ("shape", "dtype", "dask", "chunks"):
        if field not in obj:
            raise ArrayFormatError(f"{key}: dask manifest lacks {field!r}", key)
    shape = _shape(obj["shape"], key)
    if not isinstance(obj["dtype"], str):
        raise ArrayFormatError(f"{key}: dtype must be a string, got {obj['dtype']!r}", key)
    dtype = parse_dtype(obj["dtype"], key)
    if not isinstance(obj["chunks"], (list, tuple)) or len(obj["chunks"]) != len(shape):
        raise ArrayFormatError(f"{key}: chunks {obj['chunks']!r} do not match shape {shape}", key)
    chunks = tuple(_int_tuple(c, "chunks", key) for c in obj["chunks"])
    for axis, (n, c) in enumerate(zip(shape, chunks)):
        if not c or sum(c) != n:
            raise ArrayFormatError(f"{key}: chunks along axis {axis} {list(c)} do not sum to {n}", key)
    if math.prod(shape) * dtype.itemsize > MAX_ARRAY_BYTES:
        raise ArrayFormatError(f"{key}: shape {shape} of {dtype} is too large", key)
    grid = tuple(len(c) for c in chunks)

    entries = obj["dask"]
    if not isinstance(entries, (list, tuple)):
        raise ArrayFormatError(f"{key}: 'dask' must be a list of [chunk_index, key] pairs", key)
    parts: dict[tuple[int, ...], str] = {}
    for entry in entries:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], str) and entry[1]):
            raise ArrayFormatError(f"{key}: bad 'dask' entry {entry!r}", key)
        index = _int_tuple(entry[0], "chunk index", key)
        if len(index) != len(grid) or any(i >= g for i, g in zip(index, grid)):
            raise ArrayFormatError(f"{key}: chunk index {list(index)} outside the chunk grid {grid}", key)
        if index in parts:
            raise ArrayFormatError(f"{key}: chunk index {list(index)} listed twice", key)
        parts[index] = entry[1]
    if len(parts) != math.prod(grid):
        missing = next(i for i in itertools.product(*(range(g) for g in grid)) if i not in parts)
        raise ArrayFormatError(f"{key}: no part for chunk {list(missing)}", key)

    sizes = obj.get("chunk_sizes")
    if sizes is not None:
        if not isinstance(sizes, (list, tuple)) or len(sizes) != len(entries):
            raise ArrayFormatError(f"{key}: chunk_sizes do not match the 'dask' entries", key)
        for entry, size in zip(entries, sizes):
            index = tuple(entry[0])
            expected = tuple(chunks[ax][i] for ax, i in enumerate(index))
            if _int_tuple(size, "chunk_sizes", key) != expected:
                raise ArrayFormatError(
                    f"{key}: chunk_sizes {size!r} of chunk {list(index)} contradict chunks {list(expected)}", key
                )
    return DaskManifest(chunks=chunks, key=key or "", shape=shape, dtype=dtype, parts=parts)


def parse_sparse_manifest(data: bytes | str | Mapping[str, Any], key: str | None = None) -> SparseManifest:
    """Parse and validate a sparse ``metadata.json``.

    Raises
    ------
    ArrayFormatError
        Invalid JSON, a missing field, an unknown sparse type, attribute names
        that are not plain names, or a shape that is not 2-d.
    """
    obj = dict(data) if isinstance(data, Mapping) else _load_json_object(data, key)
    for field in ("type", "attrs", "shape"):
        if field not in obj:
            raise ArrayFormatError(f"{key}: sparse manifest lacks {field!r}", key)
    kind = obj["type"]
    if not isinstance(kind, str) or kind.lower() not in SPARSE_ATTRS:
        raise ArrayFormatError(f"{key}: unknown sparse type {kind!r}", key)
    attrs = obj["attrs"]
    if not isinstance(attrs, (list, tuple)) or not attrs:
        raise ArrayFormatError(f"{key}: attrs must be a non-empty list of names", key)
    for attr in attrs:
        if not isinstance(attr, str) or not attr or "/" in attr or attr in (".", ".."):
            raise ArrayFormatError(f"{key}: bad sparse attribute name {attr!r}", key)
    shape = _shape(obj["shape"], key)
    if len(shape) != 2:
        raise ArrayFormatError(f"{key}: sparse shape {list(shape)} is not 2-d", key)
    return SparseManifest(key=key or "", type=kind.lower(), attrs=tuple(attrs), shape=shape)


# -- writing ------------------------------------------------------------------


def dask_manifest_json(
    shape: Sequence[int],
    dtype: np.dtype | str,
    chunks: Sequence[Sequence[int]],
    part_keys: Mapping[tuple[int, ...], str],
) -> bytes:
    """The ``metadata.json`` body of a dask array, in the form cottoncandy 0.4.0 writes.

    Parameters
    ----------
    shape : sequence of int
    dtype : numpy.dtype or str
    chunks : sequence of sequence of int
        Chunk lengths along each axis (as ``dask.array.Array.chunks``).
    part_keys : mapping
        Chunk index tuple -> full part key, one per grid cell.

    Returns
    -------
    bytes
        UTF-8 JSON with ``shape``, ``dtype``, ``dask`` (entries in C order of
        the chunk grid), ``chunk_sizes`` and ``chunks``. The result parses back
        with :func:`parse_dask_manifest`.
    """
    grid = ChunkGrid(tuple(tuple(int(n) for n in c) for c in chunks))
    entries, sizes = [], []
    for index in grid.indices():
        entries.append([list(index), part_keys[index]])
        sizes.append(list(grid.chunk_shape(index)))
    body = {
        "shape": [int(n) for n in shape],
        "dtype": np.dtype(dtype).str,
        "dask": entries,
        "chunk_sizes": sizes,
        "chunks": [list(c) for c in grid.chunks],
    }
    data = json.dumps(body).encode()
    parse_dask_manifest(data, "<new manifest>")  # refuse to write what we could not read back
    return data


def sparse_manifest_json(kind: str, attrs: Sequence[str], shape: Sequence[int]) -> bytes:
    """The ``metadata.json`` body of a sparse matrix, in the form cottoncandy 0.4.0 writes."""
    body = {"type": kind, "attrs": list(attrs), "shape": [int(n) for n in shape]}
    data = json.dumps(body).encode()
    parse_sparse_manifest(data, "<new manifest>")
    return data

