"""The mount's read path: open a file descriptor, serve ``read(offset, length)`` from the block cache.

One :class:`ReadPath` per mount owns the block cache, the gzip checkpoint
index and a thread pool for background loads. :meth:`ReadPath.open` turns a
descriptor from :mod:`cottoncandy.fuse.sources` into an :class:`OpenFile`;
:meth:`ReadPath.size` tells a file's size, building it when only that tells
(a sparse matrix's ``.npz``, see :mod:`cottoncandy.fuse.sparsefile`).
Reads are thread-safe and may come from many FUSE threads at once.

Read-ahead: an open file that is read sequentially gets the next blocks
loaded in the background, the window doubling from 2 up to
``max_readahead_blocks`` blocks as the reader enters new blocks. A read that
does not continue the previous one (a seek) resets the window: random readers
fetch only what they touch, and from uncompressed bodies only
``random_read_size`` pieces rather than whole blocks. "Continues" allows two blocks of disorder,
since the kernel sends parallel read-ahead requests that arrive out of order.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Union

from ..backends.base import StorageBackend
from ..errors import ArrayFormatError, StorageError
from ..format.codecs import get_codec
from ..format.compression import normalize_compression
from ..format.metadata import ArrayMeta
from .blocks import BlockStream, CodecStream, EmptyStream, ObjectLocks, ReadContext, StoredStream
from .cache import BlockCache
from .daskstream import DaskStream
from .gzindex import GzipIndex
from .gzstream import GzipStream
from .sources import (DaskArrayFile, InMemoryFile, ObjectBody, RawArrayFile, Source, SparseMatrixFile, array_header,
                      file_size)
from .sparsefile import SparseFiles

__all__ = ["ReadPath", "OpenFile", "file_size"]

log = logging.getLogger(__name__)

Stream = Union[BlockStream, DaskStream]


class OpenFile:
    """One open file: a header held in memory followed by a (possibly empty) stream.

    Attributes
    ----------
    size : int
        File size in bytes.
    name : str
        Key (or name) of what is read, for logs.
    """

    def __init__(self, name: str, header: bytes, stream: Stream | None, *,
                 readahead_blocks: int = 8, slack: int | None = None):
        self.name = name
        self._header = header
        self._stream = stream
        self.size = len(header) + (stream.size if stream is not None else 0)
        self._max_window = max(0, readahead_blocks)
        self._block = stream.block_size if stream is not None else 1
        # The kernel keeps up to its read-ahead window (4 MiB as the CLI sets it) of requests in
        # flight and they reach us in any order: a read that far behind or ahead of the previous one
        # is still sequential. With a 1 MiB slack np.load of a cold file reset the window dozens of
        # times per 256 MiB and lost most of its read-ahead.
        self._slack = slack if slack is not None else 2 * self._block
        self._lock = threading.Lock()
        self._pos: int | None = None  # end of the previous read
        self._streak = 0  # consecutive sequential reads
        self._window = 0  # read-ahead window, in blocks
        self._last_block = -1  # block the reader was in when the window last changed
        self._ahead = 0  # stream offset up to which read-ahead was requested

    def _readahead(self, offset: int, end: int) -> tuple[bool, tuple[int, int] | None]:
        """Update the access pattern; return whether the read is sequential and a stream range to prefetch."""
        with self._lock:
            pos = self._pos
            if pos is None:
                sequential = offset <= self._slack
                self._streak = 1 if sequential else 0
            else:
                sequential = pos - self._slack <= offset <= pos + self._slack
                self._streak = self._streak + 1 if sequential else 0
            self._pos = max(pos, end) if (sequential and pos is not None) else end
            if not sequential:
                self._window, self._ahead, self._last_block = 0, 0, -1
                return False, None
            if self._streak < 2 or self._max_window == 0 or self._stream is None:
                return True, None
            data_end = max(0, end - len(self._header))
            block = data_end // self._block
            if self._window == 0:
                self._window = min(2, self._max_window)
                self._last_block = block
            elif block > self._last_block:
                self._window = min(self._window * 2, self._max_window)
                self._last_block = block
            target = min(self._stream.size, (block + 1 + self._window) * self._block)
            start = max(self._ahead, data_end)
            if target <= start:
                return True, None
            self._ahead = target
            return True, (start, target - start)

    def read(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes from ``offset`` (fewer only at the end of the file).

        Raises
        ------
        ArrayFormatError
            The body is corrupt, truncated or shorter than its shape.
        ObjectNotFoundError
            The version this file was opened on is gone.
        CottonCandyError
            Any other storage failure.
        """
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be non-negative")
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        sequential, ahead = self._readahead(offset, end)
        hlen = len(self._header)
        if end <= hlen:
            return self._header[offset:end]
        stream = self._stream
        if stream is None:  # released meanwhile
            return self._header[offset:hlen]
        if ahead is not None:
            stream.prefetch_range(*ahead)
        data = stream.read(max(offset - hlen, 0), end - max(offset, hlen), random=not sequential)
        if offset >= hlen:
            return data
        return self._header[offset:] + data

    def release(self) -> None:
        """Forget the stream (cached blocks stay for other readers)."""
        self._stream = None
        self.size = len(self._header)


