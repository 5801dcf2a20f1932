"""scipy.sparse matrices in cottoncandy 0.4.0's layout.

A matrix ``<name>`` is stored as one raw array per attribute
(``<name>/data``, ``<name>/indices``, ``<name>/indptr`` for csr/csc/bsr;
``row``, ``col``, ``data`` for coo; ``data``, ``offsets`` for dia) plus
``<name>/metadata.json`` = ``{"type", "attrs", "shape"}``. Formats without a
layout of their own (lil, dok) are stored as csr.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import ArrayFormatError
from ..format.codecs import DEFAULT_COMPRESSION
from ..format.manifests import SPARSE_ATTRS, parse_sparse_manifest, sparse_manifest_json
from ..transfer import arrayio
from ..transfer.objectio import read_body

if TYPE_CHECKING:  # pragma: no cover
    from ..interface import Interface

logger = logging.getLogger(__name__)

MANIFEST_NAME = "metadata.json"
_ALL_ATTRS = frozenset(a for attrs in SPARSE_ATTRS.values() for a in attrs)


def _scipy_sparse():
    try:
        import scipy.sparse as sp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("sparse arrays need scipy: pip install 'cottoncandy[sparse]'") from exc
    return sp


def upload_sparse_array(interface: "Interface", key: str, arr: Any) -> None:
    """Store a scipy.sparse matrix or array under the prefix ``key``.

    Parameters
    ----------
    interface : Interface
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
    sp = _scipy_sparse()
    if not sp.issparse(arr):
        raise TypeError(f"expected a scipy.sparse matrix, got {type(arr).__name__}")
    if arr.ndim != 2:
        raise ValueError(f"only 2-d sparse arrays can be stored, got {arr.ndim}-d")
    kind = arr.format
    if kind not in SPARSE_ATTRS:
        arr = arr.tocsr()
        kind = "csr"
    attrs = SPARSE_ATTRS[kind]
    backend = interface.backend
    for attr in attrs:
        arrayio.upload_raw(backend, f"{key}/{attr}", getattr(arr, attr), DEFAULT_COMPRESSION, {}, None)
    backend.write(f"{key}/{MANIFEST_NAME}", sparse_manifest_json(kind, attrs, arr.shape), {})
    prefix = f"{key}/"
    stale = [info.key for info in backend.list_dir(prefix).objects
             if info.key[len(prefix):] in _ALL_ATTRS - set(attrs)]
    if stale:
        backend.delete(stale)
    logger.info("stored %s sparse %s %s under %s/", kind, arr.shape, arr.dtype, key)


def download_sparse_array(interface: "Interface", key: str) -> Any:
    """Load a sparse matrix stored by :func:`upload_sparse_array` (or by cottoncandy 0.4.0).

    Parameters
    ----------
    interface : Interface
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
    sp = _scipy_sparse()
    backend = interface.backend
    manifest_key = f"{key}/{MANIFEST_NAME}"
    manifest = parse_sparse_manifest(read_body(backend, manifest_key), manifest_key)
    needed = SPARSE_ATTRS[manifest.type]
    missing = [a for a in needed if a not in manifest.attrs]
    if missing:
        raise ArrayFormatError(f"{manifest_key}: a {manifest.type} matrix needs attrs {missing}", manifest_key)
    parts = {attr: arrayio.download_raw(backend, manifest.attr_key(attr), None) for attr in needed}
    shape = manifest.shape
    try:
        if manifest.type == "coo":
            return sp.coo_matrix((parts["data"], (parts["row"], parts["col"])), shape=shape)
        if manifest.type == "dia":
            return sp.dia_matrix((parts["data"], parts["offsets"]), shape=shape)
        build = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "bsr": sp.bsr_matrix}[manifest.type]
        return build((parts["data"], parts["indices"], parts["indptr"]), shape=shape)
    except (ValueError, TypeError, IndexError) as exc:
        raise ArrayFormatError(f"{key}: stored {manifest.type} attributes are inconsistent ({exc})", key) from exc
