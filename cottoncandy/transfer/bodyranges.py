"""A body read as consecutive ranges, the next ones downloading while the caller works on the current one.

A compressed body that decodes as a stream (gzip, zlib) need not be held
whole next to the array it decodes into: :func:`iter_ranges` yields it in
``part``-sized pieces, each one ranged GET pinned to the object's ETag, with
up to ``ahead`` further pieces in flight on their own threads. The caller's
thread decodes while the network threads download, so the two overlap, and at
most ``(ahead + 1) * part`` bytes of body are held at a time.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

from ..backends.base import StorageBackend
from ..errors import ArrayFormatError

#: Bytes per ranged GET.
PART_BYTES = 8 << 20
#: Ranges downloading ahead of the one handed to the caller.
AHEAD = 4


def iter_ranges(backend: StorageBackend, key: str, size: int, etag: str | None,
                part: int | None = None, ahead: int | None = None) -> Iterator[bytes]:
    """Yield body bytes ``[0, size)`` of ``key`` in order, in pieces of ``part`` bytes.

    Parameters
    ----------
    backend : StorageBackend
    key : str
    size : int
        Body size (from the HEAD that gave ``etag``).
    etag : str or None
        Version every range must come from; a replaced object raises
        ``ObjectNotFoundError`` rather than mixing versions.
    part : int, optional
        Bytes per ranged GET (the last piece may be shorter); default :data:`PART_BYTES`.
    ahead : int, optional
        Pieces downloading while the caller holds the current one; default :data:`AHEAD`.

    Yields
    ------
    bytes

    Raises
    ------
    ArrayFormatError
        The body ends before ``size`` bytes.

    Notes
    -----
    Closing the generator early (``break``, an exception in the caller)
    cancels what has not started and does not wait for GETs in progress.
    """
    part = PART_BYTES if part is None else part
    ahead = AHEAD if ahead is None else ahead
    if part <= 0 or ahead < 0:
        raise ValueError("part must be positive and ahead non-negative")
    if size <= part or ahead == 0:
        for start in range(0, size, part):
            yield _checked(key, start, backend.read_range(key, start, min(start + part, size), etag=etag), part, size)
        return
    starts = iter(range(0, size, part))
    pending: collections.deque[tuple[int, Future]] = collections.deque()
    pool = ThreadPoolExecutor(min(ahead, -(-size // part)), thread_name_prefix="cc-ranges")

    def submit() -> None:
        start = next(starts, None)
        if start is not None:
            pending.append((start, pool.submit(backend.read_range, key, start, min(start + part, size), etag)))

    try:
        for _ in range(ahead):
            submit()
        while pending:
            start, future = pending.popleft()
            data = future.result()
            submit()
            yield _checked(key, start, data, part, size)
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def _checked(key: str, start: int, data: bytes, part: int, size: int) -> bytes:
    if len(data) != min(part, size - start):
        raise ArrayFormatError(f"{key}: body ends at byte {start + len(data)}, expected {size} bytes", key)
    return data
