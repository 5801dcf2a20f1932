"""gzip bodies decoded into the block cache, with resumable zlib checkpoints.

A gzip member can only be decoded from its start. To serve a random read
without restarting from byte 0, decoding keeps **checkpoints**: at block
boundaries of the output it snapshots the decoder (``decompressobj.copy()``,
about 41 KiB) together with the input offset it has consumed. A block is
decoded from the nearest checkpoint at or before it, fetching the compressed
input with ranged GETs from the checkpoint's input offset. After decoding a
block the live decoder (the *cursor*) is kept, so a sequential reader
continues without refetching or re-decoding anything; blocks decoded on the
way to the wanted one are cached too. While a cursor streams (it was resumed
to decode the next block), the next range of compressed input is fetched in
the background as soon as the previous one arrives, so fetching overlaps
decoding instead of adding to it; a random read (from a checkpoint) fetches
only what it decodes. In a body the cache cannot hold, a random reader's miss
decodes only from the checkpoint before it to the end of the read, not whole
blocks that would not stay cached.

Checkpoints live in a :class:`~cottoncandy.fuse.gzindex.GzipIndex`, bounded
in memory within the mount's cache budget.

Decoding uses ``zlib-ng`` when installed (:func:`cottoncandy.gzipcodec.inflate_library`
with ``copyable=True``: 1.4x the standard library, with the same ``copy()``),
else the standard library's ``zlib``.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any, Hashable

from typing_extensions import override

from ..errors import ArrayFormatError
from ..format.gzipcodec import GZIP_WBITS, decode_errors, inflate_library
from .blocks import BlockStream, ReadContext
from .gzindex import GzipIndex, ObjectState

__all__ = ["GzipStream"]

log = logging.getLogger(__name__)

_MIN_FETCH = 64 << 10
_MAX_FETCH = 8 << 20
# Blocks of input a streaming cursor fetches at a time. Each GET costs 1-3 ms of Python
# CPU that competes with decoding for the GIL and the cores; with one block per GET a
# sequential pass made 114 GETs per 100 MB.
_STREAM_BLOCKS = 4


class _Cursor:
    """A decoder in flight: ``out_off`` bytes produced; input fed up to ``in_pos``, ``pending`` not yet consumed.

    ``streaming`` is set once the cursor is resumed for a following block;
    ``ahead`` is then the background fetch of the input from ``in_pos``.
    """

    __slots__ = ("dobj", "in_pos", "pending", "out_off", "streaming", "ahead")

    def __init__(self, dobj: Any, in_pos: int, out_off: int):
        self.dobj = dobj
        self.in_pos = in_pos
        self.pending = b""
        self.out_off = out_off
        self.streaming = False
        self.ahead: Future[bytes] | None = None

    @property
    def consumed(self) -> int:
        return self.in_pos - len(self.pending)


class GzipStream(BlockStream):
    """The decoded bytes of a gzip body, decoded block by block.

    Parameters
    ----------
    ctx : ReadContext
    index : GzipIndex
    key, etag : str
    body_size : int
        Compressed size.
    nbytes : int
        Decoded size the metadata promises.
    block_size : int
        Decoded bytes per cache block (``index.interval`` must be a multiple).
    """

    def __init__(self, ctx: ReadContext, index: GzipIndex, key: str, etag: str,
                 body_size: int, nbytes: int, block_size: int):
        super().__init__(ctx, key, etag, nbytes, block_size)
        if index.interval % block_size:
            raise ValueError("the checkpoint interval must be a multiple of the gzip block size")
        self.index = index
        self.body_size = body_size
        self._library = inflate_library(copyable=True)
        self._decode_errors = decode_errors()  # snapshots of another stream may come from another library
        log.debug("%s: gzip body decoded with %s", key, self._library.name)

    @override
    def block_key(self, index: int) -> Hashable:  # noqa: D102
        return (self.key, self.etag, "decoded", index)

    @override
    def _schedule(self, indices: list[int]) -> None:
        # one task decodes the run in order: each block continues from the previous one's cursor
        self.ctx.submit(self._load_run, indices)

    def _load_run(self, indices: list[int]) -> None:
        for index in indices:
            self.block(index)

    @override
    def read(self, offset: int, length: int, random: bool = False) -> bytes:
        """As :meth:`BlockStream.read`; a random reader's miss in a body bigger than the cache decodes only its span.

        Whole blocks are worth decoding when they stay cached for the next
        reads; when the decoded body cannot fit in the cache they would not,
        and decoding from the checkpoint before ``offset`` just to the end of
        the read saves about a block of work per read.
        """
        end = min(self.size, offset + length)
        if (not random or offset >= end or self.size <= self.ctx.cache.capacity
                or all(self.block_key(i) in self.ctx.cache for i in self._blocks(offset, length))):
            return super().read(offset, length)
        st = self.index.state(self.key, self.etag)
        with st.lock:
            return self._decode_span(st, offset, end)

    def _decode_span(self, st: ObjectState, offset: int, end: int) -> bytes:
        """Decode ``[offset, end)`` from the checkpoint before it, adding checkpoints on the way.

        The live cursor of a sequential reader is left alone.
        """
        cur = self._from_checkpoint(st, offset)
        if cur.in_pos < self.body_size:
            self._fetch(cur, end - cur.out_off)  # one GET for the whole span's input
        while cur.out_off < offset:  # decode and drop what comes before, block boundary by block boundary
            stop = min((cur.out_off // self.block_size + 1) * self.block_size, offset)
            self._produce(cur, stop - cur.out_off)
            cur.out_off = stop
            if stop % self.block_size == 0 and self.index.wants(st, stop):
                self.index.add(st, stop, cur.consumed, cur.dobj.copy())
        data = self._produce(cur, end - offset)
        if end == self.size:
            self._finish(cur)
        return data

    # -- decoding ------------------------------------------------------------
    def _error(self, what: str) -> ArrayFormatError:
        return ArrayFormatError(f"{self.key}: gzip body {what}", self.key)

    @override
    def _load_block(self, index: int) -> bytes:
        st = self.index.state(self.key, self.etag)
        with st.lock:
            held = self.ctx.cache.peek(self.block_key(index))
            if held is not None:  # decoded on the way by another load
                return held
            return self._decode(st, index)

    def _start(self, st: ObjectState, target: int) -> _Cursor:
        """The live cursor if it is at or before ``target`` and no checkpoint is nearer, else :meth:`_from_checkpoint`."""
        i = st.best(target)
        ck_off = st.offsets[i] if i >= 0 else 0
        cur: _Cursor | None = st.cursor
        if cur is not None and ck_off <= cur.out_off <= target:
            st.cursor = None
            self.index.count("cursor_resumes")
            cur.streaming = True
            return cur
        return self._from_checkpoint(st, target)

    def _from_checkpoint(self, st: ObjectState, target: int) -> _Cursor:
        """A decoder at the last checkpoint at or before ``target`` (a new one at byte 0 if none)."""
        i = st.best(target)
        if i >= 0 and st.offsets[i] > 0:
            in_off, dobj = st.snapshots[i]
            self.index.count("checkpoint_resumes")
            return _Cursor(dobj.copy(), in_off, st.offsets[i])
        self.index.count("restarts")
        return _Cursor(self._library.decompressobj(GZIP_WBITS), 0, 0)

    def _decode(self, st: ObjectState, index: int) -> bytes:
        cur = self._start(st, index * self.block_size)
        if not cur.streaming and cur.in_pos < self.body_size:  # one GET for the input of the blocks up to the wanted one
            self._fetch(cur, min((index + 1) * self.block_size, self.size) - cur.out_off)
        while True:
            block = cur.out_off // self.block_size
            end = min(cur.out_off + self.block_size, self.size)
            data = self._produce(cur, end - cur.out_off)
            cur.out_off = end
            if end == self.size:
                self._finish(cur)
            elif self.index.wants(st, end):
                self.index.add(st, end, cur.consumed, cur.dobj.copy())
            if block == index:
                st.cursor = cur if end < self.size else None
                return data
            self.ctx.cache.put(self.block_key(block), data)

    def _fetch(self, cur: _Cursor, want_out: int) -> None:
        ratio = self.body_size / self.size if self.size else 1.0
        n = min(max(int(want_out * ratio * 1.05) + _MIN_FETCH, _MIN_FETCH), _MAX_FETCH)
        data = None
        ahead, cur.ahead = cur.ahead, None
        if ahead is not None:
            try:
                data = ahead.result()
            except Exception as exc:  # noqa: BLE001 - fetched again below, which reports a lasting failure
                log.debug("%s: background fetch at %d failed (%s); fetching again", self.key, cur.in_pos, exc)
        if not data:
            data = self._fetch_range(cur.in_pos, min(cur.in_pos + n, self.body_size))
        if not data:
            raise self._error(f"is truncated: no bytes at offset {cur.in_pos} of {self.body_size}")
        cur.in_pos += len(data)
        cur.pending = data
        if cur.streaming and cur.in_pos < self.body_size:
            # the next range downloads while this one decodes
            n_ahead = min(int(_STREAM_BLOCKS * self.block_size * ratio * 1.05) + _MIN_FETCH, _MAX_FETCH)
            cur.ahead = self.ctx.submit_io(self._fetch_range, cur.in_pos, min(cur.in_pos + n_ahead, self.body_size))

    def _fetch_range(self, start: int, end: int) -> bytes:
        data = self.ctx.backend.read_range(self.key, start, end, etag=self.etag)
        self.index.count("bytes_fetched", len(data))
        return data

    def _step(self, cur: _Cursor, max_out: int) -> tuple[bytes, bool]:
        """Feed pending input (fetching more when empty); return (output, made_progress)."""
        if not cur.pending and cur.in_pos < self.body_size:
            self._fetch(cur, max_out)
        fed = cur.pending
        try:
            out = cur.dobj.decompress(fed, max_out)
        except self._decode_errors as exc:
            raise self._error(f"is corrupt near input offset {cur.consumed} ({exc})") from exc
        cur.pending = cur.dobj.unused_data if cur.dobj.eof else cur.dobj.unconsumed_tail
        return out, bool(out) or len(cur.pending) < len(fed)

    def _produce(self, cur: _Cursor, need: int) -> bytes:
        pieces = []
        got = 0
        while got < need:
            if cur.dobj.eof and not self._next_member(cur):
                raise self._error(f"decodes to {cur.out_off + got} bytes, shorter than the {self.size} of its shape")
            out, progress = self._step(cur, need - got)
            if out:
                pieces.append(out)
                got += len(out)
            elif not progress:
                raise self._error(f"is truncated at {cur.in_pos} of {self.body_size} bytes")
        self.index.count("bytes_decompressed", got)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _finish(self, cur: _Cursor) -> None:
        """After the last output byte: the member must end (CRC checked) without more output.

        What follows may only be further members that decode to nothing, or NUL
        padding: the rule of :class:`cottoncandy.gzipcodec.Inflater`, so that
        the mount and the Python API agree on which bodies are corrupt. The
        tail is normally empty, so this costs nothing for good bodies.
        """
        while True:
            self._end_member(cur)
            if not self._next_member(cur):
                return

    def _next_member(self, cur: _Cursor) -> bool:
        """After a member ended: skip NUL padding (fetching as needed) and start a decoder for what follows.

        Returns False at the end of the body. What follows need not be a gzip
        member: its decoder then reports it as corrupt.
        """
        while True:
            cur.pending = cur.pending.lstrip(b"\0")
            if cur.pending:
                cur.dobj = self._library.decompressobj(GZIP_WBITS)
                return True
            if cur.in_pos >= self.body_size:
                return False
            self._fetch(cur, 0)

    def _end_member(self, cur: _Cursor) -> None:
        """Decode until the current member ends; any output is too much."""
        while not cur.dobj.eof:
            out, progress = self._step(cur, 1)
            if out:
                raise self._error(f"decodes to more than the {self.size} bytes of its shape")
            if not progress:
                raise self._error(f"is truncated: its gzip trailer is missing ({self.body_size} bytes)")
