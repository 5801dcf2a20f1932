"""gzip bodies decoded into the block cache, with resumable zlib checkpoints.

A gzip member can only be decoded from its start. To serve a random read
without restarting from byte 0, decoding keeps **checkpoints**: at block
boundaries of the output it snapshots the decoder (``decompressobj.copy()``,
about 37 KiB) together with the input offset it has consumed. A block is
decoded from the nearest checkpoint at or before it, fetching the compressed
input with ranged GETs from the checkpoint's input offset. After decoding a
block the live decoder (the *cursor*) is kept, so a sequential reader
continues without refetching or re-decoding anything; blocks decoded on the
way to the wanted one are cached too. While a cursor streams (it was resumed
to decode the next block), the next range of compressed input is fetched in
the background as soon as the previous one arrives, so fetching overlaps
decoding instead of adding to it; a random read (from a checkpoint) fetches
only what it decodes.

Checkpoints live per ``(key, etag)`` in a :class:`GzipIndex` bounded in the
bytes its snapshots take (:data:`SNAPSHOT_BYTES` each; the mount carves this
budget out of its block cache's, see :class:`~cottoncandy.fuse.reader.ReadPath`):
over it, the object holding the most keeps every other checkpoint, its
spacing doubling. It is also bounded in the number of objects (least recently
used forgotten first), and only the :data:`MAX_CURSORS` most recently used
objects keep a live decoder. Snapshots cannot be pickled; the index is in
memory only.

Decoding uses ``zlib-ng`` when installed (:func:`cottoncandy.gzipcodec.inflate_library`
with ``copyable=True``: 1.4x the standard library, with the same ``copy()``),
else the standard library's ``zlib``.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Hashable

from ..errors import ArrayFormatError
from ..gzipcodec import GZIP_WBITS, decode_errors, inflate_library
from .blocks import BlockStream, ReadContext

__all__ = ["GzipIndex", "GzipStats", "GzipStream", "SNAPSHOT_BYTES"]

log = logging.getLogger(__name__)

#: Memory of one checkpoint: a decoder snapshot (measured with tracemalloc: zlib-ng
#: 41.3 KiB, zlib 39.2 KiB) and its list entries.
SNAPSHOT_BYTES = 42 << 10
#: Objects that keep a live decoder (about a snapshot plus up to two fetched ranges each).
MAX_CURSORS = 8
_MIN_FETCH = 64 << 10
_MAX_FETCH = 8 << 20


@dataclass(frozen=True)
class GzipStats:
    """Counters of gzip decoding (for tests and benchmarks).

    Attributes
    ----------
    bytes_decompressed : int
        Output bytes produced by zlib.
    bytes_fetched : int
        Compressed bytes fetched.
    restarts : int
        Decodes started from byte 0.
    checkpoint_resumes : int
        Decodes resumed from a checkpoint.
    cursor_resumes : int
        Decodes continued from the live decoder of a previous one.
    checkpoints : int
        Checkpoints held now.
    """

    bytes_decompressed: int
    bytes_fetched: int
    restarts: int
    checkpoint_resumes: int
    cursor_resumes: int
    checkpoints: int


class _Cursor:
    """A decoder in flight: ``out_off`` bytes produced; input fed up to ``in_pos``, ``pending`` not yet consumed.

    ``streaming`` is set once the cursor is resumed for a following block;
    ``ahead`` is then the background fetch of the input from ``in_pos``.
    """

    __slots__ = ("dobj", "in_pos", "pending", "out_off", "streaming", "ahead")

    def __init__(self, dobj, in_pos: int, out_off: int):
        self.dobj = dobj
        self.in_pos = in_pos
        self.pending = b""
        self.out_off = out_off
        self.streaming = False
        self.ahead: Future | None = None

    @property
    def consumed(self) -> int:
        return self.in_pos - len(self.pending)


class _ObjectState:
    """Checkpoints and the live cursor of one ``(key, etag)``; ``lock`` serialises its decodes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.offsets: list[int] = []  # output offsets, ascending
        self.snapshots: list[tuple[int, object]] = []  # (input offset, decompressobj), same order
        self.stride = 1  # keep checkpoints at multiples of stride * interval
        self.cursor: _Cursor | None = None

    def best(self, out_off: int) -> int:
        """Index of the last checkpoint at or before ``out_off``, or -1."""
        return bisect.bisect_right(self.offsets, out_off) - 1


