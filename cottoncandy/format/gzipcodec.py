"""gzip and zlib bodies: which inflate/deflate library, a streaming decoder, the encoder.

cottoncandy 0.4.0 stored every array under 2 GB as one gzip member (level 9),
so most data in existing buckets is gzip, and its inflate speed bounds how fast
it reads. Three zlib-compatible libraries are used, each where it was fastest
(all three have the ``zlib`` module's ``decompressobj`` / ``compressobj``
interface; ``isal`` and ``zlib-ng`` install from manylinux wheels):

* **decoding** (API downloads): ``isal`` (ISA-L's igzip), else ``zlib-ng``,
  else the standard library's ``zlib``;
* **decoding with snapshots** (the mount's gzip checkpoints need
  ``decompressobj().copy()``, which ``isal`` lacks): ``zlib-ng``, else ``zlib``;
* **encoding** (``compression='gzip'`` uploads): ``isal`` at level 1, else
  ``zlib`` at level 1.

Measured on this machine (2 shared cores, so noisy; medians of 5, all
candidates interleaved in one run) on a 128 MiB float32 cumulative sum of
noise, gzip-9 body 0.745 of its size, decoded in 1 MiB steps into a
preallocated array:

==========================  ==========  =====================================
library                     MB/s        notes
==========================  ==========  =====================================
zlib (stdlib)               257         1 MiB steps; 200 decoding whole
zlib-ng 1.1 (zlib-ng 2.3)   363         same with a ``copy()`` after every step
isal 1.9                    439         no ``copy()``
libdeflate (``deflate``)    370         whole body only (no streaming)
rapidgzip, 1 / 2 threads    410 / 718   whole body in memory; through a file
                                        object over ranged GETs 222 / 217
==========================  ==========  =====================================

End to end on a loopback rclone server, the same 0.4.0-written array read by
0.4.0's ``download_raw_array`` = 1.0x: whole body then stdlib 1.33x, ranged
GETs decoded as they arrive with zlib 1.52x, zlib-ng 1.68x, isal 2.20x,
rapidgzip with 2 threads 1.69x. rapidgzip decodes in parallel well only with
the body in memory, which a download must not hold next to the array (its
peak memory target is the array + 64 MiB); fed through a file object over
ranged GETs its reads pass through Python and its second thread competes with
the download for the second core. A ``zlib-ng`` snapshot costs 4 us and 41 KiB
(``zlib``: 17 us, 39 KiB).

Encoding 64 MiB of the same data, MB/s and size ratio: zlib level 9 (0.4.0) 18 and
0.756; zlib level 1 56 and 0.759; zlib-ng level 1 120 but 1.049 (bigger than
the data), level 2 74 and 0.784; libdeflate level 1 135 and 0.803; isal level
1 456-506 and 0.815 (levels 2 and 3 are slower for the same ratio). Any gzip
reader, 0.4.0's included, reads what isal writes.

Set the environment variable ``COTTONCANDY_GZIP=stdlib`` to use the standard
library everywhere (read at each call, so it applies to the next body decoded
or encoded); the standard library is also used when the fast libraries are not
installed.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import zlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..errors import ArrayFormatError

log = logging.getLogger(__name__)

#: Environment variable that forces the standard library (value ``stdlib``).
LIBRARY_ENV = "COTTONCANDY_GZIP"
#: ``wbits`` of a gzip member and of a zlib stream (32 KiB window both).
GZIP_WBITS = 31
ZLIB_WBITS = 15
#: Level of ``'gzip'`` uploads, whichever library encodes (readers do not care; see the module notes).
GZIP_LEVEL = 1

# input fed and output produced per decompress call: bounds the transient copies
# (measured: 256 KiB to 8 MiB steps decode at the same speed)
_IN_STEP = 1 << 20
_OUT_STEP = 1 << 20
_ENCODE_STEP = 8 << 20


@dataclass(frozen=True)
class Library:
    """A zlib-compatible module.

    Attributes
    ----------
    name : str
        ``'isal'``, ``'zlib-ng'`` or ``'zlib'``.
    module : module
        Has ``decompressobj``, ``compressobj`` and ``error`` like :mod:`zlib`.
    """

    name: str
    module: ModuleType

    @property
    def error(self) -> type[Exception]:
        """The exception the module raises for corrupt data."""
        return self.module.error

    def decompressobj(self, wbits: int):
        """A new decoder (``zlib.decompressobj`` semantics)."""
        return self.module.decompressobj(wbits)


_STDLIB = Library("zlib", zlib)
# (name, module path), fastest first
_DECODERS = (("isal", "isal.isal_zlib"), ("zlib-ng", "zlib_ng.zlib_ng"))
_COPYABLE_DECODERS = (("zlib-ng", "zlib_ng.zlib_ng"),)
_ENCODERS = (("isal", "isal.isal_zlib"),)


@functools.lru_cache(maxsize=None)
def _import(path: str) -> ModuleType | None:
    try:
        return importlib.import_module(path)
    except ImportError:
        log.debug("%s is not installed; gzip falls back to a slower library", path)
        return None


def _forced_stdlib() -> bool:
    return os.environ.get(LIBRARY_ENV, "").strip().lower() in ("stdlib", "zlib")


def _first(candidates: tuple[tuple[str, str], ...]) -> Library:
    if not _forced_stdlib():
        for name, path in candidates:
            module = _import(path)
            if module is not None:
                return Library(name, module)
    return _STDLIB


def inflate_library(copyable: bool = False) -> Library:
    """The library to decode with.

    Parameters
    ----------
    copyable : bool
        The decoder must support ``copy()`` (snapshots).

    Returns
    -------
    Library
    """
    return _first(_COPYABLE_DECODERS if copyable else _DECODERS)


def deflate_library() -> Library:
    """The library to encode ``'gzip'`` uploads with."""
    return _first(_ENCODERS)


def decode_errors() -> tuple[type[Exception], ...]:
    """Exception classes any decoder in use may raise for corrupt data."""
    errors: list[type[Exception]] = [zlib.error]
    for _, path in _DECODERS:
        module = _import(path)
        if module is not None:
            errors.append(module.error)
    return tuple(errors)


def gzip_encode(data: bytes | bytearray | memoryview, library: Library | None = None) -> bytearray:
    """Compress ``data`` into one gzip member.

    Parameters
    ----------
    data : bytes-like
        C-contiguous.
    library : Library, optional
        Default :func:`deflate_library`.

    Returns
    -------
    bytearray
        Grown in place: no second copy of the compressed body is made.
    """
    library = library or deflate_library()
    view = memoryview(data).cast("B")
    comp = library.module.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    body = bytearray()
    for start in range(0, len(view), _ENCODE_STEP):
        body += comp.compress(view[start:start + _ENCODE_STEP])
    body += comp.flush()
    return body


class Inflater:
    """Decode a gzip or zlib stream fed piece by piece into a buffer it must fill exactly.

    With ``members``, concatenated gzip members and NUL padding after a member
    are accepted (as :mod:`gzip` reads them); any other trailing byte is an
    error. Errors are :class:`ArrayFormatError` naming ``key`` and ``name``.

    Parameters
    ----------
    out : memoryview
        Writable bytes, the decoded size the metadata promises.
    wbits : int
        :data:`GZIP_WBITS` or :data:`ZLIB_WBITS`.
    members : bool
        Accept further gzip members and NUL padding after the first.
    key : str, optional
        Object key, for errors.
    name : str
        Codec name, for errors.
    library : Library, optional
        Default :func:`inflate_library`, chosen now.
    """

    def __init__(self, out: memoryview, wbits: int = GZIP_WBITS, members: bool = True,
                 key: str | None = None, name: str = "gzip", library: Library | None = None):
        self.out = out
        self.total = len(out)
        self.pos = 0  # bytes written to out
        self.fed = 0  # input bytes given to feed()
        self.wbits = wbits
        self.members = members
        self.key = key
        self.name = name
        self.library = library or inflate_library()
        self._dobj = self.library.decompressobj(wbits)
        self._between = False  # a member ended: only padding or another member may follow
        self._member_out = 0  # output of the current member (a later member with none yet may be garbage)
        self._member = 0

    def _error(self, what: str) -> ArrayFormatError:
        return ArrayFormatError(f"{self.key}: {self.name} body {what}", self.key)

    def _write(self, chunk: bytes) -> None:
        end = self.pos + len(chunk)
        if end > self.total:
            raise self._error(f"decodes to more than the {self.total} bytes the metadata says")
        self.out[self.pos:end] = chunk
        self.pos = end
        self._member_out += len(chunk)

    def _limit(self) -> int:
        # one byte more than may come, so that an overlong body is noticed (0 would mean "no limit")
        return min(_OUT_STEP, self.total - self.pos + 1)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Decode the next piece of the body.

        Raises
        ------
        ArrayFormatError
            Corrupt data, more output than ``len(out)``, or trailing garbage.
        """
        view = memoryview(data).cast("B")
        self.fed += len(view)
        for start in range(0, len(view), _IN_STEP):
            self._feed_piece(view[start:start + _IN_STEP])

    def _feed_piece(self, piece: bytes | memoryview) -> None:
        while len(piece):
            if self._between:
                piece = self._next_member(piece)
                if not len(piece):
                    return
            try:
                chunk = self._dobj.decompress(piece, self._limit())
            except self.library.error as exc:
                raise self._corrupt(exc) from exc
            self._write(chunk)
            if self._dobj.eof:
                self._between = True
                piece = self._dobj.unused_data
            else:
                piece = self._dobj.unconsumed_tail

    def _corrupt(self, exc: Exception) -> ArrayFormatError:
        if self._member and not self._member_out:
            return self._error(f"has trailing garbage after its data (near input byte {self.fed})")
        return self._error(f"is corrupt: {exc}")

    def _next_member(self, piece: bytes | memoryview) -> bytes | memoryview:
        """Skip NUL padding; return the rest of ``piece`` starting a new member (maybe empty)."""
        if not self.members:
            raise self._error(f"has {len(piece)} bytes of trailing garbage")
        arr = np.frombuffer(piece, dtype=np.uint8)
        nonzero = np.flatnonzero(arr)
        if not len(nonzero):
            return b""
        self._between = False
        self._dobj = self.library.decompressobj(self.wbits)
        self._member += 1
        self._member_out = 0
        return piece[int(nonzero[0]):]

    def finish(self) -> None:
        """Check that the stream ended and filled ``out`` exactly.

        Raises
        ------
        ArrayFormatError
            The body is truncated, or decodes to fewer bytes than ``len(out)``.
        """
        while not self._between:
            try:  # all input was given to the decoder, but the output limit may have held some back
                while not self._dobj.eof:
                    chunk = self._dobj.decompress(b"", self._limit())
                    if not chunk:
                        break
                    self._write(chunk)
            except self.library.error as exc:
                raise self._corrupt(exc) from exc
            if not self._dobj.eof:
                if self._member and not self._member_out:
                    raise self._error(f"has trailing garbage after its data (near input byte {self.fed})")
                raise self._error(f"is truncated ({self.fed} bytes, {self.pos} of {self.total} decoded)")
            self._between = True
            self._feed_piece(self._dobj.unused_data)  # may start another member: loop
        if self.pos != self.total:
            raise self._error(f"decodes to {self.pos} bytes, the metadata says {self.total}")

