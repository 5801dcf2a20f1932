"""The mount's block cache: one LRU of byte blocks, bounded in bytes, shared by all open files.

Blocks are keyed by hashable tuples that include the object's ETag, so a new
version of an object never hits the blocks of an old one. Concurrent misses on
one key share a single load ("single flight"): the first caller runs the
loader, the others wait for its result or its exception.

Memory: blocks of a few MiB freed by eviction often stay in the process as
free heap (glibc raises its mmap threshold after the first large ``free``,
so later blocks come from per-thread arenas that are rarely trimmed): with 8
readers streaming through a 256 MiB cache the mount's peak RSS was about
100 MiB higher than with trimming. So after every ``trim_bytes`` evicted the
cache asks glibc (``malloc_trim``) to give free pages back. A load in
progress also counts against the bound: the caller of
:meth:`BlockCache.get_or_load` says how big the block will be and least
recently used blocks make room before the loader runs, so many parallel
read-aheads do not hold a cache-full of blocks plus their own.
"""

from __future__ import annotations

import ctypes
import functools
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


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (musl, macOS)."""
    try:
        # the symbols already loaded into this process: no library search (and no subprocess)
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


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
    trim_bytes : int
        Return free heap memory to the system after this many bytes were
        evicted (0: never). See the module notes.
    """

    def __init__(self, capacity_bytes: int, trim_bytes: int = 32 << 20):
        if capacity_bytes <= 0:
            raise ValueError(f"cache capacity must be positive, got {capacity_bytes}")
        self._trim = _malloc_trim() if trim_bytes > 0 else None
        self._trim_bytes = trim_bytes
        self._evicted_since_trim = 0
        self._reserved = 0  # bytes of loads in progress (see get_or_load's size_hint)
        self._lru: cachetools.LRUCache[Hashable, bytes] = cachetools.LRUCache(maxsize=capacity_bytes, getsizeof=len)
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
                value: bytes = cachetools.Cache.__getitem__(self._lru, cache_key)
                return value
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
    def _store(self, cache_key: Hashable, value: bytes) -> bool:
        """Insert; return True when enough was evicted that free memory should be trimmed.

        The caller holds the lock and calls :meth:`_trim_heap` after releasing it.
        """
        before = self._lru.currsize
        try:
            self._lru[cache_key] = value
        except ValueError:  # larger than the whole cache: hand it out, keep nothing
            self._lru.pop(cache_key, None)
            log.debug("block %r of %d bytes exceeds the cache capacity; not cached", cache_key, len(value))
            return False
        return self._count_evicted(int(before + len(value) - self._lru.currsize))

    def _count_evicted(self, nbytes: int) -> bool:
        """Add to the bytes evicted since the last trim; True when it is time to trim (lock held)."""
        self._evicted_since_trim += max(0, nbytes)
        if self._trim is None or self._evicted_since_trim < self._trim_bytes:
            return False
        self._evicted_since_trim = 0
        return True

    def _trim_heap(self) -> None:
        """Give free heap pages back to the system (outside the lock: it walks every arena)."""
        if self._trim is not None:
            self._trim(0)

    def put(self, cache_key: Hashable, value: bytes) -> None:
        """Insert (or replace) a block."""
        value = bytes(value)
        with self._lock:
            self.puts += 1
            trim = self._store(cache_key, value)
        if trim:
            self._trim_heap()

    def discard(self, cache_key: Hashable) -> None:
        """Drop a block if held."""
        with self._lock:
            self._lru.pop(cache_key, None)

    def clear(self) -> None:
        """Drop every block (counters are kept)."""
        with self._lock:
            self._lru.clear()

    def _reserve(self, nbytes: int) -> bool:
        """Count a load of ``nbytes`` against the bound, evicting to make room (lock held).

        Returns True when enough was evicted that free memory should be trimmed.
        """
        self._reserved += nbytes
        evicted = 0
        while self._lru and self._lru.currsize + self._reserved > self._lru.maxsize:
            evicted += len(self._lru.popitem()[1])
        return self._count_evicted(evicted)

    def get_or_load(self, cache_key: Hashable, loader: Callable[[], bytes], size_hint: int = 0) -> bytes:
        """Return the block, running ``loader`` on a miss.

        Concurrent misses on one key run ``loader`` once: the other callers wait
        for its result. If the loader raises, every waiter receives that
        exception and nothing is cached, so the next call tries again.

        Parameters
        ----------
        cache_key : hashable
        loader : callable
            Returns the block's bytes (any bytes-like object; stored as ``bytes``).
        size_hint : int
            Expected size of the block: that much room is made (and counted
            against the bound) before ``loader`` runs.

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
            trim = False
            if flight is None:
                flight = self._flights[cache_key] = _Flight()
                owner = True
                self.misses += 1
                trim = self._reserve(size_hint)
            else:
                owner = False
                self.joined += 1
        if trim:
            self._trim_heap()
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
                self._reserved -= size_hint
                self.load_errors += 1
                del self._flights[cache_key]
            flight.error = exc
            flight.done.set()
            raise
        with self._lock:
            self._reserved -= size_hint
            self.bytes_loaded += len(value)
            trim = self._store(cache_key, value)
            del self._flights[cache_key]
        flight.value = value
        flight.done.set()
        if trim:
            self._trim_heap()
        return value
