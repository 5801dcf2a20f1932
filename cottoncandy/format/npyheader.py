"""``.npy`` headers for arrays known only by dtype and shape.

The mount shows a raw array as a ``.npy`` file: the header built here followed
by the decoded array bytes. The header is byte-for-byte what :func:`numpy.save`
writes for such an array (format 1.0, 2.0 when the header is longer than
65535 bytes, 3.0 when field names are not latin-1), and it is computed from
the dtype and shape alone, so it costs nothing for huge shapes.
"""

from __future__ import annotations

import functools
import io
import math
from typing import Sequence

import numpy as np
import numpy.lib.format as npformat

from ..errors import UnsupportedArrayError


def _header_dict(dtype: np.dtype, shape: Sequence[int], fortran_order: bool) -> dict:
    return {
        "descr": npformat.dtype_to_descr(dtype),
        "fortran_order": bool(fortran_order),
        "shape": tuple(int(n) for n in shape),
    }


def _write_v3(fp: io.BytesIO, header: dict) -> None:
    """Write a format 3.0 header; numpy has no public writer for it."""
    writer = getattr(npformat, "_write_array_header", None)
    if writer is None:
        try:
            from numpy.lib import _format_impl
        except ImportError as exc:  # pragma: no cover - depends on numpy version
            raise UnsupportedArrayError("this numpy cannot write .npy format 3.0 headers") from exc
        writer = getattr(_format_impl, "_write_array_header")
    writer(fp, header, (3, 0))


def npy_header(dtype: np.dtype | str, shape: Sequence[int], fortran_order: bool = False) -> bytes:
    """Return the ``.npy`` header :func:`numpy.save` writes for such an array.

    Parameters
    ----------
    dtype : numpy.dtype or str
        Element type (any byte order; object dtypes are refused).
    shape : sequence of int
        Array shape; ``()`` for 0-d. Never allocated.
    fortran_order : bool
        Whether the data following the header is in Fortran order.

    Returns
    -------
    bytes
        Magic string, version, header length and the padded header dict; the
        array data starts right after it (at a multiple of 64 bytes).

    Raises
    ------
    UnsupportedArrayError
        For object dtypes, or negative dimensions.
    """
    return _npy_header(np.dtype(dtype), tuple(int(n) for n in shape), bool(fortran_order))


@functools.lru_cache(maxsize=4096)
def _npy_header(dtype: np.dtype, shape: tuple[int, ...], fortran_order: bool) -> bytes:
    # arrays of a bucket share a few shapes: a listing of 10,000 of them formats few headers
    if dtype.hasobject:
        raise UnsupportedArrayError(f"arrays of dtype {dtype} cannot be written as .npy data")
    if any(n < 0 for n in shape):
        raise UnsupportedArrayError(f"invalid shape {shape}")
    header = _header_dict(dtype, shape, fortran_order)
    fp = io.BytesIO()
    try:
        npformat.write_array_header_1_0(fp, header)
    except ValueError:  # header over 65535 bytes, or non-latin-1 field names
        fp = io.BytesIO()
        try:
            npformat.write_array_header_2_0(fp, header)
        except UnicodeEncodeError:
            fp = io.BytesIO()
            _write_v3(fp, header)
    return fp.getvalue()


def npy_file_size(dtype: np.dtype | str, shape: Sequence[int], fortran_order: bool = False) -> int:
    """Size in bytes of the ``.npy`` file for an array of this dtype and shape.

    Parameters
    ----------
    dtype : numpy.dtype or str
    shape : sequence of int
    fortran_order : bool
        Only matters for the header's length (it is written into it).

    Returns
    -------
    int
        ``len(npy_header(...)) + prod(shape) * itemsize``.
    """
    dtype = np.dtype(dtype)
    return len(npy_header(dtype, shape, fortran_order)) + math.prod(int(n) for n in shape) * dtype.itemsize
