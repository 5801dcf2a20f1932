"""The compressed body formats: gzip, and the numcodecs codecs with default parameters.

Each class is one format, named by its :attr:`~.codecbase.Codec.codec_id`;
:data:`CODEC_TYPES` lists them for :func:`cottoncandy.format.codecs.get_codec`.
Bodies are exactly what cottoncandy 0.4.0 writes and reads: one gzip member,
or the numcodecs codec's own framing. numcodecs is optional and imported when
a codec needing it is made.

Only lossless byte compressors are listed: numcodecs also registers filters
and serialisers (``pickle`` among them), which metadata from a bucket must
never be able to select.

Decoding checks sizes before writing: Blosc, LZ4 and (usually) Zstd bodies
declare their decoded size in a header, compared with what the metadata says,
then decode straight into the destination; zlib, gzip, bz2 and xz bodies are
decoded as streams with bounded memory.
"""

from __future__ import annotations

import bz2
import functools
import lzma
import zlib
from typing import Any, Callable

import numpy as np
from typing_extensions import override

from .codecbase import BytesLike, Codec, byte_view
from .gzipcodec import GZIP_WBITS, ZLIB_WBITS, Inflater, gzip_encode

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_IN_STEP = 1 << 20
_OUT_STEP = 8 << 20
_DECODE_ERRORS = (ValueError, RuntimeError, TypeError, OSError, EOFError, OverflowError,
                  MemoryError, zlib.error, lzma.LZMAError)


class GzipCodec(Codec):
    """One gzip member (what 0.4.0 writes and reads with :mod:`gzip`); see :mod:`.gzipcodec`."""

    codec_id = "gzip"
    name = "gzip"

    @override
    def encode(self, data: memoryview, itemsize: int = 1) -> bytearray:  # noqa: D102
        return gzip_encode(data)

    @override
    def stream_decoder(self, out: memoryview, key: str | None = None) -> Inflater:  # noqa: D102
        return Inflater(out, GZIP_WBITS, members=True, key=key, name="gzip")


class NumcodecsCodec(Codec):
    """A numcodecs compressor with default parameters; decodes whole bodies.

    Raises
    ------
    ImportError
        When numcodecs is not installed.
    """

    def __init__(self) -> None:
        import numcodecs  # optional dependency: imported only when needed

        self._codec = numcodecs.get_codec({"id": self.codec_id})

    def _encode_input(self, view: memoryview, itemsize: int) -> Any:
        return view

    @override
    def encode(self, data: memoryview, itemsize: int = 1) -> BytesLike:  # noqa: D102
        view = byte_view(data)
        if self.max_nbytes is not None and len(view) > self.max_nbytes:
            raise ValueError(f"{self.name} cannot compress {len(view)} bytes (limit {self.max_nbytes})")
        encoded = self._codec.encode(self._encode_input(view, itemsize))
        return encoded if isinstance(encoded, (bytes, bytearray)) else byte_view(encoded)

    def declared_size(self, view: memoryview, key: str | None) -> int | None:
        """Decoded size stated by the body's own header, ``None`` when the format has none."""
        return None

    @override
    def decode_into(self, body: BytesLike, out: memoryview, key: str | None = None) -> None:  # noqa: D102
        view = byte_view(body)
        declared = self.declared_size(view, key)
        if declared is not None and declared != len(out):
            raise self.error(key, f"decodes to {declared} bytes, the metadata says {len(out)}")
        try:
            if declared is not None:  # decode straight into the destination
                self._codec.decode(view, out=np.frombuffer(out, dtype=np.uint8))
                return
            decoded = byte_view(self._codec.decode(view))
        except _DECODE_ERRORS as exc:
            raise self.error(key, f"is corrupt: {exc}") from exc
        if len(decoded) != len(out):
            raise self.error(key, f"decodes to {len(decoded)} bytes, the metadata says {len(out)}")
        out[:] = decoded


class BloscCodec(NumcodecsCodec):
    """Blosc (lz4, byte shuffle by item size); bodies up to 2 GiB."""

    codec_id = "blosc"
    name = "Blosc"
    max_nbytes = 2**31 - 1 - 16

    @override
    def _encode_input(self, view: memoryview, itemsize: int) -> Any:
        if 1 < itemsize <= 255 and len(view) % itemsize == 0:  # the shuffle groups each element's bytes
            return np.frombuffer(view, dtype=np.dtype((np.void, itemsize)))
        return view

    @override
    def declared_size(self, view: memoryview, key: str | None) -> int:  # noqa: D102
        if len(view) < 16:
            raise self.error(key, "is too short for a Blosc header")
        # Blosc header: version, versionlz, flags, typesize, then uint32 LE
        # nbytes (decoded size), blocksize, cbytes (size of the whole body).
        nbytes = int.from_bytes(view[4:8], "little")
        cbytes = int.from_bytes(view[12:16], "little")
        if cbytes != len(view):
            raise self.error(key, f"has {len(view)} bytes, its Blosc header says {cbytes}")
        return nbytes


