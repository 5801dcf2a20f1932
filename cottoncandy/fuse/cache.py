"""The mount's block cache: one LRU of byte blocks, bounded in bytes, shared by all open files.

Blocks are keyed by hashable tuples that include the object's ETag, so a new
version of an object never hits the blocks of an old one. Concurrent misses on
one key share a single load ("single flight"): the first caller runs the
loader, the others wait for its result or its exception.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Hashable

import cachetools

__all__ = ["BlockCache", "CacheStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of the cache counters.

    Attributes
    ----------
    hits : int
        ``get_or_load`` calls answered from the cache.
    joined : int
        ``get_or_load`` calls that waited on another caller's load of the same key.
    misses : int
        ``get_or_load`` calls that ran their loader.
    load_errors : int
        Loaders that raised.
    bytes_loaded : int
        Bytes returned by successful loaders.
    puts : int
        Blocks inserted with :meth:`BlockCache.put`.
    blocks : int
        Blocks held now.
    currsize : int
        Bytes held now.
    capacity : int
        Byte bound.
    """

    hits: int
    joined: int
    misses: int
    load_errors: int
    bytes_loaded: int
    puts: int
    blocks: int
    currsize: int
    capacity: int


class _Flight:
    """One load in progress; waiters block on ``done``."""

    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: bytes | None = None
        self.error: BaseException | None = None


class BlockCache:
    """A thread-safe LRU of ``bytes`` blocks bounded by their total length.

    Parameters
    ----------
    capacity_bytes : int
        Upper bound on the sum of ``len(block)`` held. A block larger than the
        whole capacity is returned to its caller but not kept.
    """

    def __init__(self, capacity_bytes: int):
        if capacity_bytes <= 0:
            raise ValueError(f"cache capacity must be positive, got {capacity_bytes}")
        self._lru: cachetools.LRUCache = cachetools.LRUCache(maxsize=capacity_bytes, getsizeof=len)
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self.hits = 0
        self.joined = 0
        self.misses = 0
        self.load_errors = 0
        self.bytes_loaded = 0
        self.puts = 0

    # -- queries -----------------------------------------------------------
    @property
    def capacity(self) -> int:
        """The byte bound."""
        return int(self._lru.maxsize)

    @property
    def currsize(self) -> int:
        """Bytes held now."""
        with self._lock:
            return int(self._lru.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def __contains__(self, cache_key: Hashable) -> bool:
        with self._lock:
            return cache_key in self._lru

    def keys(self) -> list[Hashable]:
        """The keys held now (in no particular order)."""
        with self._lock:
            return list(self._lru.keys())

    def peek(self, cache_key: Hashable) -> bytes | None:
        """Return the block if held, without counting a hit or refreshing its recency."""
        with self._lock:
            try:
                return cachetools.Cache.__getitem__(self._lru, cache_key)
            except KeyError:
                return None

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return CacheStats(
                hits=self.hits,
                joined=self.joined,
                misses=self.misses,
                load_errors=self.load_errors,
                bytes_loaded=self.bytes_loaded,
                puts=self.puts,
                blocks=len(self._lru),
                currsize=int(self._lru.currsize),
                capacity=int(self._lru.maxsize),
            )

    # -- updates -----------------------------------------------------------
    def _store(self, cache_key: Hashable, value: bytes) -> None:
        # caller holds the lock
        try:
            self._lru[cache_key] = value
        except ValueError:  # larger than the whole cache: hand it out, keep nothing
            self._lru.pop(cache_key, None)
            log.debug("block %r of %d bytes exceeds the cache capacity; not cached", cache_key, len(value))

    def put(self, cache_key: Hashable, value: bytes) -> None:
        """Insert (or replace) a block."""
        value = bytes(value)
        with self._lock:
            self.puts += 1
            self._store(cache_key, value)

    def discard(self, cache_key: Hashable) -> None:
        """Drop a block if held."""
        with self._lock:
            self._lru.pop(cache_key, None)

    def clear(self) -> None:
        """Drop every block (counters are kept)."""
        with self._lock:
            self._lru.clear()

    def get_or_load(self, cache_key: Hashable, loader: Callable[[], bytes]) -> bytes:
        """Return the block, running ``loader`` on a miss.

        Concurrent misses on one key run ``loader`` once: the other callers wait
        for its result. If the loader raises, every waiter receives that
        exception and nothing is cached, so the next call tries again.

        Parameters
        ----------
        cache_key : hashable
        loader : callable
            Returns the block's bytes (any bytes-like object; stored as ``bytes``).

        Returns
        -------
        bytes
        """
        with self._lock:
            try:
                value = self._lru[cache_key]
            except KeyError:
                pass
            else:
                self.hits += 1
                return value
            flight = self._flights.get(cache_key)
            if flight is None:
                flight = self._flights[cache_key] = _Flight()
                owner = True
                self.misses += 1
            else:
                owner = False
                self.joined += 1
        if not owner:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.value is not None
            return flight.value
        try:
            value = loader()
            if not isinstance(value, bytes):
                value = bytes(value)
        except BaseException as exc:
            with self._lock:
                self.load_errors += 1
                del self._flights[cache_key]
            flight.error = exc
            flight.done.set()
            raise
        with self._lock:
            self.bytes_loaded += len(value)
            self._store(cache_key, value)
            del self._flights[cache_key]
        flight.value = value
        flight.done.set()
        return value
