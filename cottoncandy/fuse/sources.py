"""What a mounted file is made of: descriptors the tree builds and :class:`ReadPath` opens.

Each descriptor is a small frozen dataclass that pins the version (ETag) of
everything it reads, so the size computed by :func:`file_size` and the bytes
served by :meth:`ReadPath.open` always describe the same version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Union

from ..backends.base import ObjectInfo
from ..format.manifests import DaskManifest
from ..format.metadata import ArrayMeta
from ..format.npyheader import npy_header

__all__ = [
    "ObjectBody",
    "RawArrayFile",
    "DaskArrayFile",
    "InMemoryFile",
    "Source",
    "file_size",
    "array_header",
]


@dataclass(frozen=True)
class ObjectBody:
    """A plain object, served with its bytes as stored.

    Attributes
    ----------
    key : str
    etag : str
        Version to read; reads fail with ``ObjectNotFoundError`` once it is gone.
    size : int
        Body size in bytes.
    """

    key: str
    etag: str
    size: int


@dataclass(frozen=True)
class RawArrayFile:
    """A raw array, served as an ``.npy`` file: header plus decoded body.

    Attributes
    ----------
    key : str
    etag : str
    body_size : int
        Stored (possibly compressed) body size in bytes.
    meta : ArrayMeta
        Parsed metadata; ``meta.order`` decides the header's ``fortran_order``.
    """

    key: str
    etag: str
    body_size: int
    meta: ArrayMeta


@dataclass(frozen=True)
class DaskArrayFile:
    """A dask array, served as one C-order ``.npy`` assembled from its parts.

    Attributes
    ----------
    manifest : DaskManifest
    parts : dict
        Part key -> :class:`ObjectInfo` (from a HEAD, so with metadata; a part
        given without metadata is HEADed when the file is opened). Parts of
        empty chunks may be missing.
    """

    manifest: DaskManifest
    parts: Mapping[str, ObjectInfo] = field(hash=False)


@dataclass(frozen=True)
class InMemoryFile:
    """A file whose bytes the tree already built (a sparse ``.npz``, for example).

    Attributes
    ----------
    name : str
        For logs and errors.
    data : bytes
    """

    name: str
    data: bytes = field(repr=False)


Source = Union[ObjectBody, RawArrayFile, DaskArrayFile, InMemoryFile]


def array_header(source: RawArrayFile | DaskArrayFile) -> bytes:
    """The ``.npy`` header of an array file (dask files are always C order)."""
    if isinstance(source, RawArrayFile):
        meta = source.meta
        return npy_header(meta.dtype, meta.shape, fortran_order=meta.order == "F")
    manifest = source.manifest
    return npy_header(manifest.dtype, manifest.shape, fortran_order=False)


def file_size(source: Source) -> int:
    """Exact size of the file a descriptor stands for, without reading any body.

    Parameters
    ----------
    source : ObjectBody, RawArrayFile, DaskArrayFile or InMemoryFile

    Returns
    -------
    int
        ``size`` for plain objects, header + ``prod(shape) * itemsize`` for
        arrays, ``len(data)`` for in-memory files.
    """
    if isinstance(source, ObjectBody):
        return source.size
    if isinstance(source, InMemoryFile):
        return len(source.data)
    if isinstance(source, RawArrayFile):
        return len(array_header(source)) + source.meta.nbytes
    if isinstance(source, DaskArrayFile):
        m = source.manifest
        return len(array_header(source)) + math.prod(m.shape) * m.dtype.itemsize
    raise TypeError(f"not a file source: {source!r}")
