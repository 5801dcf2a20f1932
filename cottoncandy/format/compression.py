"""What a ``compression`` value means: one reading for arguments and stored metadata.

A raw array body is the array's bytes, either as they are (``compression`` =
``False``), as one gzip member (``'gzip'``), or in the framing of a numcodecs
codec with default parameters (``'Zstd'``, ``'LZ4'``, ``'Blosc'``, ``'Zlib'``,
``'BZ2'``, ``'LZMA'``; ids are looked up lower-cased), exactly what
cottoncandy 0.4.0 reads and writes. Objects 0.4.0 wrote before it had
``compression`` carry a ``gzip`` = ``True``/``False`` flag instead, which
wins. This module reads those values; :mod:`.codecs` encodes and decodes.

Default codec
-------------
:data:`DEFAULT_COMPRESSION` is ``'Blosc'`` (numcodecs defaults: lz4, clevel 5,
byte shuffle), fed with the array's item size so the shuffle groups the bytes
of each element. Measured on 256 MiB float64 arrays, 2 shared cores (noisy);
encode MB/s and compression ratio:

===============  ================  ================  ================
codec            standard_normal   cumsum (smooth)   sin + noise
===============  ================  ================  ================
gzip 9 (0.4.0)   26, 1.04          13, 1.17          18, 1.16
gzip 1 (zlib)    33, 1.04          44, 1.19          43, 1.17
Zstd (level 3)   500-600, 1.04     650, 1.11         600, 1.09
LZ4              1500, 1.00        1400, 1.00        1000, 1.00
Blosc            600-2100, 1.06    1200-2500, 1.33   1300-1800, 1.30
===============  ================  ================  ================

Blosc writes 20-100x faster than 0.4.0's gzip, decodes at 3-5 GB/s, and
thanks to the shuffle compresses smooth floating-point data better than Zstd
or LZ4; peak extra memory is one compressed body. Blosc and LZ4 cannot take
bodies over ~2 GiB (:attr:`~cottoncandy.format.codecbase.Codec.max_nbytes`);
:func:`~cottoncandy.format.codecs.codec_for_size` then picks
:data:`LARGE_BODY_COMPRESSION`, ``'Zstd'`` (no size limit; 130-1300 MB/s on
int16 and float data). Empty arrays are stored uncompressed (numcodecs of
0.4.0's era cannot encode them). ``'gzip'`` bodies are encoded and decoded by
:mod:`cottoncandy.format.gzipcodec` (ISA-L's igzip at level 1 when installed:
25x faster than level 9).
"""

from __future__ import annotations

from typing import Mapping

from ..errors import ArrayFormatError, UnknownCodecError
from ..usermeta import normalize_metadata

#: Codec used for uploads when the caller does not choose one.
DEFAULT_COMPRESSION = "Blosc"
#: Codec used instead of one whose size limit a body exceeds.
LARGE_BODY_COMPRESSION = "Zstd"
#: What the ``compression`` metadata of an uncompressed body says (as 0.4.0 writes it).
UNCOMPRESSED = "False"

#: Strings (lower-cased) that mean "no compression".
_UNCOMPRESSED = frozenset({"false", "none", "", "0"})
#: Legacy ``gzip`` flag values (lower-cased) and what they mean.
_GZIP_FLAGS = {"true": True, "1": True, "false": False, "0": False, "none": False, "": False}


def normalize_compression(compression: str | bool | None) -> str | None:
    """The one reading of a ``compression`` value, for arguments and stored metadata alike.

    Every API that takes ``compression`` (``upload_raw_array``,
    :func:`~cottoncandy.format.arrays.encode_array`, ``dict2cloud``...) and
    every ``compression`` metadata value goes through this function.

    Parameters
    ----------
    compression : str, bool or None
        ``None``, ``False`` and the strings ``'False'``, ``'None'``, ``''``,
        ``'0'`` (any case) mean uncompressed. ``True`` and ``'True'`` mean
        the default codec, :data:`DEFAULT_COMPRESSION` (0.4.0's ``True`` meant
        "the configured default" too). Any other string is a codec name,
        returned stripped.

    Returns
    -------
    str or None
        A codec name, or ``None`` for uncompressed.

    Raises
    ------
    UnknownCodecError
        For values that are neither a bool, ``None`` nor a string.
    """
    if compression is None or compression is False:
        return None
    if compression is True:
        return DEFAULT_COMPRESSION
    if not isinstance(compression, str):
        raise UnknownCodecError(f"compression must be a codec name, True or False, not {compression!r}")
    text = compression.strip()
    if text.lower() in _UNCOMPRESSED:
        return None
    if text.lower() == "true":
        return DEFAULT_COMPRESSION
    return text


def legacy_gzip_flag(value: str) -> bool | None:
    """Read 0.4.0's legacy ``gzip`` flag: ``True``/``'1'`` gzip, ``False``/``'0'``/``None``/``''`` not, else ``None``."""
    return _GZIP_FLAGS.get(value.strip().lower())


def compression_of(metadata: Mapping[str, str], key: str | None = None) -> str | None:
    """The codec name that lower-cased user ``metadata`` states (``None``: uncompressed).

    The legacy ``gzip`` flag wins over ``compression``, as in 0.4.0.

    Raises
    ------
    ArrayFormatError
        For a ``gzip`` flag that is neither true nor false.
    UnknownCodecError
        See :func:`normalize_compression`.
    """
    if "gzip" in metadata:
        flag = legacy_gzip_flag(metadata["gzip"])
        if flag is None:
            raise ArrayFormatError(f"{key}: invalid legacy gzip flag {metadata['gzip']!r}", key)
        return "gzip" if flag else None
    return normalize_compression(metadata.get("compression", UNCOMPRESSED))


def stored_compression(metadata: Mapping[str, str] | None) -> str:
    """What an object's user metadata (any key case) says about compression, as text; never raises.

    What the mount's ``user.cottoncandy.compression`` attribute shows. The legacy ``gzip`` flag wins: ``'gzip'`` for a true flag, ``'False'``
    for a false one, and the flag as stored when it is neither (reading the
    array then fails: this must not claim ``'False'``). Otherwise the stored
    ``compression`` value, ``'False'`` when there is none.
    """
    metadata = normalize_metadata(metadata)
    if "gzip" in metadata:
        flag = legacy_gzip_flag(metadata["gzip"])
        if flag is None:
            return metadata["gzip"]
        return "gzip" if flag else UNCOMPRESSED
    return metadata.get("compression", UNCOMPRESSED)
