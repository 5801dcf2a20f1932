"""Array metadata: the ``dtype``/``shape``/``compression``/``order`` contract.

This module parses the user metadata a raw array carries (case-insensitively,
as servers capitalise keys) into an :class:`ArrayMeta` and writes it back in
the exact form cottoncandy 0.4.0 reads.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np

from ..errors import ArrayFormatError, UnsupportedArrayError
from ..usermeta import normalize_metadata
from .compression import UNCOMPRESSED, compression_of

#: Largest array body we accept from metadata; beyond this the shape is nonsense.
MAX_ARRAY_BYTES = 1 << 50
MAX_NDIM = 64
#: User metadata names that describe a raw array (reserved: user metadata may not use them).
ARRAY_METADATA_KEYS = frozenset({"dtype", "shape", "compression", "order", "gzip"})


#: Keys every cottoncandy writer (0.4.0 and this one) stores beside ``dtype`` and ``shape``.
_WRITER_KEYS = ("compression", "gzip", "order")


def stored_shape(metadata: Mapping[str, str] | None) -> str | None:
    """The stored ``shape`` text of a raw array's user metadata, or None if it is not one.

    A 0-d array's shape is stored as ``''``, and some servers (SeaweedFS) drop a
    metadata entry whose value is empty: an object with ``dtype`` and the other
    keys a cottoncandy writer stores, but no ``shape``, is such an array.
    """
    meta = normalize_metadata(metadata)
    if "dtype" not in meta:
        return None
    if "shape" in meta:
        return meta["shape"]
    return "" if any(name in meta for name in _WRITER_KEYS) else None


def is_array_metadata(metadata: Mapping[str, str] | None) -> bool:
    """Tell whether user metadata marks a raw array (``dtype`` and ``shape``, see :func:`stored_shape`)."""
    return stored_shape(metadata) is not None


@functools.lru_cache(maxsize=1024)
def _dtype(text: str) -> np.dtype:
    return np.dtype(text)  # a listing parses the same few dtype strings thousands of times


def parse_dtype(text: str, key: str | None = None) -> np.dtype:
    """Parse a stored dtype string (``<f8``, ``>i2``, ``|b1``, ``<U5``), refusing object and sub-array dtypes."""
    try:
        dtype = _dtype(text)
    except (TypeError, ValueError, SyntaxError) as exc:
        raise ArrayFormatError(f"{key}: invalid dtype {text!r} in metadata", key) from exc
    if dtype.hasobject:
        raise ArrayFormatError(f"{key}: object dtype {text!r} cannot be stored", key)
    if dtype.subdtype is not None:  # '(2,)f8': numpy would fold (2,) into the array's shape
        raise ArrayFormatError(f"{key}: sub-array dtype {text!r} cannot describe a raw array", key)
    if dtype.itemsize == 0 and dtype.kind != "V":  # numpy turns 'U0'/'S0' into 'U1'/'S1'
        raise ArrayFormatError(f"{key}: dtype {text!r} has no size", key)
    return dtype


def parse_shape(text: str, key: str | None = None) -> tuple[int, ...]:
    """Parse a stored shape (``'4,5,6'``; ``''`` for 0-d)."""
    text = text.strip().strip("()[]").replace(" ", "")
    if not text:
        return ()
    parts = [p for p in text.split(",")]
    if parts and parts[-1] == "":  # '10,' as str(tuple) would leave it
        parts.pop()
    if len(parts) > MAX_NDIM:
        raise ArrayFormatError(f"{key}: shape {text!r} has more than {MAX_NDIM} dimensions", key)
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError as exc:
        raise ArrayFormatError(f"{key}: invalid shape {text!r} in metadata", key) from exc
    if any(n < 0 for n in shape):
        raise ArrayFormatError(f"{key}: negative dimension in shape {text!r}", key)
    return shape


@dataclass(frozen=True, slots=True)
class ArrayMeta:
    """What the metadata of a raw array says.

    Attributes
    ----------
    dtype : numpy.dtype
    shape : tuple of int
    compression : str or None
        ``None`` for an uncompressed body, ``'gzip'``, or a numcodecs codec id
        as stored (``'Zstd'``, ``'LZ4'``...).
    order : {'C', 'F'}
        Memory order of the bytes in the (decoded) body.
    """

    dtype: np.dtype
    shape: tuple[int, ...]
    compression: str | None = None
    order: Literal["C", "F"] = "C"

    @property
    def nbytes(self) -> int:
        """Size of the decoded array data in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], key: str | None = None) -> "ArrayMeta":
        """Parse user metadata (any key case) into an :class:`ArrayMeta`.

        Raises
        ------
        ArrayFormatError
            When ``dtype`` or ``shape`` is missing or invalid, ``order`` is
            neither C nor F, or the shape's byte size is absurd.
        """
        meta = normalize_metadata(metadata)
        shape_text = stored_shape(meta)
        if shape_text is None:
            raise ArrayFormatError(f"{key}: not a cottoncandy array (no dtype/shape metadata)", key)
        dtype = parse_dtype(meta["dtype"], key)
        shape = parse_shape(shape_text, key)
        order_text = meta.get("order", "C").strip().upper() or "C"
        if order_text not in ("C", "F"):
            raise ArrayFormatError(f"{key}: invalid order {meta['order']!r} in metadata", key)
        order: Literal["C", "F"] = "F" if order_text == "F" else "C"
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise ArrayFormatError(f"{key}: shape {shape} of {dtype} is too large ({nbytes} bytes)", key)
        return cls(dtype=dtype, shape=shape, compression=compression_of(meta, key), order=order)

    @classmethod
    def for_array(cls, arr: np.ndarray, compression: str | None = None) -> "ArrayMeta":
        """Describe ``arr`` as it will be written (always C order)."""
        if arr.dtype.hasobject:
            raise UnsupportedArrayError(f"arrays of dtype {arr.dtype} (Python objects) cannot be stored")
        return cls(dtype=arr.dtype, shape=tuple(arr.shape), compression=compression, order="C")

    def to_metadata(self) -> dict[str, str]:
        """User metadata in the form cottoncandy 0.4.0 writes and reads."""
        return {
            "dtype": self.dtype.str,
            "shape": ",".join(str(n) for n in self.shape),
            "compression": self.compression if self.compression else UNCOMPRESSED,
            "order": self.order,
        }
