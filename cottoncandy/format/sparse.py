"""scipy.sparse matrices from the attribute arrays a sparse manifest lists.

The one place that turns stored parts into a matrix, for the Python API
(:mod:`cottoncandy.extensions.sparse_arrays`) and the mount's ``.npz`` files
alike. scipy is optional: imported when a matrix is built.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import ArrayFormatError
from .manifests import SparseManifest


def scipy_sparse() -> Any:
    """The ``scipy.sparse`` module.

    Raises
    ------
    ImportError
        scipy is not installed (the message says how to install it).
    """
    try:
        import scipy.sparse as sp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("sparse arrays need scipy: pip install 'cottoncandy[sparse]'") from exc
    return sp


def assemble_sparse(manifest: SparseManifest, arrays: Mapping[str, np.ndarray]) -> Any:
    """The scipy.sparse matrix a sparse manifest and its attribute arrays stand for.

    Parameters
    ----------
    manifest : SparseManifest
    arrays : mapping
        Attribute name -> array, at least for :meth:`SparseManifest.part_keys`.

    Returns
    -------
    scipy.sparse matrix
        A ``csr_matrix``, ``csc_matrix``, ``bsr_matrix``, ``coo_matrix`` or
        ``dia_matrix``, as ``manifest.type`` says (0.4.0 returned the same classes).

    Raises
    ------
    ArrayFormatError
        An attribute is missing, or scipy refuses the arrays (inconsistent lengths...).
    ImportError
        scipy is not installed.
    """
    sp = scipy_sparse()
    kind, shape = manifest.type, manifest.shape
    try:
        if kind == "coo":
            return sp.coo_matrix((arrays["data"], (arrays["row"], arrays["col"])), shape=shape)
        if kind == "dia":
            return sp.dia_matrix((arrays["data"], arrays["offsets"]), shape=shape)
        build = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "bsr": sp.bsr_matrix}[kind]
        return build((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        what = f"no {exc} attribute" if isinstance(exc, KeyError) else str(exc)
        raise ArrayFormatError(f"{manifest.key}: the stored {kind} attributes do not form a matrix ({what})",
                               manifest.key) from exc
