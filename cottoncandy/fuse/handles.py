"""Open files and directories of a mount, and which version the kernel may cache per path.

An open file pins the version it opened (the ``version`` of its source, see
:mod:`cottoncandy.fuse.sources`). The kernel keeps one
page cache per path: it is kept across opens while the version does not
change and dropped when it does; but while a file opened at an older version
is still open, a new open bypasses the page cache instead (``direct_io``), so
that each open file keeps reading its own version.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from .entries import Entry
from .reader import OpenFile

#: Paths whose cached version is remembered.
MAX_CACHED_VERSIONS = 1 << 16

#: One entry of a directory listing as mfusepy's ``readdir`` returns it.
DirEntry = tuple[str, dict[str, int], int]


@dataclass
class Handle:
    """One open file.

    Attributes
    ----------
    open_file : OpenFile
    entry : Entry
        What was opened (its ``stat`` while open).
    size : int
        The open version's size.
    path : str
    version : hashable
        Identifies the version read.
    direct : bool
        Reads bypass the page cache (another version is cached).
    """

    open_file: OpenFile
    entry: Entry
    size: int
    path: str
    version: Hashable
    direct: bool = False


class Handles:
    """Handle numbers -> open files and open directories' listings (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[int, Handle] = {}
        self._listings: dict[int, list[DirEntry]] = {}  # stable offsets between readdir calls
        self._counter = itertools.count(1)
        # path -> version whose pages the kernel may hold for that path
        self._cached_versions: LRUCache[str, Hashable] = LRUCache(maxsize=MAX_CACHED_VERSIONS)

    def add_file(self, path: str, open_file: OpenFile, entry: Entry, version: Hashable) -> tuple[int, bool, bool]:
        """Register an open file; returns ``(number, keep_cache, direct_io)``."""
        with self._lock:
            number = next(self._counter)
            keep_cache, direct = self._cache_mode(path, version)
            self._files[number] = Handle(open_file, entry, open_file.size, path, version, direct)
        return number, keep_cache, direct

    def _cache_mode(self, path: str, version: Hashable) -> tuple[bool, bool]:
        """``(keep_cache, direct_io)`` for a new open of ``path`` at ``version`` (lock held)."""
        if self._cached_versions.get(path) == version:
            return True, False
        if any(h.path == path and not h.direct and h.version != version for h in self._files.values()):
            return False, True
        self._cached_versions[path] = version
        return False, False

    def file(self, fh: Any) -> Handle | None:
        """The open file of an ``fh`` argument, if it is one."""
        return self._files.get(fh_number(fh))

    def release_file(self, fh: Any) -> None:
        """Forget an open file (its cached blocks stay for other readers)."""
        with self._lock:
            handle = self._files.pop(fh_number(fh), None)
        if handle is not None:
            handle.open_file.release()

    def release_all(self) -> None:
        """Release every open file (at unmount)."""
        with self._lock:
            handles, self._files = list(self._files.values()), {}
        for handle in handles:
            handle.open_file.release()

    def add_listing(self, listing: list[DirEntry]) -> int:
        """Register an open directory's listing; returns its number."""
        with self._lock:
            number = next(self._counter)
            self._listings[number] = listing
        return number

    def listing(self, fh: Any) -> list[DirEntry] | None:
        """The listing of an open directory, if ``fh`` is one."""
        return self._listings.get(fh_number(fh))

    def release_listing(self, fh: Any) -> None:
        """Forget an open directory."""
        with self._lock:
            self._listings.pop(fh_number(fh), None)


def fh_number(fh: Any) -> int:
    """The handle number in an ``fh`` argument (an int, or a ``fuse_file_info`` with raw_fi)."""
    return fh if isinstance(fh, int) else int(fh.fh)
