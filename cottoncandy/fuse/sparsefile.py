"""Build the ``.npz`` a sparse prefix is shown as (``scipy.sparse.save_npz`` format).

The attribute arrays (``data``, ``indices``, ``indptr``...) are raw arrays;
they are read through the mount's read path (so through its block cache and
codecs) and assembled into the scipy matrix the manifest describes.
"""

from __future__ import annotations

import importlib.util
import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ArrayFormatError, CottonCandyError
from ..format.manifests import SparseManifest
from ..format.metadata import ArrayMeta, is_array_metadata
from . import sources as src
from .entries import Entry

logger = logging.getLogger(__name__)


def scipy_available() -> bool:
    """Whether ``scipy.sparse`` can be imported."""
    return importlib.util.find_spec("scipy") is not None


def build_npz(manifest: SparseManifest, arrays: dict[str, np.ndarray]) -> bytes:
    """The ``save_npz`` bytes of the matrix made of ``arrays``.

    Parameters
    ----------
    manifest : SparseManifest
    arrays : dict
        Attribute name -> array, for every name in ``manifest.attrs``.

    Raises
    ------
    ArrayFormatError
        When scipy refuses the arrays (inconsistent lengths, for example).
    """
    import scipy.sparse as sp

    kind, shape = manifest.type, manifest.shape
    try:
        if kind in ("csr", "csc", "bsr"):
            cls = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "bsr": sp.bsr_matrix}[kind]
            matrix = cls((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        elif kind == "coo":
            matrix = sp.coo_matrix((arrays["data"], (arrays["row"], arrays["col"])), shape=shape)
        else:  # dia
            matrix = sp.dia_matrix((arrays["data"], arrays["offsets"]), shape=shape)
        buf = io.BytesIO()
        sp.save_npz(buf, matrix, compressed=False)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ArrayFormatError(f"{manifest.key}: cannot build the {kind} matrix: {exc}", manifest.key) from exc
    return buf.getvalue()


def make_builder(read_path: Any) -> Callable[[Entry, Any], bytes]:
    """A ``build_sparse(entry, tree)`` callback for :class:`~cottoncandy.fuse.tree.Tree`.

    Parameters
    ----------
    read_path : cottoncandy.fuse.reader.ReadPath
        Used to read and decode the attribute arrays.
    """

    def load(info: Any) -> np.ndarray:
        if info is None or not is_array_metadata(info.metadata):
            raise ArrayFormatError(f"{getattr(info, 'key', '?')}: sparse attribute is not a raw array")
        meta = ArrayMeta.from_metadata(info.metadata or {}, info.key)
        handle = read_path.open(src.RawArrayFile(info.key, info.etag, info.size, meta))
        try:
            data = handle.read(0, handle.size)
        finally:
            handle.release()
        return np.load(io.BytesIO(data), allow_pickle=False)

    def build(entry: Entry, tree: Any) -> bytes:
        manifest: SparseManifest = entry.manifest  # type: ignore[assignment]
        keys = {attr: manifest.attr_key(attr) for attr in manifest.attrs}
        heads = tree.heads(keys.values())
        try:
            arrays = {attr: load(heads[key]) for attr, key in keys.items()}
        except (ValueError, OSError) as exc:
            if isinstance(exc, CottonCandyError):
                raise
            raise ArrayFormatError(f"{entry.key}: cannot read sparse attributes: {exc}", entry.key) from exc
        return build_npz(manifest, arrays)

    return build
