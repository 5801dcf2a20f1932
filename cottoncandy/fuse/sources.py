"""What a mounted file is made of: descriptors the tree builds and :class:`ReadPath` opens.

Each descriptor is a small frozen dataclass that pins the version (ETag) of
everything it reads, so the size it states and the bytes
:meth:`ReadPath.open` serves always describe the same version, and
:attr:`version` changes whenever those bytes may.

Dask and sparse files are :class:`PartedFile`\\ s: what they are comes from
their manifest, listed with the directory, but what they read are the arrays
the manifest names, whose HEADs the tree gathers only when the file is opened
(:meth:`PartedFile.with_parts`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar, Union

from typing_extensions import override

from ..backends.base import ObjectInfo
from ..format.manifests import DaskManifest, SparseManifest
from ..format.metadata import ArrayMeta
from ..format.npyheader import npy_file_size, npy_header

__all__ = [
    "ObjectBody",
    "RawArrayFile",
    "DaskArrayFile",
    "SparseMatrixFile",
    "InMemoryFile",
    "PartedFile",
    "Source",
    "file_size",
    "array_header",
]

_P = TypeVar("_P", bound="PartedFile")


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

    @property
    def known_size(self) -> int:
        """The file's size."""
        return self.size

    @property
    def version(self) -> Hashable:
        """Changes whenever the file's bytes may."""
        return ("object", self.key, self.etag)


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

    @property
    def known_size(self) -> int:
        """Header + ``prod(shape) * itemsize``."""
        return npy_file_size(self.meta.dtype, self.meta.shape, self.meta.order == "F")

    @property
    def version(self) -> Hashable:
        """Changes whenever the file's bytes may (metadata can change without the body)."""
        return ("array", self.key, self.etag, self.meta)


class PartedFile:
    """A file made of the arrays a manifest names; their HEADs are gathered at open.

    Subclasses are frozen dataclasses with a ``parts`` field (part key ->
    :class:`ObjectInfo`) and an ``etag`` field (the manifest's).
    """

    __slots__ = ()
    parts: Mapping[str, ObjectInfo]
    etag: str

    def part_keys(self) -> frozenset[str]:
        """Keys of the arrays the file reads."""
        raise NotImplementedError

    def with_parts(self: _P, parts: Mapping[str, ObjectInfo]) -> _P:
        """This file with the HEADs of its parts."""
        raise NotImplementedError

    def _parts_version(self) -> bytes:
        """A digest of the parts' keys and ETags (a dask array may have thousands)."""
        digest = hashlib.blake2b(digest_size=16)
        for key, info in sorted(self.parts.items()):
            digest.update(f"{key}\0{info.etag}\0".encode("utf-8", "surrogateescape"))
        return digest.digest()


@dataclass(frozen=True)
class DaskArrayFile(PartedFile):
    """A dask array, served as one C-order ``.npy`` assembled from its parts.

    Attributes
    ----------
    manifest : DaskManifest
    parts : dict
        Part key -> :class:`ObjectInfo` (from a HEAD, so with metadata; a part
        given without metadata is HEADed when the file is opened). Parts of
        empty chunks may be missing.
    etag : str
        Version of the manifest.
    """

    manifest: DaskManifest
    parts: Mapping[str, ObjectInfo] = field(default_factory=dict, hash=False)
    etag: str = ""

    @property
    def known_size(self) -> int:
        """Header + ``prod(shape) * itemsize``."""
        return npy_file_size(self.manifest.dtype, self.manifest.shape)

    @property
    def version(self) -> Hashable:
        """Changes whenever the manifest or a part changes."""
        return ("dask", self.manifest.key, self.etag, self._parts_version())

    @override
    def part_keys(self) -> frozenset[str]:
        """Keys of the parts of non-empty chunks."""
        return frozenset(self.manifest.nonempty_parts().values())

    @override
    def with_parts(self, parts: Mapping[str, ObjectInfo]) -> DaskArrayFile:
        """This file with the HEADs of its parts."""
        return replace(self, parts=dict(parts))


@dataclass(frozen=True)
class SparseMatrixFile(PartedFile):
    """A sparse matrix, served as the ``.npz`` ``scipy.sparse.save_npz`` writes.

    Only building the file tells its size: the read path builds it (see
    :mod:`cottoncandy.fuse.sparsefile`).

    Attributes
    ----------
    manifest : SparseManifest
    etag : str
        Version of the manifest.
    parts : dict
        Attribute-array key -> :class:`ObjectInfo` (with metadata).
    """

    manifest: SparseManifest
    etag: str
    parts: Mapping[str, ObjectInfo] = field(default_factory=dict, hash=False)

    @property
    def known_size(self) -> None:
        """Unknown until built."""
        return None

    @property
    def version(self) -> Hashable:
        """Changes whenever the manifest or an attribute array changes."""
        return ("sparse", self.manifest.key, self.etag, self._parts_version())

    @override
    def part_keys(self) -> frozenset[str]:
        """Keys of the attribute arrays the matrix type needs.

        Raises
        ------
        ArrayFormatError
            When the manifest lacks one of them.
        """
        return frozenset(self.manifest.part_keys().values())

    @override
    def with_parts(self, parts: Mapping[str, ObjectInfo]) -> SparseMatrixFile:
        """This file with the HEADs of its attribute arrays."""
        return replace(self, parts=dict(parts))


@dataclass(frozen=True)
class InMemoryFile:
    """A file whose bytes are already built (the read path's ``.npz`` of a sparse matrix).

    Attributes
    ----------
    name : str
        For logs and errors.
    data : bytes
    """

    name: str
    data: bytes = field(repr=False)

    @property
    def known_size(self) -> int:
        """``len(data)``."""
        return len(self.data)

    @property
    def version(self) -> Hashable:
        """Changes with the bytes."""
        return ("memory", self.name, hash(self.data))


Source = Union[ObjectBody, RawArrayFile, DaskArrayFile, SparseMatrixFile, InMemoryFile]


def array_header(source: RawArrayFile | DaskArrayFile) -> bytes:
    """The ``.npy`` header of an array file (dask files are always C order)."""
    if isinstance(source, RawArrayFile):
        meta = source.meta
        return npy_header(meta.dtype, meta.shape, fortran_order=meta.order == "F")
    return npy_header(source.manifest.dtype, source.manifest.shape, fortran_order=False)


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

    Raises
    ------
    ValueError
        For a sparse matrix: only building it tells (:meth:`ReadPath.size`).
    """
    size = source.known_size
    if size is None:
        raise ValueError(f"the size of {source!r} is known only once it is built (ReadPath.size)")
    return size
