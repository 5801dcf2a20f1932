"""The ``.npz`` a sparse prefix is shown as (``scipy.sparse.save_npz`` format), built by the read path.

The attribute arrays (``data``, ``indices``, ``indptr``...) are raw arrays;
they are read through the mount's read path (so through its block cache and
codecs), assembled into the scipy matrix the manifest describes, and saved
uncompressed. The built bytes are held in the block cache like any block, so
they count against ``--cache-size``; the sizes of files built once are
remembered apart (a few bytes each), so a ``stat`` after the bytes were
evicted costs nothing.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import threading
from collections.abc import Callable

import numpy as np
from cachetools import LRUCache

from ..errors import ArrayFormatError, CottonCandyError
from ..format.metadata import ArrayMeta
from ..format.sparse import assemble_sparse
from .cache import BlockCache
from .sources import RawArrayFile, SparseMatrixFile

logger = logging.getLogger(__name__)

#: Built files whose size is remembered.
MAX_SIZES = 1 << 14


def scipy_available() -> bool:
    """Whether ``scipy.sparse`` can be imported."""
    return importlib.util.find_spec("scipy") is not None


class SparseFiles:
    """Builds the ``.npz`` of sparse matrices and keeps the result in the block cache.

    Parameters
    ----------
    cache : BlockCache
        Where the built bytes are kept.
    read_array : callable
        ``read_array(source) -> bytes``: the ``.npy`` bytes of an attribute array.
    """

    def __init__(self, cache: BlockCache, read_array: Callable[[RawArrayFile], bytes]):
        self.cache = cache
        self._read_array = read_array
        self._sizes: LRUCache[object, int] = LRUCache(maxsize=MAX_SIZES)
        self._lock = threading.Lock()

    def size(self, source: SparseMatrixFile) -> int:
        """Size of the file; builds it unless a build of this version already told."""
        with self._lock:
            size = self._sizes.get(source.version)
        return size if size is not None else len(self.data(source))

    def data(self, source: SparseMatrixFile) -> bytes:
        """The file's bytes: from the block cache, or built (once, whoever else asks meanwhile).

        Raises
        ------
        ArrayFormatError
            An attribute array is missing or not a raw array, or scipy refuses them.
        CottonCandyError
            A storage failure while reading them.
        """
        with self._lock:
            hint = self._sizes.get(source.version, 0)
        data = self.cache.get_or_load(("npz", source.version), lambda: self._build(source), hint)
        with self._lock:
            self._sizes[source.version] = len(data)
        return data

    def _build(self, source: SparseMatrixFile) -> bytes:
        import scipy.sparse as sp

        manifest = source.manifest
        try:
            arrays = {attr: self._load(source, key) for attr, key in manifest.part_keys().items()}
        except (ValueError, OSError) as exc:
            if isinstance(exc, CottonCandyError):
                raise
            raise ArrayFormatError(f"{manifest.key}: cannot read sparse attributes: {exc}", manifest.key) from exc
        matrix = assemble_sparse(manifest, arrays)
        buf = io.BytesIO()
        try:
            sp.save_npz(buf, matrix, compressed=False)
        except (ValueError, TypeError) as exc:
            raise ArrayFormatError(f"{manifest.key}: cannot save the {manifest.type} matrix: {exc}",
                                   manifest.key) from exc
        logger.debug("built %s: %d bytes", manifest.key, buf.tell())
        return buf.getvalue()

    def _load(self, source: SparseMatrixFile, key: str) -> np.ndarray:
        info = source.parts.get(key)
        if info is None:
            raise ArrayFormatError(f"{source.manifest.key}: sparse attribute {key} is missing", key)
        meta = ArrayMeta.from_metadata(info.metadata or {}, info.key)  # not a raw array: ArrayFormatError
        data = self._read_array(RawArrayFile(info.key, info.etag, info.size, meta))
        array: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)
        return array