class GzipIndex:
    """Checkpoints of every gzip object of a mount, bounded in number.

    Parameters
    ----------
    interval : int
        Output bytes between checkpoints (a multiple of the gzip block size).
    max_bytes : int
        Bound on the memory of the snapshots held for all objects together
        (:data:`SNAPSHOT_BYTES` each); less than one snapshot: none are kept.
    max_checkpoints : int, optional
        A tighter bound on their number.
    max_objects : int
        Bound on the objects whose checkpoints are kept.
    """

    def __init__(self, interval: int, max_bytes: int = 64 << 20, max_checkpoints: int | None = None,
                 max_objects: int = 256):
        by_bytes = max(0, max_bytes) // SNAPSHOT_BYTES
        if interval <= 0 or (max_checkpoints is not None and max_checkpoints < 0) or max_objects < 1:
            raise ValueError("checkpoint interval and max_objects must be positive, max_checkpoints >= 0")
        self.interval = interval
        self.max_checkpoints = by_bytes if max_checkpoints is None else min(by_bytes, max_checkpoints)
        self.max_objects = max_objects
        self._states: OrderedDict[tuple[str, str], _ObjectState] = OrderedDict()
        self._lock = threading.Lock()
        self._counts = {"bytes_decompressed": 0, "bytes_fetched": 0, "restarts": 0,
                        "checkpoint_resumes": 0, "cursor_resumes": 0}

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counts[name] += n

    def stats(self) -> GzipStats:
        """Snapshot of the counters."""
        with self._lock:
            held = sum(len(s.offsets) for s in self._states.values())
            return GzipStats(checkpoints=held, **self._counts)

    def state(self, key: str, etag: str) -> _ObjectState:
        """The state of ``(key, etag)``, created if needed, marked recently used.

        The object used :data:`MAX_CURSORS` objects ago loses its live decoder
        (if no decode holds it now; a later one will, then).
        """
        with self._lock:
            st = self._states.get((key, etag))
            if st is None:
                st = self._states[(key, etag)] = _ObjectState()
            else:
                self._states.move_to_end((key, etag))
            if len(self._states) > MAX_CURSORS:
                for old in list(self._states.values())[:-MAX_CURSORS]:
                    if old.cursor is not None and old.lock.acquire(blocking=False):
                        old.cursor = None
                        old.lock.release()
            return st

    def wants(self, st: _ObjectState, out_off: int) -> bool:
        """Whether a checkpoint belongs at output offset ``out_off``."""
        if not self.max_checkpoints or out_off % (self.interval * st.stride):
            return False
        i = st.best(out_off)
        return i < 0 or st.offsets[i] != out_off

    def add(self, st: _ObjectState, out_off: int, in_off: int, dobj) -> None:
        """Store a snapshot (the caller holds ``st.lock``), enforcing the bounds.

        Over the bound, the object holding the most checkpoints is thinned
        (every other one dropped, its spacing doubled): random reads get a bit
        slower everywhere rather than much slower for whole objects. Objects
        beyond ``max_objects`` are forgotten least recently used first.
        """
        i = st.best(out_off) + 1
        st.offsets.insert(i, out_off)
        st.snapshots.insert(i, (in_off, dobj))
        with self._lock:
            while len(self._states) > self.max_objects:
                oldest = next(iter(self._states))
                if self._states[oldest] is st:
                    self._states.move_to_end(oldest)
                    continue
                del self._states[oldest]
            total = sum(len(s.offsets) for s in self._states.values())
            if st not in self._states.values():
                total += len(st.offsets)
            while total > self.max_checkpoints:
                victim, locked = self._fattest(st)
                try:
                    total -= _thin(victim, self.interval)
                finally:
                    if locked:
                        victim.lock.release()

    def _fattest(self, st: _ObjectState) -> tuple[_ObjectState, bool]:
        """The state with the most checkpoints that may be thinned now, and whether we locked it.

        The caller holds ``st.lock`` and ``self._lock``. Another object's state
        is taken only if its lock is free right now (never wait for it: its
        holder may be waiting for ``self._lock``).
        """
        for cand in sorted([*self._states.values(), st], key=lambda s: len(s.offsets), reverse=True):
            if cand is st:
                return st, False
            if cand.lock.acquire(blocking=False):
                return cand, True
        return st, False


def _thin(st: _ObjectState, interval: int) -> int:
    """Double the checkpoint spacing of ``st``; return how many checkpoints were dropped."""
    before = len(st.offsets)
    st.stride *= 2
    step = interval * st.stride
    keep = [j for j, off in enumerate(st.offsets) if off % step == 0]
    st.offsets = [st.offsets[j] for j in keep]
    st.snapshots = [st.snapshots[j] for j in keep]
    return before - len(keep)


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

    def block_key(self, index: int) -> Hashable:  # noqa: D102
        return (self.key, self.etag, "decoded", index)

    def _schedule(self, indices: list[int]) -> None:
        # one task decodes the run in order: each block continues from the previous one's cursor
        self.ctx.submit(self._load_run, indices)

    def _load_run(self, indices: list[int]) -> None:
        for index in indices:
            self.block(index)

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

    def _decode_span(self, st: _ObjectState, offset: int, end: int) -> bytes:
        """Decode ``[offset, end)`` from the checkpoint before it, adding checkpoints on the way.

        The live cursor of a sequential reader is left alone.
        """
        i = st.best(offset)
        if i >= 0 and st.offsets[i] > 0:
            in_off, dobj = st.snapshots[i]
            self.index.count("checkpoint_resumes")
            cur = _Cursor(dobj.copy(), in_off, st.offsets[i])
        else:
            self.index.count("restarts")
            cur = _Cursor(self._library.decompressobj(GZIP_WBITS), 0, 0)
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

    def _load_block(self, index: int) -> bytes:
        st = self.index.state(self.key, self.etag)
        with st.lock:
            held = self.ctx.cache.peek(self.block_key(index))
            if held is not None:  # decoded on the way by another load
                return held
            return self._decode(st, index)

    def _start(self, st: _ObjectState, target: int) -> _Cursor:
        i = st.best(target)
        ck_off = st.offsets[i] if i >= 0 else 0
        cur = st.cursor
        if cur is not None and ck_off <= cur.out_off <= target:
            st.cursor = None
            self.index.count("cursor_resumes")
            cur.streaming = True
            return cur
        if i >= 0 and ck_off > 0:
            in_off, dobj = st.snapshots[i]
            self.index.count("checkpoint_resumes")
            return _Cursor(dobj.copy(), in_off, ck_off)
        self.index.count("restarts")
        return _Cursor(self._library.decompressobj(GZIP_WBITS), 0, 0)

    def _decode(self, st: _ObjectState, index: int) -> bytes:
        cur = self._start(st, index * self.block_size)
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
            # a block's worth of input ahead: decoding this range overlaps fetching the next
            n_ahead = min(int(self.block_size * ratio * 1.05) + _MIN_FETCH, _MAX_FETCH)
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
