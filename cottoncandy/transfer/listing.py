"""Listing operations over a backend: glob, one-level listings, prefix deletion.

These fix the original library's string-prefix bugs: ``*`` stays inside one
path segment, and a recursive delete of ``ab`` never touches ``abc``.
"""

from __future__ import annotations

import re
from typing import Iterator

from ..backends.base import ObjectInfo, StorageBackend
from ..errors import ObjectNotFoundError
from ..paths import glob_regex, has_magic, literal_prefix, normalize_key, normalize_prefix

_DELETE_BATCH = 1000


def exists_object(backend: StorageBackend, key: str) -> bool:
    """Tell whether an object with exactly this key exists."""
    try:
        backend.head(key)
    except ObjectNotFoundError:
        return False
    return True


def is_prefix(backend: StorageBackend, key: str) -> bool:
    """Tell whether any object lives under ``key/``."""
    return next(iter(backend.iter_objects(normalize_prefix(key))), None) is not None


def glob(backend: StorageBackend, pattern: str) -> list[str]:
    """Return the sorted keys of objects matching a glob pattern.

    ``*``, ``?`` and ``[...]`` match within one path segment, ``**`` across
    segments. A pattern without wildcards is a path, as 0.4.0's prefix listing
    read it: that key (if it is an object) and every key below it
    (``pattern/...``), never a sibling that only shares a string prefix
    (``ab`` does not list ``abc``). The empty pattern lists the whole bucket.
    """
    key = normalize_key(pattern, allow_empty=True)
    if not has_magic(key):
        below = [info.key for info in iter_tree(backend, key)]
        if key and not key.endswith("/") and exists_object(backend, key):
            below.append(key)
        return sorted(below)  # servers that walk directories (SeaweedFS) list in another order
    regex = glob_regex(key)
    return sorted(info.key for info in backend.iter_objects(literal_prefix(key)) if regex.match(info.key))


def iter_tree(backend: StorageBackend, prefix: str) -> Iterator[ObjectInfo]:
    """Yield every object below the directory ``prefix`` (all levels)."""
    return backend.iter_objects(normalize_prefix(prefix))


def list_level(backend: StorageBackend, prefix: str) -> list[str]:
    """Names one level below ``prefix``: object keys and sub-prefixes (with a trailing ``/``)."""
    listing = backend.list_dir(normalize_prefix(prefix))
    return sorted([o.key for o in listing.objects] + listing.prefixes)


def search(backend: StorageBackend, prefix: str, pattern: str) -> list[str]:
    """Keys under ``prefix`` whose last segment contains ``pattern`` (a regular expression)."""
    regex = re.compile(pattern)
    return [info.key for info in iter_tree(backend, prefix) if regex.search(info.key.rsplit("/", 1)[-1])]


def remove_tree(backend: StorageBackend, prefix: str) -> int:
    """Delete every object below the directory ``prefix``; return how many were deleted."""
    batch: list[str] = []
    count = 0
    for info in iter_tree(backend, prefix):
        batch.append(info.key)
        if len(batch) == _DELETE_BATCH:
            backend.delete(batch)
            count += len(batch)
            batch = []
    if batch:
        backend.delete(batch)
        count += len(batch)
    return count


def glob_entries(backend: StorageBackend, pattern: str) -> list[str]:
    """Objects and directories at the depth of ``pattern`` that match it (like a shell glob).

    Directories are returned without a trailing ``/``.
    """
    key = normalize_key(pattern)
    depth = key.count("/")
    regex = glob_regex(key)
    found = set()
    for info in backend.iter_objects(literal_prefix(key)):
        parts = info.key.split("/")
        if len(parts) > depth:
            candidate = "/".join(parts[: depth + 1])
            if regex.match(candidate):
                found.add(candidate)
    return sorted(found)
