"""The codec contract for raw array bodies, and the uncompressed codec.

A :class:`Codec` encodes an array's C-order bytes into a body and decodes a
body into a buffer it must fill exactly. The compressed formats are in
:mod:`.compressors`; :mod:`.codecs` looks them up by name.
"""

from __future__ import annotations

from typing import Protocol, Union

import numpy as np
from typing_extensions import override

from ..errors import ArrayFormatError

BytesLike = Union[bytes, bytearray, memoryview]


def byte_view(data: BytesLike | np.ndarray) -> memoryview:
    """Return a 1-d unsigned-byte memoryview of a contiguous buffer, without copying."""
    if isinstance(data, memoryview):
        view = data
    else:
        view = data.data if isinstance(data, np.ndarray) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class StreamDecoder(Protocol):
    """Decodes a body fed piece by piece (:class:`~cottoncandy.format.gzipcodec.Inflater` is one)."""

    def feed(self, data: BytesLike) -> None:
        """Decode the next piece of the body."""

    def finish(self) -> None:
        """Check that the body ended and filled the output exactly."""


class Codec:
    """A compression format for raw array bodies.

    Attributes
    ----------
    codec_id : str
        Lower-case id the format is looked up by (``'zstd'``); empty for uncompressed.
    name : str or None
        What the ``compression`` metadata says for bodies this codec writes
        (``'Zstd'``; ``None`` for uncompressed).
    max_nbytes : int or None
        Largest body :meth:`encode` accepts, ``None`` for no limit.
    """

    codec_id: str = ""
    name: str | None = None
    max_nbytes: int | None = None

    def encode(self, data: memoryview, itemsize: int = 1) -> BytesLike:
        """Compress ``data``.

        Parameters
        ----------
        data : memoryview
            The array's C-order bytes.
        itemsize : int
            Size of one element (lets shuffling codecs group bytes).

        Returns
        -------
        bytes-like
            The body to store.
        """
        raise NotImplementedError

    def decode_into(self, body: BytesLike, out: memoryview, key: str | None = None) -> None:
        """Decompress ``body`` into ``out``, which must be filled exactly.

        The default feeds the whole body to :meth:`stream_decoder`.

        Raises
        ------
        ArrayFormatError
            When the body is truncated or corrupt, or decodes to more or fewer
            bytes than ``len(out)``.
        """
        decoder = self.stream_decoder(out, key)
        if decoder is None:
            raise NotImplementedError(f"{type(self).__name__} must define decode_into")
        decoder.feed(body)
        decoder.finish()

    def stream_decoder(self, out: memoryview, key: str | None = None) -> StreamDecoder | None:
        """A decoder fed the body piece by piece, or ``None`` if this codec needs it whole.

        Returns
        -------
        StreamDecoder or None
            ``feed(piece)`` for each piece in order, then ``finish()``; fills
            ``out`` exactly or raises ``ArrayFormatError`` as :meth:`decode_into`.
        """
        return None

    def decode(self, body: BytesLike, nbytes: int, key: str | None = None) -> memoryview:
        """Decompress ``body``, which must decode to exactly ``nbytes`` bytes.

        Returns
        -------
        memoryview
            A writable byte view of the decoded data.

        Raises
        ------
        ArrayFormatError
            See :meth:`decode_into`.
        """
        out = np.empty(nbytes, dtype=np.uint8).data
        self.decode_into(body, out, key)
        return out

    def error(self, key: str | None, what: str) -> ArrayFormatError:
        """The error for a body of this codec that ``what`` (``'is truncated'``...)."""
        return ArrayFormatError(f"{key}: {self.name or 'uncompressed'} body {what}", key)

    @override
    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class RawCodec(Codec):
    """Uncompressed bodies: the bytes are the array."""

    @override
    def encode(self, data: memoryview, itemsize: int = 1) -> memoryview:  # noqa: D102
        return byte_view(data)

    @override
    def decode_into(self, body: BytesLike, out: memoryview, key: str | None = None) -> None:  # noqa: D102
        view = byte_view(body)
        if len(view) != len(out):
            raise self.error(key, f"has {len(view)} bytes, the metadata says {len(out)}")
        out[:] = view
