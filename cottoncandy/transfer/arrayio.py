"""Moving raw and ``.npy`` arrays between numpy and a backend.

Uncompressed raw arrays never pass through an intermediate buffer: uploads
hand the array's own memory to the backend, downloads have the backend fill
the destination array in place with parallel ranged GETs. Bodies that decode
as a stream (gzip, zlib) are decoded straight into the destination range by
range while the next ranges download (:mod:`.bodyranges`), so
download and decoding overlap and the whole compressed body is never held;
other codecs read the whole body, then decode it into the array.
"""

from __future__ import annotations

import io
import logging
from typing import Any, Mapping

import numpy as np

from ..backends.base import StorageBackend
from ..errors import ArrayFormatError
from ..format.arrays import byte_view, decode_array_into, empty_for, encode_array
from ..format.codecs import get_codec
from ..format.metadata import ARRAY_METADATA_KEYS, ArrayMeta
from .bodyranges import iter_ranges
from .progress import ProgressArg, progress_callback

logger = logging.getLogger(__name__)



def upload_raw(backend: StorageBackend, key: str, array: Any, compression: str | bool | None,
               metadata: Mapping[str, str], progress: ProgressArg) -> None:
    """Encode ``array`` and write it under ``key`` with its array metadata.

    ``compression`` is read by :func:`cottoncandy.format.compression.normalize_compression`
    (``True``: the default codec; ``False``/``None``: raw bytes).
    """
    clash = ARRAY_METADATA_KEYS & {k.lower() for k in metadata}
    if clash:
        raise ValueError(f"metadata names {sorted(clash)} are reserved for the array description")
    body, array_meta = encode_array(array, compression, key)
    nbytes = memoryview(body).nbytes
    with progress_callback(progress, nbytes, f"upload {key}") as callback:
        backend.write(key, body, {**metadata, **array_meta}, callback)


def download_raw(backend: StorageBackend, key: str, progress: ProgressArg) -> np.ndarray:
    """Read the raw array stored under ``key``.

    Raises
    ------
    ObjectNotFoundError
        No such object.
    ArrayFormatError
        Missing or corrupt metadata, or a body whose size does not match it.
    ArrayTooLargeError
        The array the metadata describes does not fit in memory.
    UnknownCodecError
        The codec named in the metadata is not available.
    """
    info = backend.head(key)
    meta = ArrayMeta.from_metadata(info.metadata or {}, key)
    # Check what can be checked before allocating: metadata may claim any size.
    if meta.compression is None and info.size != meta.nbytes:
        raise ArrayFormatError(
            f"{key}: body has {info.size} bytes but shape {meta.shape} of {meta.dtype} "
            f"needs {meta.nbytes}", key)
    codec = get_codec(meta.compression, key)
    out = empty_for(meta, key)
    with progress_callback(progress, info.size, f"download {key}") as callback:
        if meta.compression is None:
            if meta.nbytes:
                backend.read_into(key, byte_view(out), 0, etag=info.etag, progress=callback)
            return out
        decoder = codec.stream_decoder(byte_view(out), key)
        if decoder is not None:  # decode each range while the next ones download
            for piece in iter_ranges(backend, key, info.size, info.etag):
                decoder.feed(piece)
                if callback:
                    callback(len(piece))
            decoder.finish()
            return out
        body = bytearray(info.size)
        if info.size:
            backend.read_into(key, memoryview(body), 0, etag=info.etag, progress=callback)
        decode_array_into(body, out, meta, key)
    return out


def upload_npy(backend: StorageBackend, key: str, array: Any, metadata: Mapping[str, str]) -> None:
    """Write ``array`` in ``.npy`` format (no array metadata, as 0.4.0 does)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    backend.write(key, buffer.getbuffer(), dict(metadata))


def download_npy(backend: StorageBackend, key: str) -> np.ndarray:
    """Read an array stored in ``.npy`` format (pickled object arrays are refused)."""
    from .objectio import read_body

    try:
        return np.load(io.BytesIO(read_body(backend, key)), allow_pickle=False)
    except ValueError as exc:
        raise ArrayFormatError(f"{key}: not a valid .npy object ({exc})", key) from exc
