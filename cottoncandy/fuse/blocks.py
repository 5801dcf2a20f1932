"""Block streams: the decoded bytes of one stored object, served from the shared block cache.

A stream is a read-only byte sequence of known size split into fixed-size
blocks. Each block is fetched or decoded once, kept in the mount's
:class:`~cottoncandy.fuse.cache.BlockCache` under a key that names the object
version (ETag), and shared by every open file. Streams here:

* :class:`StoredStream` -- bytes as stored, one ranged GET per block
  (plain objects and uncompressed arrays; both share the same cache blocks);
* :class:`CodecStream` -- a numcodecs body, decoded whole once, all blocks cached;
* :class:`EmptyStream` -- nothing to read (empty arrays);
* gzip bodies: :class:`cottoncandy.fuse.gzstream.GzipStream`.
"""

from __future__ import annotations

import logging
import threading
import weakref
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable, TypeVar

from typing_extensions import override

from ..backends.base import StorageBackend
from ..errors import ArrayFormatError, CottonCandyError, StorageError
from .cache import BlockCache

if TYPE_CHECKING:
    from ..format.codecbase import Codec

__all__ = ["ReadContext", "ObjectLocks", "BlockStream", "StoredStream", "CodecStream", "EmptyStream"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class _LockBox:
    """A lock that can be held in a ``WeakValueDictionary``."""

    __slots__ = ("lock", "__weakref__")

    def __init__(self) -> None:
        self.lock = threading.Lock()


class ObjectLocks:
    """One lock per object version, alive while any stream holds it."""

    def __init__(self) -> None:
        self._boxes: weakref.WeakValueDictionary[tuple[str, str], _LockBox] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def get(self, key: str, etag: str) -> _LockBox:
        """Return the lock box of ``(key, etag)`` (keep a reference while using it)."""
        with self._lock:
            box = self._boxes.get((key, etag))
            if box is None:
                box = self._boxes[(key, etag)] = _LockBox()
            return box


@dataclass
class ReadContext:
    """What every stream of one mount shares."""

    backend: StorageBackend
    cache: BlockCache
    executor: Executor
    block_size: int
    locks: ObjectLocks
    #: Runs fetches that never wait for another task (gzip input read ahead of the decoder).
    #: Separate from ``executor``, whose tasks may wait for them: sharing one pool could deadlock.
    io_executor: Executor | None = None
    #: Bytes a random reader's miss fetches from a stored body instead of a whole block.
    random_read_size: int = 512 << 10
    _pending: int = 0
    _idle: threading.Condition = field(default_factory=threading.Condition)

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` in the background; failures are logged at debug level only.

        A foreground read of the same block will retry and report the error.
        """
        with self._idle:
            self._pending += 1
        try:
            future = self.executor.submit(fn, *args)
        except RuntimeError:  # executor shut down: the mount is closing
            self._task_done(None)
            return
        future.add_done_callback(self._task_done)

    def submit_io(self, fn: Callable[..., _T], *args: object) -> Future[_T] | None:
        """Run the pure fetch ``fn(*args)`` on ``io_executor``; ``None`` if there is none (or it is closed).

        The caller collects the result (or the exception) from the future;
        :meth:`wait_idle` waits for it too.
        """
        if self.io_executor is None:
            return None
        with self._idle:
            self._pending += 1
        try:
            future = self.io_executor.submit(fn, *args)
        except RuntimeError:  # executor shut down: the mount is closing
            self._task_done(None)
            return None
        future.add_done_callback(self._io_done)
        return future

    def _io_done(self, future: Future[Any]) -> None:
        # the submitter reads the outcome; only the count matters here
        self._task_done(None)

    def _task_done(self, future: Future[Any] | None) -> None:
        if future is not None and not future.cancelled():
            exc = future.exception()
            if exc is not None:
                log.debug("background block load failed: %s", exc)
        with self._idle:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no background load is queued or running; return False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)


class BlockStream:
    """Base class: a byte sequence of ``size`` bytes in blocks of ``block_size``.

    Subclasses define :meth:`_load_block` and :meth:`block_key`.
    """

    size: int
    block_size: int

    def __init__(self, ctx: ReadContext, key: str, etag: str, size: int, block_size: int):
        self.ctx = ctx
        self.key = key
        self.etag = etag
        self.size = size
        self.block_size = block_size

    # -- to override ---------------------------------------------------------
    def block_key(self, index: int) -> Hashable:
        """Cache key of block ``index``."""
        return (self.key, self.etag, index)

    def _load_block(self, index: int) -> bytes:
        raise NotImplementedError

    def _schedule(self, indices: list[int]) -> None:
        """Start background loads of ``indices`` (ascending, not cached)."""
        for index in indices:
            self.ctx.submit(self.block, index)

    # -- public --------------------------------------------------------------
    @property
    def nblocks(self) -> int:
        """Number of blocks."""
        return -(-self.size // self.block_size)

    def block_span(self, index: int) -> tuple[int, int]:
        """Byte range ``[start, end)`` of block ``index``."""
        start = index * self.block_size
        return start, min(start + self.block_size, self.size)

    def block(self, index: int) -> bytes:
        """Return block ``index``, loading it (once, whoever asks) on a miss."""
        start, end = self.block_span(index)
        return self.ctx.cache.get_or_load(self.block_key(index), lambda: self._checked_load(index), end - start)

    def _checked_load(self, index: int) -> bytes:
        data = self._load_block(index)
        start, end = self.block_span(index)
        if len(data) != end - start:  # a subclass bug, never user input
            raise ArrayFormatError(f"{self.key}: block {index} has {len(data)} bytes, expected {end - start}", self.key)
        return data

    def _blocks(self, offset: int, length: int) -> range:
        end = min(self.size, offset + length)
        if length <= 0 or offset >= end:
            return range(0)
        return range(offset // self.block_size, (end - 1) // self.block_size + 1)

    def missing(self, offset: int, length: int) -> list[int]:
        """Blocks of ``[offset, offset + length)`` not in the cache now."""
        cache = self.ctx.cache
        return [i for i in self._blocks(offset, length) if self.block_key(i) not in cache]

    def prefetch_range(self, offset: int, length: int) -> None:
        """Load the blocks of ``[offset, offset + length)`` in the background."""
        todo = self.missing(offset, length)
        if todo:
            self._schedule(todo)

    def read(self, offset: int, length: int, random: bool = False) -> bytes:
        """Return bytes ``[offset, offset + length)``, short only at the end.

        Blocks missing from the cache beyond the first are loaded in parallel
        on the executor while this thread loads the first. ``random`` says the
        reader is seeking around (streams that can fetch less than a block use it).
        """
        blocks = self._blocks(offset, length)
        if not blocks:
            return b""
        end = min(self.size, offset + length)
        if len(blocks) > 1:
            later = [i for i in blocks[1:] if self.block_key(i) not in self.ctx.cache]
            if later:
                self._schedule(later)
        pieces = []
        for index in blocks:
            data = self.block(index)
            start = index * self.block_size
            lo, hi = max(offset, start) - start, min(end, start + len(data)) - start
            pieces.append(data if (lo == 0 and hi == len(data)) else memoryview(data)[lo:hi])
        if len(pieces) == 1 and isinstance(pieces[0], bytes):
            return pieces[0]
        return b"".join(pieces)


class EmptyStream(BlockStream):
    """A stream of zero bytes (an empty array)."""

    def __init__(self, ctx: ReadContext, key: str, etag: str):
        super().__init__(ctx, key, etag, 0, ctx.block_size)

    @override
    def _load_block(self, index: int) -> bytes:  # pragma: no cover - never called
        return b""


class StoredStream(BlockStream):
    """A body as stored: block ``i`` is one ranged GET pinned to the ETag.

    Parameters
    ----------
    ctx : ReadContext
    key, etag : str
    size : int
        Body size in bytes.
    short_error : type
        Exception raised when the body ends early (``ArrayFormatError`` for
        arrays, ``StorageError`` for plain objects).
    """

    def __init__(self, ctx: ReadContext, key: str, etag: str, size: int,
                 short_error: type[CottonCandyError] = StorageError):
        super().__init__(ctx, key, etag, size, ctx.block_size)
        self._short_error = short_error

    @override
    def read(self, offset: int, length: int, random: bool = False) -> bytes:
        """As :meth:`BlockStream.read`; a random reader's misses fetch only ``random_read_size`` pieces.

        A whole block (8 MiB by default) per 64 KiB random read would move over
        a hundred times the bytes asked for; the pieces are cached like blocks.
        """
        piece = self.ctx.random_read_size
        end = min(self.size, offset + length)
        if (not random or piece >= self.block_size or offset >= end
                or all(self.block_key(i) in self.ctx.cache for i in self._blocks(offset, length))):
            return super().read(offset, length)
        first, last = offset // piece, (end - 1) // piece
        pieces = [self._piece(i, piece) for i in range(first, last + 1)]
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        skip = offset - first * piece
        return data[skip:skip + end - offset]

    def _piece(self, index: int, piece: int) -> bytes:
        start = index * piece
        end = min(start + piece, self.size)
        return self.ctx.cache.get_or_load((self.key, self.etag, "piece", piece, index),
                                          lambda: self._fetch(start, end), end - start)

    @override
    def _load_block(self, index: int) -> bytes:
        return self._fetch(*self.block_span(index))

    def _fetch(self, start: int, end: int) -> bytes:
        data = self.ctx.backend.read_range(self.key, start, end, etag=self.etag)
        if len(data) != end - start:
            raise self._short_error(
                f"{self.key}: body ends at byte {start + len(data)}, expected {self.size} bytes", self.key
            )
        return data if isinstance(data, bytes) else bytes(data)


class CodecStream(BlockStream):
    """A body in a numcodecs framing: decoded whole on the first miss, every block cached.

    Parameters
    ----------
    ctx : ReadContext
    key, etag : str
    body_size : int
        Stored body size.
    nbytes : int
        Decoded size.
    codec : cottoncandy.codecs.Codec
    """

    def __init__(self, ctx: ReadContext, key: str, etag: str, body_size: int, nbytes: int, codec: Codec) -> None:
        super().__init__(ctx, key, etag, nbytes, ctx.block_size)
        self.body_size = body_size
        self.codec = codec
        self._box = ctx.locks.get(key, etag)

    @override
    def block_key(self, index: int) -> Hashable:  # noqa: D102
        return (self.key, self.etag, "decoded", index)

    @override
    def _schedule(self, indices: list[int]) -> None:
        # one decode yields every block: load the first, the rest follow
        self.ctx.submit(self.block, indices[0])

    @override
    def _load_block(self, index: int) -> bytes:
        with self._box.lock:
            held = self.ctx.cache.peek(self.block_key(index))
            if held is not None:  # another thread decoded the body meanwhile
                return held
            body = bytearray(self.body_size)
            self.ctx.backend.read_into(self.key, memoryview(body), 0, etag=self.etag)
            data = self.codec.decode(body, self.size, self.key)
            del body
            view = memoryview(data).cast("B")
            # least useful first, so the blocks right after `index` survive longest
            order = list(range(index)) + list(range(self.nblocks - 1, index, -1))
            for other in order:
                start, end = self.block_span(other)
                self.ctx.cache.put(self.block_key(other), bytes(view[start:end]))
            start, end = self.block_span(index)
            return bytes(view[start:end])
