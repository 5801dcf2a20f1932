"""scipy.sparse matrices in cottoncandy 0.4.0's layout.

A matrix ``<name>`` is stored as one raw array per attribute
(``<name>/data``, ``<name>/indices``, ``<name>/indptr`` for csr/csc/bsr;
``row``, ``col``, ``data`` for coo; ``data``, ``offsets`` for dia) plus
``<name>/metadata.json`` = ``{"type", "attrs", "shape"}``. Formats without a
layout of their own (lil, dok) are stored as csr.
"""

from __future__ import annotations

import logging
from typing import Any

from ..backends.base import StorageBackend
from ..format.compression import DEFAULT_COMPRESSION
from ..format.manifests import SPARSE_ATTRS, SparseManifest, manifest_key, parse_sparse_manifest, sparse_manifest_json
from ..format.sparse import assemble_sparse, scipy_sparse
from ..transfer import arrayio
from ..transfer.objectio import read_body

logger = logging.getLogger(__name__)

_ALL_ATTRS = frozenset(a for attrs in SPARSE_ATTRS.values() for a in attrs)


def upload_sparse_array(backend: StorageBackend, key: str, arr: Any) -> None:
    """Store a scipy.sparse matrix or array under the prefix ``key``.

    Parameters
    ----------
    backend : StorageBackend
    key : str
    arr : scipy.sparse matrix or array
        csr, csc, coo, bsr and dia are stored as they are; other formats
        (lil, dok) are converted to csr first.

    Raises
    ------
    TypeError
        ``arr`` is not a scipy.sparse object.
    ValueError
        ``arr`` is not 2-d.

    Notes
    -----
    Attribute arrays use the default compression. Attributes left by a
    previous version of another format (``row`` after a coo, say) are removed.
    """
    sp = scipy_sparse()
    if not sp.issparse(arr):
        raise TypeError(f"expected a scipy.sparse matrix, got {type(arr).__name__}")
    if arr.ndim != 2:
        raise ValueError(f"only 2-d sparse arrays can be stored, got {arr.ndim}-d")
    kind = arr.format
    if kind not in SPARSE_ATTRS:
        arr = arr.tocsr()
        kind = "csr"
    attrs = SPARSE_ATTRS[kind]
    for attr in attrs:
        arrayio.upload_raw(backend, f"{key}/{attr}", getattr(arr, attr), DEFAULT_COMPRESSION, {}, None)
    backend.write(manifest_key(key), sparse_manifest_json(kind, attrs, arr.shape), {})
    prefix = f"{key}/"
    stale = [info.key for info in backend.list_dir(prefix).objects
             if info.key[len(prefix):] in _ALL_ATTRS - set(attrs)]
    if stale:
        backend.delete(stale)
    logger.info("stored %s sparse %s %s under %s/", kind, arr.shape, arr.dtype, key)


def download_sparse_array(backend: StorageBackend, key: str) -> Any:
    """Load a sparse matrix stored by :func:`upload_sparse_array` (or by cottoncandy 0.4.0).

    Parameters
    ----------
    backend : StorageBackend
    key : str

    Returns
    -------
    scipy.sparse matrix
        Of the stored format (``csr_matrix``, ``coo_matrix``...), as 0.4.0 returned.

    Raises
    ------
    ObjectNotFoundError
        No manifest, or a missing attribute array.
    ArrayFormatError
        Invalid manifest, or attribute arrays that do not form a valid matrix.
    """
    scipy_sparse()  # fail before any download when scipy is missing
    mkey = manifest_key(key)
    return load_sparse(backend, parse_sparse_manifest(read_body(backend, mkey), mkey))


def load_sparse(backend: StorageBackend, manifest: SparseManifest) -> Any:
    """Download the attribute arrays of a parsed sparse manifest and build the matrix (see :func:`download_sparse_array`)."""
    parts = {attr: arrayio.download_raw(backend, key, None) for attr, key in manifest.part_keys().items()}
    return assemble_sparse(manifest, parts)
