"""How names of the mount are chosen from keys, and what happens when two keys claim one.

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

import re
from collections.abc import Iterable

from ..backends.local import SIDECAR_SUFFIX
from .entries import NPY, NPZ, Entry

#: Longest file name (bytes) Linux accepts in a path.
NAME_MAX = 255

#: Names a collision loser can carry; only these need a full directory listing to resolve.
MARKED_NAME = re.compile(r"~(object|array|dask|sparse)(\.npy|\.npz)?\Z")


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


def name_bytes(name: str) -> int:
    """Length of ``name`` in a path, in bytes."""
    return len(name.encode("utf-8", "surrogateescape"))


def fits_name_max(name: str) -> bool:
    """Whether ``name`` can be a file name (at most ``NAME_MAX`` bytes): the kernel refuses longer ones."""
    return name_bytes(name) <= NAME_MAX


def array_name(name: str) -> str:
    """File name of a raw array stored under ``name`` (no double ``.npy``)."""
    return name if name.endswith(NPY) else name + NPY


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
        if entry.is_dir:
            return 0
        return 1 if entry.name == basename(entry.key) else entry.rank

    ordered = sorted(entries, key=lambda e: (e.name, rank(e), e.key))
    out: dict[str, Entry] = {}
    losers: list[Entry] = []
    for entry in ordered:
        if entry.name in out:
            losers.append(entry)
        else:
            out[entry.name] = entry
    for entry in losers:
        name = entry.marked_name()
        if name in out:  # a key literally named like our mark: keep the first claim
            continue
        out[name] = entry.renamed(name)
    return out
