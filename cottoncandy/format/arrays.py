"""Raw arrays: numpy arrays to and from (body, metadata).

Writing always produces C-order bytes and ``order=C`` metadata; reading honours
``order=F`` (the body then holds Fortran-order bytes). Uncompressed uploads do
not copy a C-contiguous array, and uncompressed downloads can be read straight
into the destination array::

    arr = empty_for(meta)
    backend.read_into(key, byte_view(arr))    # fills the array's memory
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ArrayFormatError, ArrayTooLargeError, UnsupportedArrayError
from .codecbase import BytesLike, RawCodec
from .codecs import codec_for_size, get_codec
from .compression import DEFAULT_COMPRESSION
from .metadata import ArrayMeta


def _storable(arr: Any) -> np.ndarray:
    """``arr`` as an ndarray whose dtype survives the ``dtype.str`` metadata."""
    array = np.asarray(arr)
    if array.dtype.hasobject:
        raise UnsupportedArrayError(
            f"arrays of dtype {array.dtype} (Python objects) cannot be stored as raw arrays; "
            "use upload_pickle"
        )
    if np.dtype(array.dtype.str) != array.dtype:
        raise UnsupportedArrayError(
            f"dtype {array.dtype} would be stored as {array.dtype.str!r} and lose its structure; "
            "use upload_npy_array for structured arrays"
        )
    return array


def byte_view(arr: np.ndarray) -> memoryview:
    """Flat unsigned-byte view of a C- or Fortran-contiguous array's memory.

    Parameters
    ----------
    arr : numpy.ndarray
        A contiguous array (as returned by :func:`empty_for`).

    Returns
    -------
    memoryview
        Format ``'B'``, writable when ``arr`` is; its bytes are the array's
        elements in the array's memory order.

    Raises
    ------
    ValueError
        When ``arr`` is not contiguous.
    """
    if arr.nbytes == 0:
        return memoryview(bytearray())
    if arr.flags.c_contiguous:
        flat = arr.reshape(-1)
    elif arr.flags.f_contiguous:
        flat = arr.T.reshape(-1)
    else:
        raise ValueError("byte_view needs a contiguous array")
    return flat.view(np.uint8).data


def encode_array(
    arr: Any, compression: str | bool | None = DEFAULT_COMPRESSION, key: str | None = None
) -> tuple[BytesLike, dict[str, str]]:
    """Encode an array as a raw-array body and its user metadata.

    Parameters
    ----------
    arr : array_like
        Array or numpy scalar; any memory layout.
    compression : str, bool or None
        ``None``/``False`` for an uncompressed body, ``True`` for the default
        codec (:data:`~cottoncandy.format.compression.DEFAULT_COMPRESSION`), ``'gzip'``, or a
        numcodecs id (``'Blosc'``, ``'Zstd'``, ``'LZ4'``...); read by
        :func:`~cottoncandy.format.compression.normalize_compression`. Empty arrays are always
        stored uncompressed, and bodies over a codec's size limit (Blosc, LZ4:
        ~2 GiB) are compressed with Zstd; the metadata says what was used.
    key : str, optional
        Object key, named in errors.

    Returns
    -------
    body : bytes-like
        For uncompressed bodies a memoryview of the array's C-order bytes
        (shares memory with ``arr`` when it is C-contiguous; keep ``arr``
        unchanged until the body is written); otherwise the encoded bytes.
    metadata : dict of str
        ``dtype``, ``shape``, ``compression`` and ``order`` (always ``'C'``).

    Raises
    ------
    UnsupportedArrayError
        For object dtypes and structured dtypes.
    UnknownCodecError
        For unknown codecs, or numcodecs ids when numcodecs is missing.
    """
    array = _storable(arr)
    if not array.flags.c_contiguous:
        array = array.copy(order="C")
    data = byte_view(array)
    codec = codec_for_size(compression, len(data), key)
    body = codec.encode(data, array.dtype.itemsize)
    return body, ArrayMeta.for_array(array, compression=codec.name).to_metadata()


def empty_for(meta: ArrayMeta, key: str | None = None) -> np.ndarray:
    """Allocate the array an uncompressed body is read into.

    Parameters
    ----------
    meta : ArrayMeta
        The object's parsed metadata.

    Returns
    -------
    numpy.ndarray
        Uninitialised, of ``meta.dtype`` and ``meta.shape``, in ``meta.order``
        so that :func:`byte_view` of it takes the body's bytes as they are.

    Raises
    ------
    ArrayTooLargeError
        When the memory cannot be allocated (metadata of a corrupt object
        can claim any size up to :data:`~cottoncandy.format.metadata.MAX_ARRAY_BYTES`).
    """
    try:
        return np.empty(meta.shape, dtype=meta.dtype, order=meta.order)
    except MemoryError as exc:
        raise ArrayTooLargeError(
            f"{key}: cannot allocate {meta.nbytes} bytes for an array of shape {meta.shape} of {meta.dtype}",
            key,
        ) from exc


def decode_array_into(body: BytesLike, out: np.ndarray, meta: ArrayMeta, key: str | None = None) -> None:
    """Decode a body into an array from :func:`empty_for`.

    Parameters
    ----------
    body : bytes-like
        The object's bytes.
    out : numpy.ndarray
        Destination from ``empty_for(meta)``.
    meta : ArrayMeta
    key : str, optional
        Object key, named in errors.

    Raises
    ------
    ArrayFormatError
        When the body is corrupt or does not hold exactly ``meta.nbytes`` bytes.
    UnknownCodecError
        When ``meta.compression`` is not available.
    """
    if out.shape != meta.shape or out.dtype != meta.dtype:
        raise ValueError(f"destination {out.shape} {out.dtype} does not match {meta.shape} {meta.dtype}")
    get_codec(meta.compression, key).decode_into(body, byte_view(out), key)


def decode_array(body: BytesLike, meta: ArrayMeta, key: str | None = None) -> np.ndarray:
    """Decode a raw-array body into a new, writable array.

    Parameters
    ----------
    body : bytes-like
        The object's bytes. A writable uncompressed body (``bytearray``,
        writable memoryview) is used in place, without a copy.
    meta : ArrayMeta
        The object's parsed metadata.
    key : str, optional
        Object key, named in errors.

    Returns
    -------
    numpy.ndarray
        With ``meta.dtype`` and ``meta.shape``; Fortran-ordered when the body
        was (``order=F``), with the same values as the array written.

    Raises
    ------
    ArrayFormatError
        When the body is corrupt or does not hold exactly ``meta.nbytes`` bytes.
    UnknownCodecError
        When ``meta.compression`` is not available.
    """
    codec = get_codec(meta.compression, key)
    if isinstance(codec, RawCodec) and meta.nbytes > 0:
        view = memoryview(body)
        if not view.readonly and view.contiguous and view.nbytes == meta.nbytes:
            flat = np.frombuffer(view, dtype=meta.dtype)
            return flat.reshape(meta.shape, order=meta.order)
    out = empty_for(meta, key)
    codec.decode_into(body, byte_view(out), key)
    return out


def finish_array(data: np.ndarray | BytesLike, meta: ArrayMeta, key: str | None = None) -> np.ndarray:
    """Turn what a download produced into the array.

    Parameters
    ----------
    data : numpy.ndarray or bytes-like
        Either the array from :func:`empty_for`, already filled through
        :func:`byte_view` (returned as it is), or the object's body as
        ``bytes``/``bytearray``/``memoryview`` (decoded with :func:`decode_array`).
    meta : ArrayMeta
    key : str, optional
        Object key, named in errors.

    Returns
    -------
    numpy.ndarray
    """
    if isinstance(data, np.ndarray):
        if data.shape != meta.shape or data.dtype != meta.dtype:
            raise ArrayFormatError(
                f"{key}: array {data.shape} {data.dtype} does not match the metadata "
                f"{meta.shape} {meta.dtype}", key
            )
        return data
    return decode_array(data, meta, key)
