"""Helpers of the S3 backend's parallel transfers: shared state, body slicing, part iteration, futures, ETags.

Kept free of any S3 client so they can be tested and shared by both clients.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from typing import Iterator, Sequence

from .base import Readable


class TransferState:
    """What the parallel parts of one transfer share: the version they read, and whether to stop.

    Parameters
    ----------
    etag : str, optional
        The version every part must read; when not known, the first answer
        fixes it (:meth:`fix_etag`) and the other parts wait for it (:meth:`etag`).
    """

    def __init__(self, etag: str | None = None) -> None:
        self._etag = etag
        self._known = threading.Event()
        self._cancelled = threading.Event()
        if etag is not None:
            self._known.set()

    def fix_etag(self, etag: str | None) -> None:
        """Record the ETag of the first answer, unless one is known already; wakes the waiting parts."""
        if self._etag is None:
            self._etag = etag
            self._known.set()

    def etag(self, wait: bool = False) -> str | None:
        """The ETag every part must match (``None``: not known yet); with ``wait``, wait until it is known or the transfer is cancelled."""
        if wait:
            self._known.wait()
        return self._etag

    def cancel(self) -> None:
        """Stop the other parts: they check :attr:`cancelled` between chunks; none waits for an ETag any more."""
        self._cancelled.set()
        self._known.set()

    @property
    def cancelled(self) -> bool:
        """Whether the transfer failed or was interrupted."""
        return self._cancelled.is_set()


class Chunks:
    """A body given as bytes-like chunks, addressed as one contiguous range of bytes.

    Parameters
    ----------
    chunks : sequence of bytes-like
        C-contiguous buffers (bytes, memoryview, numpy arrays...), in order.
    """

    def __init__(self, chunks: Sequence) -> None:
        views = (memoryview(c).cast("B") for c in chunks)
        self.views: list[memoryview] = [v for v in views if v.nbytes]
        self.starts: list[int] = []
        total = 0
        for view in self.views:
            self.starts.append(total)
            total += view.nbytes
        self.size = total

    def slice(self, start: int, length: int) -> bytes | memoryview:
        """Bytes ``[start, start+length)``: a view when inside one chunk, else one copy."""
        pieces = []
        for view, first in zip(self.views, self.starts, strict=True):
            lo, hi = max(start, first), min(start + length, first + view.nbytes)
            if lo < hi:
                pieces.append(view[lo - first : hi - first])
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def read_full(stream: Readable, n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads; fewer only at end of stream."""
    pieces, got = [], 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        pieces.append(data)
        got += len(data)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def iter_parts(
    chunks: Chunks | None, head: bytes, stream: Readable | None, part: int
) -> Iterator[bytes | memoryview]:
    """Yield the bodies of successive parts of ``part`` bytes (the last may be shorter).

    From ``chunks`` when given (views, copied only across chunk boundaries),
    else ``head`` followed by what ``stream`` yields.
    """
    if chunks is not None:
        for offset in range(0, chunks.size, part):
            yield chunks.slice(offset, min(part, chunks.size - offset))
        return
    buffered = memoryview(head)
    while stream is not None:
        while buffered.nbytes >= part:
            yield buffered[:part]
            buffered = buffered[part:]
        more = read_full(stream, part - buffered.nbytes)
        if not more:
            break
        buffered = memoryview(bytes(buffered) + more) if buffered.nbytes else memoryview(more)
    if buffered.nbytes:
        yield buffered


def raise_first(futures: list[Future]) -> None:
    """Raise the exception of the first finished future that failed, if any."""
    for future in futures:
        if future.done() and not future.cancelled():
            error = future.exception()
            if error is not None:
                raise error


def wait_all(futures: list[Future], state: TransferState) -> None:
    """Wait for all futures; on the first failure (or an interrupt) cancel ``state`` and the others, and raise."""
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        raise_first(futures)
    except BaseException:
        state.cancel()
        for future in futures:
            future.cancel()
        raise


def quote_etag(etag: str | None) -> str:
    """ETags in one form, quoted (some servers leave the quotes out of listings)."""
    return f'"{etag.strip(chr(34))}"' if etag else ""


def etag_changed(expected: str | None, got: str | None) -> bool:
    """Tell whether an answer's ETag ``got`` shows another version than ``expected`` (quotes ignored)."""
    return expected is not None and got is not None and got.strip('"') != expected.strip('"')
