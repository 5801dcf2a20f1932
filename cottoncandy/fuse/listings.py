"""Directory contents of the mount: listed once at a time, remembered for the TTL, listed ahead.

Directory contents are trusted for ``ttl`` seconds in a cache bounded by the
number of entries it holds (not the number of directories, so a tree of
thousands of small directories does not thrash it). A directory being listed
is listed once: a second caller waits for the first.

Listing a directory starts listing its first :data:`PREFETCH_CHILDREN`
sub-directories in the background: ``ls -R``, ``find`` and ``os.walk`` go
there next, and their LISTs and HEADs then overlap instead of waiting for each
other directory by directory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from cachetools import TTLCache

from ..errors import CottonCandyError
from .entries import Entry

logger = logging.getLogger(__name__)

#: Entries (over all cached directories) kept in memory; about 0.5 KiB each.
DEFAULT_MAX_ENTRIES = 1_000_000
#: Sub-directories of a listed directory that are listed ahead, in the background.
PREFETCH_CHILDREN = 64

Named = dict[str, Entry]


class Listings:
    """Name -> entry of every directory, by prefix (``''`` or ending in ``/``).

    Parameters
    ----------
    list_directory : callable
        ``list_directory(prefix) -> {name: entry}``: lists one directory.
    ttl : float
        Seconds a listing is trusted.
    timer : callable
        Monotonic clock for the cache.
    max_entries : int
        Bound on the entries of listed directories held in memory.
    prefetch_workers : int
        Threads listing sub-directories ahead (0: no prefetch).
    """

    def __init__(self, list_directory: Callable[[str], Named], ttl: float, timer: Callable[[], float],
                 max_entries: int = DEFAULT_MAX_ENTRIES, prefetch_workers: int = 4):
        self._list_directory = list_directory
        self._lock = threading.Lock()
        self._dirs: TTLCache[str, Named] = TTLCache(maxsize=max(1, max_entries), ttl=ttl, timer=timer,
                                                    getsizeof=lambda named: len(named) + 1)
        self._listing: dict[str, Future[Named]] = {}  # directories being listed right now
        self._prefetcher = (ThreadPoolExecutor(max_workers=prefetch_workers, thread_name_prefix="cc-prefetch")
                            if prefetch_workers > 0 else None)

    def close(self) -> None:
        """Stop listing ahead."""
        if self._prefetcher is not None:
            self._prefetcher.shutdown(wait=True, cancel_futures=True)

    def cached(self, prefix: str) -> Named | None:
        """The directory's entries if listed within the TTL, else ``None`` (no request)."""
        with self._lock:
            return self._dirs.get(prefix)

    def get(self, prefix: str, prefetch: bool = True) -> Named:
        """Name -> entry for the directory at ``prefix``, listed if needed.

        With ``prefetch``, the first sub-directories are then listed ahead.
        """
        with self._lock:
            hit = self._dirs.get(prefix)
            running = self._listing.get(prefix) if hit is None else None
            mine: Future[Named] | None = None
            if hit is None and running is None:
                mine = self._listing[prefix] = Future()
        if hit is not None:
            return hit
        if mine is None:
            assert running is not None
            try:
                return running.result()
            except CottonCandyError:  # the other lister failed: try on our own
                return self.get(prefix, prefetch)
        try:
            named = self._list_directory(prefix)
            with self._lock:
                self._dirs[prefix] = named
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._listing.pop(prefix, None)
        mine.set_result(named)
        if prefetch:
            self._prefetch([e.key + "/" for e in named.values() if e.is_dir][:PREFETCH_CHILDREN])
        return named

    def replace(self, prefix: str, name: str, entry: Entry) -> None:
        """Put ``entry`` in place of the one named ``name``, if the directory is cached."""
        with self._lock:
            listed = self._dirs.get(prefix)
            if listed is not None and name in listed:
                updated = dict(listed)
                updated[name] = entry
                self._dirs[prefix] = updated

    def _prefetch(self, prefixes: list[str]) -> None:
        if self._prefetcher is None:
            return
        for prefix in prefixes:
            with self._lock:
                known = prefix in self._dirs or prefix in self._listing
            if not known:
                try:
                    self._prefetcher.submit(self._list_ahead, prefix)
                except RuntimeError:  # shut down: the mount is going away
                    return

    def _list_ahead(self, prefix: str) -> None:
        try:
            self.get(prefix, prefetch=False)
        except CottonCandyError as exc:  # whoever opens it will see the error then
            logger.debug("listing %s ahead failed: %s", prefix, exc)
