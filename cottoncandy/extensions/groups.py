"""Nested dicts of arrays stored as a tree of raw arrays (``dict2cloud`` / ``cloud2dict``).

``dict2cloud('grp', {'a': x, 'sub': {'b': y}})`` writes the raw arrays
``grp/a`` and ``grp/sub/b``; there is no index object, as in cottoncandy 0.4.0.
``cloud2dict`` walks the tree back into nested dicts. Beyond 0.4.0, a
sub-directory that holds a stored dask array or sparse matrix is loaded as
that array rather than as a dict of its parts.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import numpy as np

from ..backends.base import StorageBackend
from ..errors import ArrayFormatError, ObjectNotFoundError
from ..format.manifests import DaskManifest, SparseManifest, classify, manifest_key, may_be_manifest
from ..transfer import arrayio, listing
from ..transfer.objectio import read_body
from . import dask_arrays, sparse_arrays

logger = logging.getLogger(__name__)

_THREADS = 8


def _check_name(name: Any, parent: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"dict2cloud: keys must be strings, got {name!r} in {parent!r}")
    if not name or name in (".", "..") or "/" in name:
        raise ValueError(f"dict2cloud: key {name!r} in {parent!r} is not a valid name (empty, '.', '..' or has '/')")
    return name


def dict2cloud(backend: StorageBackend, key: str, array_dict: Mapping[str, Any],
               metadata: Mapping[str, str] | None = None) -> None:
    """Store a (nested) dict of arrays: one raw array per leaf, sub-dicts as sub-directories.

    Parameters
    ----------
    backend : StorageBackend
    key : str
        Root prefix of the group.
    array_dict : mapping
        Values are arrays (anything ``numpy.asarray`` accepts) or nested mappings.
    metadata : dict of str, optional
        User metadata put on every numpy-array leaf (as 0.4.0 did). A
        ``compression`` entry chooses the leaves' compression instead.

    Raises
    ------
    TypeError, ValueError
        A key is not a plain name (a string without ``/``).
    """
    user_meta = dict(metadata or {})
    # 0.4.0 passed a 'compression' entry on to upload_raw_array; the value (a string: 'True',
    # 'False', a codec name) is read when the leaves are encoded. Without one: the default codec.
    compression: Any = user_meta.pop("compression", True)
    leaves: list[tuple[str, Any, dict[str, str]]] = []

    def collect(prefix: str, mapping: Mapping[str, Any]) -> None:
        for name, value in mapping.items():
            child = f"{prefix}/{_check_name(name, prefix)}"
            if isinstance(value, Mapping):
                collect(child, value)
            else:
                leaves.append((child, value, user_meta if isinstance(value, np.ndarray) else {}))

    collect(key, array_dict)

    def upload(leaf: tuple[str, Any, dict[str, str]]) -> None:
        child, value, meta = leaf
        arrayio.upload_raw(backend, child, value, compression, meta, None)

    if leaves:
        with ThreadPoolExecutor(min(_THREADS, len(leaves)), "cc-dict2cloud") as pool:
            list(pool.map(upload, leaves))
    logger.info('uploaded %d arrays in "%s"', len(leaves), key)


def load_stored_prefix(backend: StorageBackend, prefix: str, lazy: bool = False) -> Any:
    """The dask array or sparse matrix stored under ``prefix``, or ``None`` if it holds neither.

    Parameters
    ----------
    backend : StorageBackend
    prefix : str
    lazy : bool
        Return a dask array as it is instead of computing it.

    Raises
    ------
    ArrayFormatError
        ``prefix/metadata.json`` claims to be a manifest but is not a valid one.
    """
    key = manifest_key(prefix)
    try:
        info = backend.head(key)
    except ObjectNotFoundError:
        return None
    if not may_be_manifest(info.size, info.metadata):
        return None
    body = read_body(backend, key)
    manifest = classify(body, key)
    if isinstance(manifest, DaskManifest):
        lazy_array = dask_arrays.lazy_dask_array(backend, manifest, body)
        return lazy_array if lazy else lazy_array.compute()
    if isinstance(manifest, SparseManifest):
        return sparse_arrays.load_sparse(backend, manifest)
    return None


def _load_object(backend: StorageBackend, key: str) -> Any:
    try:
        return arrayio.download_raw(backend, key, None)
    except ArrayFormatError as exc:
        logger.warning("cloud2dict: %s is not a raw array (%s); its value is None", key, exc)
        return None


def cloud2dict(backend: StorageBackend, key: str, keys: Any = None) -> dict:
    """Load a directory of raw arrays as a nested dict.

    Parameters
    ----------
    backend : StorageBackend
    key : str
        Root prefix (as given to :func:`dict2cloud`).
    keys : str or list of str, optional
        Load only these children (names relative to ``key``, may contain ``/``).

    Returns
    -------
    dict
        Name -> array for objects, name -> dict for sub-directories (or the
        array, for a stored dask array or sparse matrix). Objects that are not
        raw arrays map to ``None`` with a warning, as in 0.4.0.

    Raises
    ------
    ObjectNotFoundError
        Nothing is stored under ``key`` (0.4.0 printed a note and returned
        None), or a requested key does not exist.
    """
    if keys is None:
        entries = listing.list_level(backend, key)
        if not entries:
            raise ObjectNotFoundError(f'nothing found in "{key}"', key)
        base = len(key.rstrip("/")) + 1 if key else 0
        names = [(e[base:].rstrip("/"), e.endswith("/")) for e in entries]
    else:
        wanted = [keys] if isinstance(keys, str) else list(keys)
        names = []
        for name in wanted:
            full = f"{key}/{name}" if key else name
            if listing.exists_object(backend, full):
                names.append((name, False))
            elif listing.is_prefix(backend, full):
                names.append((name, True))
            else:
                raise ObjectNotFoundError(f"no such object or directory: {full}", full)
    result: dict[str, Any] = {}
    objects = [n for n, is_dir in names if not is_dir]
    if objects:
        with ThreadPoolExecutor(min(_THREADS, len(objects)), "cc-cloud2dict") as pool:
            loaded = pool.map(lambda n: _load_object(backend, f"{key}/{n}" if key else n), objects)
            result.update(zip(objects, loaded))
    for name, is_dir in names:
        if is_dir:
            full = f"{key}/{name}" if key else name
            special = load_stored_prefix(backend, full)
            result[name] = special if special is not None else cloud2dict(backend, full)
    logger.info('downloaded %d entries in "%s"', len(result), key)
    return {name: result[name] for name, _ in names}
