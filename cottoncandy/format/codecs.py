"""Choosing the codec of a raw array body: by the ``compression`` it states, and by size.

:func:`get_codec` reads a ``compression`` argument or metadata value (with
:func:`~cottoncandy.format.compression.normalize_compression`) and returns the
:class:`~cottoncandy.format.codecbase.Codec` registered under its lower-cased
id in :data:`~cottoncandy.format.compressors.CODEC_TYPES`;
:func:`codec_for_size` picks the codec an upload writes with. What the values
mean and why the default is Blosc: :mod:`cottoncandy.format.compression`.
"""

from __future__ import annotations

import functools
import logging

from ..errors import UnknownCodecError
from .codecbase import Codec, RawCodec
from .compression import LARGE_BODY_COMPRESSION, normalize_compression
from .compressors import CODEC_TYPES

__all__ = ["get_codec", "codec_for_size"]

log = logging.getLogger(__name__)

_RAW = RawCodec()


@functools.lru_cache(maxsize=None)
def _lookup(codec_id: str) -> Codec:
    """The codec registered as ``codec_id`` (one instance each); ``KeyError`` when none is."""
    return CODEC_TYPES[codec_id]()


def get_codec(compression: str | bool | None, key: str | None = None) -> Codec:
    """Return the codec for a ``compression`` argument or metadata value.

    Parameters
    ----------
    compression : str, bool or None
        Read by :func:`normalize_compression`: ``None``/``False``/``'False'``
        for uncompressed, ``True`` for the default codec, ``'gzip'``,
        or a numcodecs id in any case (``'Zstd'``, ``'lz4'``, ``'BLOSC'``...).
    key : str, optional
        Object key, named in errors.

    Returns
    -------
    Codec

    Raises
    ------
    UnknownCodecError
        When the name is not a supported compressor, or numcodecs (needed for
        everything but gzip) is not installed.
    """
    name = normalize_compression(compression)
    if name is None:
        return _RAW
    prefix = f"{key}: " if key else ""
    try:
        return _lookup(name.lower())
    except KeyError:
        raise UnknownCodecError(f"{prefix}unknown compression codec {name!r}", key) from None
    except ImportError as exc:
        raise UnknownCodecError(
            f"{prefix}compression {name!r} needs numcodecs (pip install numcodecs)", key
        ) from exc


def codec_for_size(compression: str | bool | None, nbytes: int, key: str | None = None) -> Codec:
    """Codec to write a body of ``nbytes`` with, honouring size limits.

    Empty bodies are stored uncompressed (old numcodecs, hence 0.4.0 setups,
    cannot encode them); bodies beyond a codec's limit (Blosc, LZ4: ~2 GiB)
    use :data:`~cottoncandy.format.compression.LARGE_BODY_COMPRESSION` instead.

    Parameters
    ----------
    compression : str, bool or None
        The compression asked for.
    nbytes : int
        Size of the uncompressed body.
    key : str, optional
        Object key, named in errors and log lines.

    Returns
    -------
    Codec
    """
    codec = get_codec(compression, key)
    if nbytes == 0:
        return _RAW
    if codec.max_nbytes is not None and nbytes > codec.max_nbytes:
        log.info("%s: %d bytes exceed the %s limit, compressing with %s instead",
                 key, nbytes, codec.name, LARGE_BODY_COMPRESSION)
        return get_codec(LARGE_BODY_COMPRESSION, key)
    return codec
