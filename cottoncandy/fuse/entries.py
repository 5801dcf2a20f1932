"""What one name in a mounted directory stands for: one frozen class per kind of entry.

* :class:`Directory` -- a common prefix ``p/`` (or the mount root);
* :class:`ObjectFile` -- any other object, served with its own bytes;
* :class:`RawArrayEntry` -- an object with array metadata, shown as ``.npy``;
* :class:`DaskArrayEntry` -- a prefix whose ``metadata.json`` is a dask
  manifest, shown as one ``.npy`` assembled from its parts;
* :class:`SparseMatrixEntry` -- a prefix whose ``metadata.json`` is a sparse
  manifest, shown as the ``.npz`` ``scipy.sparse.load_npz`` reads;
* :class:`BrokenEntry` -- an array whose metadata cannot be used: its file
  answers ``EIO`` when opened.

A file entry carries its ``file``, the :mod:`descriptor <cottoncandy.fuse.sources>`
the read path opens, built once when the entry is made (the tree adds the
HEADs of a dask or sparse file's parts when it is opened). Each class
knows its extended attributes and how it is named when it loses a name
collision (see :mod:`cottoncandy.fuse.names`). Entries are immutable: FUSE
threads share them, and a refresh replaces them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import ClassVar, Generic, TypeVar

from typing_extensions import override

from ..backends.base import ObjectInfo
from ..format.compression import stored_compression
from ..format.metadata import stored_shape
from .sources import DaskArrayFile, ObjectBody, RawArrayFile, Source, SparseMatrixFile

NPY, NPZ = ".npy", ".npz"

_E = TypeVar("_E", bound="Entry")
_S = TypeVar("_S", bound=Source)


class Kind(enum.Enum):
    """What an entry is."""

    DIR = "dir"
    OBJECT = "object"  # plain object: its own bytes
    RAW = "array"  # raw array: npy header + decoded body
    DASK = "dask"  # dask prefix: one .npy assembled from parts
    SPARSE = "sparse"  # sparse prefix: an .npz built on the fly
    BROKEN = "broken"  # an array whose metadata cannot be used: EIO on open


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One file or directory of the mount.

    Attributes
    ----------
    name : str
        Name shown in the directory.
    key : str
        Object key, or the prefix without its trailing ``/`` for directories,
        dask and sparse entries.
    mtime : float
    """

    name: str
    key: str
    mtime: float

    kind: ClassVar[Kind]
    #: What a collision loser's name says it is (``x~array.npy``).
    mark: ClassVar[str]
    #: Rank of the entry's name in a collision when it is derived (lower keeps the name).
    rank: ClassVar[int]
    #: File name extension of this kind (added to the key's last segment).
    extension: ClassVar[str] = NPY
    is_dir: ClassVar[bool] = False

    def xattrs(self) -> dict[str, str]:
        """The ``user.cottoncandy.*`` attributes (without the prefix), values as stored."""
        return {"key": self.key}

    def marked_name(self) -> str:
        """The name this entry is shown under when it loses a name collision."""
        stem = self.name[: -len(NPY)] if self.name.endswith((NPY, NPZ)) else self.name
        return f"{stem}~{self.mark}{self.extension}"

    def renamed(self: _E, name: str) -> _E:
        """This entry under another name."""
        return self if name == self.name else replace(self, name=name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Directory(Entry):
    """A directory: a common prefix, or the mount root (``key == ''``)."""

    kind = Kind.DIR
    mark = "dir"
    rank = 0
    is_dir = True

    @override
    def xattrs(self) -> dict[str, str]:
        """The prefix, with its ``/``; the bucket root has none."""
        return {"key": self.key + "/"} if self.key else {}


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry(Entry):
    """A file of the mount.

    Attributes
    ----------
    size : int or None
        File size; ``None`` when only building the file tells (sparse entries).
    info : ObjectInfo or None
        HEAD of the object whose version the file shows (of ``metadata.json``
        for dask and sparse entries); ``None`` when the HEAD failed.
    """

    size: int | None
    info: ObjectInfo | None

    @property
    def head_key(self) -> str:
        """The key an open HEADs to check the version."""
        return self.info.key if self.info is not None else self.key

    @property
    def etag(self) -> str | None:
        """Version of the object the file shows, if known."""
        return self.info.etag if self.info is not None else None

    @property
    def metadata(self) -> dict[str, str]:
        """The object's user metadata (lower-cased keys), empty when unknown."""
        if self.info is None or self.info.metadata is None:
            return {}
        return dict(self.info.metadata)

    def source(self) -> Source:
        """The descriptor the read path opens.

        Raises
        ------
        CottonCandyError
            For a broken entry: why it cannot be read.
        """
        raise NotImplementedError


def _array_xattrs(metadata: dict[str, str]) -> dict[str, str]:
    """``dtype``, ``shape`` and ``compression`` as a raw array's metadata states them."""
    out = {}
    if "dtype" in metadata:
        out["dtype"] = metadata["dtype"]
    shape = stored_shape(metadata)  # a 0-d array's empty shape, even where the server dropped it
    if shape is not None:
        out["shape"] = shape
    out["compression"] = stored_compression(metadata)
    return out


def _shape_text(shape: tuple[int, ...]) -> str:
    return ",".join(map(str, shape))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadableEntry(FileEntry, Generic[_S]):
    """A file whose descriptor is known when it is listed.

    Attributes
    ----------
    file : descriptor
        What the read path opens (without its parts, for dask and sparse files:
        the tree adds their HEADs at open).
    """

    file: _S

    @override
    def source(self) -> _S:
        """The descriptor."""
        return self.file


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectFile(ReadableEntry[ObjectBody]):
    """A plain object: its own name, bytes and size."""

    kind = Kind.OBJECT
    mark = "object"
    rank = 1
    extension = ""

    @override
    def marked_name(self) -> str:
        """``<name>~object``: an object's name has no extension of ours."""
        return self.name + "~object"


@dataclass(frozen=True, slots=True, kw_only=True)
class RawArrayEntry(ReadableEntry[RawArrayFile]):
    """A raw array, shown as ``<name>.npy``."""

    kind = Kind.RAW
    mark = "array"
    rank = 2

    @override
    def xattrs(self) -> dict[str, str]:
        """Key, and dtype, shape and compression as stored."""
        return {"key": self.key, **_array_xattrs(self.metadata)}


@dataclass(frozen=True, slots=True, kw_only=True)
class DaskArrayEntry(ReadableEntry[DaskArrayFile]):
    """A dask array prefix, shown as one ``<name>.npy``."""

    kind = Kind.DASK
    mark = "dask"
    rank = 3

    @override
    def xattrs(self) -> dict[str, str]:
        """Key, and the manifest's dtype and shape."""
        manifest = self.file.manifest
        return {"key": self.key, "dtype": manifest.dtype.str, "shape": _shape_text(manifest.shape)}


@dataclass(frozen=True, slots=True, kw_only=True)
class SparseMatrixEntry(ReadableEntry[SparseMatrixFile]):
    """A sparse matrix prefix, shown as ``<name>.npz``."""

    kind = Kind.SPARSE
    mark = "sparse"
    rank = 4
    extension = NPZ

    @override
    def xattrs(self) -> dict[str, str]:
        """Key, and the matrix's shape."""
        return {"key": self.key, "shape": _shape_text(self.file.manifest.shape)}


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokenEntry(FileEntry):
    """An array whose metadata (or manifest, or HEAD) cannot be used: ``EIO`` when opened.

    Attributes
    ----------
    error : Exception
        Why it cannot be read.
    """

    error: Exception
    kind = Kind.BROKEN
    mark = "array"
    rank = 2

    @override
    def source(self) -> Source:
        """Never: raises the reason the entry is broken."""
        raise self.error

    @override
    def xattrs(self) -> dict[str, str]:
        """Key, and what the metadata says, when it says anything."""
        metadata = self.metadata
        return {"key": self.key, **_array_xattrs(metadata)} if metadata else {"key": self.key}
