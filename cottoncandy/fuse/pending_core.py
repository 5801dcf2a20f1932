"""Facts of the storage format the mount uses, waiting for their home in the core.

Issue 12 gives each of these one home in :mod:`cottoncandy.format.manifests`
and :mod:`cottoncandy.format.metadata`, shared with the Python API. Until
those land, the mount calls them here and nowhere else, each with the
signature the core version has (a method of the manifest where the core's is
one: it is taken here as the first argument). Switching is then one import
line per caller, and deleting this module.

Nothing here does I/O.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ArrayFormatError
from ..manifests import (
    SPARSE_ATTRS,
    DaskManifest,
    SparseManifest,
    is_dask_manifest,
    is_sparse_manifest,
    parse_dask_manifest,
    parse_sparse_manifest,
)
from ..metadata import is_array_metadata, normalize_metadata

#: Name of the manifest object of a dask or sparse prefix.
MANIFEST_NAME = "metadata.json"
#: Manifests larger than this are not believed (groups.py uses the same ``1 << 26``).
MAX_MANIFEST_BYTES = 64 << 20


def manifest_key(prefix: str) -> str:
    """Key of the manifest of ``prefix`` (``'a/b'`` or ``'a/b/'`` -> ``'a/b/metadata.json'``)."""
    return prefix.rstrip("/") + "/" + MANIFEST_NAME


def may_be_manifest(size: int, metadata: Mapping[str, str] | None) -> bool:
    """Whether a ``metadata.json`` with this HEAD is worth reading: not too big, not a raw array."""
    return size <= MAX_MANIFEST_BYTES and not is_array_metadata(metadata)


def classify(data: bytes | str | Mapping[str, Any] | None, key: str | None = None
             ) -> DaskManifest | SparseManifest | None:
    """The manifest a ``metadata.json`` holds, or ``None`` when it is none (a plain directory).

    Parameters
    ----------
    data : bytes, str, dict or None
        The body, or its decoded JSON object.
    key : str, optional
        Key of the manifest, for error messages.

    Raises
    ------
    ArrayFormatError
        When it claims to be a dask or sparse manifest but is not a valid one.
    """
    if data is None:
        return None
    if not isinstance(data, Mapping):
        try:
            data = json.loads(data)
        except ValueError:  # includes UnicodeDecodeError
            return None
        if not isinstance(data, dict):
            return None
    if is_dask_manifest(data):
        return parse_dask_manifest(data, key)
    if is_sparse_manifest(data):
        return parse_sparse_manifest(data, key)
    return None


def stored_compression(metadata: Mapping[str, str] | None) -> str:
    """The compression a raw array's user metadata states, as stored; never raises.

    The legacy ``gzip`` flag wins, as when reading: ``'gzip'`` for a true flag,
    ``'False'`` for a false one, and the flag's own text when it is neither
    (reading such an array fails: it must not look uncompressed).
    """
    meta = normalize_metadata(metadata)
    if "gzip" in meta:
        flag = meta["gzip"].strip().lower()
        if flag in ("true", "1"):
            return "gzip"
        if flag in ("false", "0", "none", ""):
            return "False"
        return meta["gzip"]
    return meta.get("compression", "False")


def sparse_part_keys(manifest: SparseManifest) -> dict[str, str]:
    """Attribute name -> key of its raw array, for the attributes ``manifest.type`` needs.

    Raises
    ------
    ArrayFormatError
        When the manifest's ``attrs`` lack one of them.
    """
    needed = SPARSE_ATTRS[manifest.type]
    missing = [a for a in needed if a not in manifest.attrs]
    if missing:
        raise ArrayFormatError(f"{manifest.key}: a {manifest.type} matrix needs attrs {missing}", manifest.key)
    return {attr: manifest.attr_key(attr) for attr in needed}


def assemble_sparse(manifest: SparseManifest, arrays: Mapping[str, np.ndarray]) -> Any:
    """The scipy.sparse matrix (of ``manifest.type`` and ``manifest.shape``) made of ``arrays``.

    Raises
    ------
    ArrayFormatError
        An attribute is missing, or scipy refuses the arrays.
    ImportError
        Without scipy.
    """
    import scipy.sparse as sp

    kind, shape = manifest.type, manifest.shape
    try:
        if kind == "coo":
            return sp.coo_matrix((arrays["data"], (arrays["row"], arrays["col"])), shape=shape)
        if kind == "dia":
            return sp.dia_matrix((arrays["data"], arrays["offsets"]), shape=shape)
        build = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "bsr": sp.bsr_matrix}[kind]
        return build((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ArrayFormatError(f"{manifest.key}: cannot build the {kind} matrix: {exc}", manifest.key) from exc


def chunk_range(manifest: DaskManifest, axis: int, lo: int, hi: int) -> range:
    """Chunk indices along ``axis`` that meet elements ``[lo, hi)`` (may include empty chunks)."""
    offsets = manifest.offsets(axis)
    first = bisect.bisect_right(offsets, lo) - 1
    last = bisect.bisect_left(offsets, hi)
    return range(max(first, 0), min(last, len(offsets) - 1))


def chunks_touching(manifest: DaskManifest, box: Sequence[slice]) -> list[tuple[int, ...]]:
    """Non-empty chunk indices (C order) meeting a box of ``slice(start, stop)`` per axis."""
    ranges = [chunk_range(manifest, axis, s.start, s.stop) for axis, s in enumerate(box)]
    return [index for index in itertools.product(*ranges) if all(manifest.chunk_shape(index))]