class Lz4Codec(NumcodecsCodec):
    """LZ4 (numcodecs prefixes the decoded size); bodies up to ~2 GiB."""

    codec_id = "lz4"
    name = "LZ4"
    max_nbytes = 0x7E000000

    @override
    def declared_size(self, view: memoryview, key: str | None) -> int:  # noqa: D102
        if len(view) < 4:
            raise self.error(key, "is too short for an LZ4 header")
        return int.from_bytes(view[:4], "little")


def _zstd_content_size(view: memoryview) -> int | None:
    """Decompressed size a zstd frame header declares, ``None`` when absent."""
    if len(view) < 6 or view[:4] != _ZSTD_MAGIC:
        return None
    descriptor = view[4]
    single_segment = (descriptor >> 5) & 1
    pos = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
    length = ((1 if single_segment else 0), 2, 4, 8)[descriptor >> 6]
    if length == 0 or len(view) < pos + length:
        return None
    value = int.from_bytes(view[pos:pos + length], "little")
    return value + 256 if length == 2 else value


class ZstdCodec(NumcodecsCodec):
    """Zstandard; the frame header usually states the decoded size."""

    codec_id = "zstd"
    name = "Zstd"

    @override
    def declared_size(self, view: memoryview, key: str | None) -> int | None:  # noqa: D102
        return _zstd_content_size(view)


class ZlibCodec(NumcodecsCodec):
    """A zlib stream, decoded as it comes (:class:`~.gzipcodec.Inflater`)."""

    codec_id = "zlib"
    name = "Zlib"

    @override
    def stream_decoder(self, out: memoryview, key: str | None = None) -> Inflater:  # noqa: D102
        return Inflater(out, ZLIB_WBITS, members=False, key=key, name=self.name or "")

    @override
    def decode_into(self, body: BytesLike, out: memoryview, key: str | None = None) -> None:  # noqa: D102
        Codec.decode_into(self, body, out, key)


def _stream_into(codec: Codec, body: BytesLike, out: memoryview, key: str | None,
                 factory: Callable[[], Any]) -> None:
    """Stream a bz2/xz body into ``out`` with bounded memory; one stream only."""
    view = byte_view(body)
    total, pos, fed, size = len(out), 0, 0, len(view)
    decomp = factory()
    try:
        while not decomp.eof:
            data: BytesLike = b""
            if decomp.needs_input:
                if fed >= size:
                    raise codec.error(key, f"is truncated ({size} bytes, {pos} of {total} decoded)")
                data = view[fed:fed + _IN_STEP]
                fed += len(data)
            chunk = decomp.decompress(data, min(_OUT_STEP, total - pos + 1))
            if pos + len(chunk) > total:
                raise codec.error(key, f"decodes to more than the {total} bytes the metadata says")
            out[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise codec.error(key, f"is corrupt: {exc}") from exc
    trailing = len(decomp.unused_data) + size - fed
    if trailing:
        raise codec.error(key, f"has {trailing} bytes of trailing garbage")
    if pos != total:
        raise codec.error(key, f"decodes to {pos} bytes, the metadata says {total}")


class Bz2Codec(NumcodecsCodec):
    """bzip2, decoded by the standard library as a stream."""

    codec_id = "bz2"
    name = "BZ2"

    @override
    def decode_into(self, body: BytesLike, out: memoryview, key: str | None = None) -> None:  # noqa: D102
        _stream_into(self, body, out, key, bz2.BZ2Decompressor)


class LzmaCodec(NumcodecsCodec):
    """xz (numcodecs' LZMA default format), decoded by the standard library as a stream."""

    codec_id = "lzma"
    name = "LZMA"

    @override
    def decode_into(self, body: BytesLike, out: memoryview, key: str | None = None) -> None:  # noqa: D102
        _stream_into(self, body, out, key, functools.partial(lzma.LZMADecompressor, lzma.FORMAT_XZ))


#: Every compressed format, by ``codec_id``.
CODEC_TYPES: dict[str, type[Codec]] = {
    cls.codec_id: cls for cls in (GzipCodec, BloscCodec, Lz4Codec, ZstdCodec, ZlibCodec, Bz2Codec, LzmaCodec)
}
