"""What one name in a mounted directory stands for, and how names are chosen.

A directory of the mount is built from one ``/``-delimited listing level:

* a common prefix ``p/`` is a directory ``p``, unless ``p/metadata.json`` is
  a dask manifest (then it is one file ``p.npy``) or a sparse manifest (then
  it is one file ``p.npz``);
* an object with array metadata (``dtype`` and ``shape``) is ``<name>.npy``,
  or ``<name>`` when the key already ends in ``.npy``;
* any other object is a file with its own name and bytes;
* ``*.meta.json`` sidecars are never shown, nor keys whose last segment is
  empty, ``.`` or ``..`` (``a//x``, ``a/../x``, the marker object ``a/``),
  nor names longer than 255 bytes (no path could reach them).

**Name collisions.** Several keys can claim one name (object ``a`` and prefix
``a/``; raw array ``x`` and object ``x.npy``; raw array ``v`` and dask prefix
``v/``). The claim with the highest rank keeps the name: a directory first,
then an entry whose name is its key's own last segment, then derived names
(``x`` shown as ``x.npy``), then dask and sparse prefixes. Every other claim
is shown under a marked name that says what it is: ``a~object``,
``x~array.npy``, ``v~dask.npy``, ``s~sparse.npz``. Nothing is hidden and every
name is stable as long as the keys do not change.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ..backends.base import ObjectInfo
from ..format.manifests import DaskManifest, SparseManifest
from ..format.metadata import ArrayMeta

SIDECAR_SUFFIX = ".meta.json"
MANIFEST_NAME = "metadata.json"
NPY, NPZ = ".npy", ".npz"
#: Longest file name (bytes) Linux accepts in a path.
NAME_MAX = 255

#: Names a collision loser can carry; only these need a full directory listing to resolve.
MARKED_NAME = re.compile(r"~(object|array|dask|sparse)(\.npy|\.npz)?\Z")


class Kind(enum.Enum):
    """What an entry is."""

    DIR = "dir"
    OBJECT = "object"  # plain object: its own bytes
    RAW = "array"  # raw array: npy header + decoded body
    DASK = "dask"  # dask prefix: one .npy assembled from parts
    SPARSE = "sparse"  # sparse prefix: an .npz built on the fly
    BROKEN = "broken"  # an array whose metadata cannot be used: EIO on open


# rank of derived names: lower keeps the name on a collision (0: directory, 1: own key name)
_RANK = {Kind.DIR: 0, Kind.OBJECT: 1, Kind.RAW: 2, Kind.BROKEN: 2, Kind.DASK: 3, Kind.SPARSE: 4}


@dataclass(frozen=True, slots=True)
class Entry:
    """One file or directory of the mount (immutable: FUSE threads share it).

    Attributes
    ----------
    name : str
        Name shown in the directory.
    kind : Kind
    key : str
        Object key, or the prefix without its trailing ``/`` for directories,
        dask and sparse entries.
    info : ObjectInfo or None
        HEAD of the object (of ``metadata.json`` for dask and sparse entries).
    meta : ArrayMeta or None
        Parsed array metadata of a raw array.
    manifest : DaskManifest, SparseManifest or None
        Parsed manifest of a dask or sparse entry.
    error : Exception or None
        Why a ``BROKEN`` entry cannot be read.
    size : int or None
        File size; ``None`` when only building the file tells (sparse entries).
    mtime : float
    """

    name: str
    kind: Kind
    key: str
    info: ObjectInfo | None = None
    meta: ArrayMeta | None = None
    manifest: DaskManifest | SparseManifest | None = None
    error: Exception | None = None
    size: int | None = 0
    mtime: float = 0.0
    natural: bool = field(default=True, repr=False)

    @property
    def is_dir(self) -> bool:
        """Whether the entry is a directory."""
        return self.kind is Kind.DIR

    @property
    def metadata(self) -> dict[str, str]:
        """The object's user metadata (lower-cased keys), empty when unknown."""
        if self.info is None or self.info.metadata is None:
            return {}
        return dict(self.info.metadata)


def basename(key: str) -> str:
    """Last segment of a key or prefix (``'a/b/'`` -> ``'b'``).

    Only one trailing ``/`` is dropped: the prefix ``'a//'`` (from key
    ``'a//x'``) ends in an empty segment, and the key ``'a/'`` (a "directory
    marker" object) lists inside ``a/`` with an empty name. Stripping every
    slash would show them as ghost entries named ``a`` inside ``a``.
    """
    return (key[:-1] if key.endswith("/") else key).rsplit("/", 1)[-1]


def is_hidden_key(key: str) -> bool:
    """Keys never shown: sidecars, and names that cannot be path segments (``''``, ``.``, ``..``)."""
    name = basename(key)
    return name.endswith(SIDECAR_SUFFIX) or name in ("", ".", "..")


def fits_name_max(name: str) -> bool:
    """Whether ``name`` can be a file name (at most ``NAME_MAX`` bytes): the kernel refuses longer ones."""
    return len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX


def array_name(name: str) -> str:
    """File name of a raw array stored under ``name`` (no double ``.npy``)."""
    return name if name.endswith(NPY) else name + NPY


def marked_name(entry: Entry) -> str:
    """The name a collision loser is shown under."""
    if entry.kind is Kind.OBJECT:
        return entry.name + "~object"
    stem = entry.name[: -len(NPY)] if entry.name.endswith((NPY, NPZ)) else entry.name
    ext = NPZ if entry.kind is Kind.SPARSE else NPY
    mark = {Kind.DASK: "dask", Kind.SPARSE: "sparse"}.get(entry.kind, "array")
    return f"{stem}~{mark}{ext}"


def candidates_for(name: str) -> tuple[list[str], list[str]]:
    """Keys and prefix names (relative to the directory) that may claim ``name``.

    Returns
    -------
    objects : list of str
        Object names to HEAD.
    prefixes : list of str
        Sub-prefix names (without ``/``) to list or probe.
    """
    objects, prefixes = [name], [name]
    if name.endswith(NPY) and len(name) > len(NPY):
        objects.append(name[: -len(NPY)])
        prefixes.append(name[: -len(NPY)])
    elif name.endswith(NPZ) and len(name) > len(NPZ):
        prefixes.append(name[: -len(NPZ)])
    return objects, prefixes


def assign_names(entries: Iterable[Entry]) -> dict[str, Entry]:
    """Resolve name collisions (see module docstring); returns name -> entry.

    Entries are given with their natural names; losers come back as copies
    under their marked names.
    """
    def rank(entry: Entry) -> int:
        if entry.kind is Kind.DIR:
            return 0
        return 1 if entry.name == basename(entry.key) else _RANK[entry.kind]

    ordered = sorted(entries, key=lambda e: (e.name, rank(e), e.key))
    out: dict[str, Entry] = {}
    losers: list[Entry] = []
    for entry in ordered:
        if entry.name in out:
            losers.append(entry)
        else:
            out[entry.name] = entry
    for entry in losers:
        name = marked_name(entry)
        if name in out:  # a key literally named like our mark: keep the first claim
            continue
        out[name] = replace(entry, name=name, natural=False)
    return out