class ReadPath:
    """The read side of one mount.

    Parameters
    ----------
    backend : StorageBackend
    cache_bytes : int
        Memory budget of the block cache shared by all open files and of the
        gzip checkpoint index: the index gets ``gzip_index_bytes`` of it, the
        blocks the rest.
    block_size : int
        Block size for stored bodies, numcodecs bodies and dask files.
    max_workers : int
        Threads for background (read-ahead, parallel) block loads.
    gzip_block_size : int, optional
        Decoded bytes per gzip block; default ``min(block_size, 1 MiB)``. Small
        blocks keep random reads into gzip bodies cheap: a read decodes its
        whole block from the checkpoint before it (1 MiB: about 11 ms on a
        loaded 2-core machine, 2 MiB: 18 ms; sequential speed unchanged).
    checkpoint_interval : int, optional
        Decoded bytes between gzip checkpoints (multiple of ``gzip_block_size``;
        default: every gzip block).
    gzip_index_bytes : int, optional
        Part of ``cache_bytes`` for gzip checkpoints (:data:`~cottoncandy.fuse.gzindex.SNAPSHOT_BYTES`
        each); default a quarter, at most 64 MiB (1,560 checkpoints: 1.5 GB of
        gzip data at one per MiB; beyond, their spacing doubles): when the
        blocks cannot hold a gzip file, random reads decode from checkpoints,
        and the closer they are the less each read decodes. Less than one
        snapshot: no checkpoints (a random read decodes from byte 0).
    max_checkpoints : int, optional
        A tighter bound on the number of gzip checkpoints.
    max_readahead_blocks : int
        Largest read-ahead window, in blocks (0 disables read-ahead).
    random_read_size : int
        Bytes a random (seeking) reader's cache miss fetches from an
        uncompressed body, instead of a whole block.
    """

    def __init__(self, backend: StorageBackend, cache_bytes: int = 1 << 30, block_size: int = 8 << 20,
                 max_workers: int = 8, *, gzip_block_size: int | None = None,
                 checkpoint_interval: int | None = None, gzip_index_bytes: int | None = None,
                 max_checkpoints: int | None = None, max_readahead_blocks: int = 8,
                 random_read_size: int = 512 << 10):
        if block_size <= 0 or max_workers <= 0:
            raise ValueError("block_size and max_workers must be positive")
        if gzip_index_bytes is None:
            gzip_index_bytes = min(cache_bytes // 4, 64 << 20)
        if not 0 <= gzip_index_bytes < cache_bytes:
            raise ValueError(f"gzip_index_bytes must be at least 0 and less than the {cache_bytes} "
                             f"bytes of cache, not {gzip_index_bytes}")
        self.backend = backend
        self.cache = BlockCache(cache_bytes - gzip_index_bytes)
        self.block_size = block_size
        self.gzip_block_size = gzip_block_size or min(block_size, 1 << 20)
        self.gzip_index = GzipIndex(checkpoint_interval or self.gzip_block_size, gzip_index_bytes,
                                    max_checkpoints)
        self.max_readahead_blocks = max_readahead_blocks
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="cc-read")
        self._io_executor = ThreadPoolExecutor(max_workers=max(2, max_workers // 2), thread_name_prefix="cc-fetch")
        self.ctx = ReadContext(backend=backend, cache=self.cache, executor=self._executor,
                               block_size=block_size, locks=ObjectLocks(), io_executor=self._io_executor,
                               random_read_size=random_read_size)
        self.sparse = SparseFiles(self.cache, self._read_whole)

    # -- streams ---------------------------------------------------------------
    def array_stream(self, key: str, etag: str, body_size: int, meta: ArrayMeta) -> BlockStream:
        """The decoded-data stream of one raw array version.

        Raises
        ------
        ArrayFormatError
            Unknown codec, or an uncompressed body whose size is not the shape's.
        """
        if meta.nbytes == 0:
            return EmptyStream(self.ctx, key, etag)
        compression = normalize_compression(meta.compression)
        if compression is None:
            if body_size != meta.nbytes:
                raise ArrayFormatError(
                    f"{key}: uncompressed body has {body_size} bytes, shape {meta.shape} of "
                    f"{meta.dtype.str} needs {meta.nbytes}", key)
            return StoredStream(self.ctx, key, etag, body_size, short_error=ArrayFormatError)
        if compression.lower() == "gzip":
            return GzipStream(self.ctx, self.gzip_index, key, etag, body_size, meta.nbytes,
                              self.gzip_block_size)
        codec = get_codec(compression, key)  # UnknownCodecError is an ArrayFormatError
        return CodecStream(self.ctx, key, etag, body_size, meta.nbytes, codec)

    # -- public ----------------------------------------------------------------
    def open(self, source: Source) -> OpenFile:
        """Open a file descriptor built by the tree.

        Parameters
        ----------
        source : ObjectBody, RawArrayFile, DaskArrayFile, SparseMatrixFile or InMemoryFile

        Returns
        -------
        OpenFile

        Raises
        ------
        ArrayFormatError
            The array cannot be served (unknown codec, body size contradicting
            the shape, dask parts or sparse attributes missing or inconsistent).
        """
        ra = self.max_readahead_blocks
        slack = 2 * self.block_size  # also for gzip's smaller blocks: the kernel's disorder is the same
        if isinstance(source, ObjectBody):
            stream: BlockStream = StoredStream(self.ctx, source.key, source.etag, source.size,
                                               short_error=StorageError)
            return OpenFile(source.key, b"", stream, readahead_blocks=ra, slack=slack)
        if isinstance(source, RawArrayFile):
            stream = self.array_stream(source.key, source.etag, source.body_size, source.meta)
            return OpenFile(source.key, array_header(source), stream, readahead_blocks=ra, slack=slack)
        if isinstance(source, DaskArrayFile):
            dstream = DaskStream(self.ctx, source.manifest, dict(source.parts), self.array_stream)
            return OpenFile(source.manifest.key, array_header(source), dstream, readahead_blocks=ra, slack=slack)
        if isinstance(source, SparseMatrixFile):
            source = InMemoryFile(source.manifest.key, self.sparse.data(source))
        if isinstance(source, InMemoryFile):
            return OpenFile(source.name, bytes(source.data), None, readahead_blocks=0)
        raise TypeError(f"not a file source: {source!r}")

    def size(self, source: Source) -> int:
        """Exact size of the file ``source`` stands for.

        Known from the descriptor for every file but a sparse matrix's ``.npz``:
        that one is built (and kept in the block cache) on the first call for
        its version, so a first ``stat`` of it reads its attribute arrays.

        Raises
        ------
        ArrayFormatError, CottonCandyError
            When building fails (see :meth:`open`).
        """
        if isinstance(source, SparseMatrixFile):
            return self.sparse.size(source)
        return file_size(source)

    def _read_whole(self, source: RawArrayFile) -> bytes:
        """All bytes of an array file (the attribute arrays of a sparse matrix)."""
        handle = self.open(source)
        try:
            return handle.read(0, handle.size)
        finally:
            handle.release()

    def stats(self) -> dict[str, object]:
        """Counters of the block cache and of gzip decoding."""
        return {"cache": self.cache.stats(), "gzip": self.gzip_index.stats()}

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no background (read-ahead) load is queued or running.

        Returns
        -------
        bool
            False if ``timeout`` seconds passed first.
        """
        return self.ctx.wait_idle(timeout)

    def close(self) -> None:
        """Stop background loads and release the thread pools."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._io_executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ReadPath":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
