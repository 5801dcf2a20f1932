"""Nested dicts of arrays stored as a tree of raw arrays (``dict2cloud`` / ``cloud2dict``).

``dict2cloud('grp', {'a': x, 'sub': {'b': y}})`` writes the raw arrays
``grp/a`` and ``grp/sub/b``; there is no index object, as in cottoncandy 0.4.0.
``cloud2dict`` walks the tree back into nested dicts. Beyond 0.4.0, a
sub-directory that holds a stored dask array or sparse matrix is loaded as
that array rather than as a dict of its parts.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..errors import ArrayFormatError, ObjectNotFoundError
from ..format.manifests import is_dask_manifest, is_sparse_manifest
from ..format.metadata import is_array_metadata
from ..transfer import arrayio, listing
from ..transfer.objectio import read_body

if TYPE_CHECKING:  # pragma: no cover
    from ..interface import Interface

logger = logging.getLogger(__name__)

_THREADS = 8


def _check_name(name: Any, parent: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"dict2cloud: keys must be strings, got {name!r} in {parent!r}")
    if not name or name in (".", "..") or "/" in name:
        raise ValueError(f"dict2cloud: key {name!r} in {parent!r} is not a valid name (empty, '.', '..' or has '/')")
    return name


def _split_compression(metadata: Mapping[str, str]) -> tuple[Any, dict[str, str]]:
    """Take ``compression`` out of the user metadata (0.4.0 passed it on to upload_raw_array).

    The value (``'True'``, ``'False'``, a codec name: the Interface turned it
    into a string) is read by :func:`cottoncandy.codecs.normalize_compression`
    when the leaves are encoded; without one the leaves get the default codec.
    """
    rest = dict(metadata)
    return rest.pop("compression", True), rest


def dict2cloud(interface: "Interface", key: str, array_dict: Mapping[str, Any],
               metadata: Mapping[str, str] | None = None) -> None:
    """Store a (nested) dict of arrays: one raw array per leaf, sub-dicts as sub-directories.

    Parameters
    ----------
    interface : Interface
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
    compression, user_meta = _split_compression(metadata or {})
    leaves: list[tuple[str, Any, dict[str, str]]] = []

    def collect(prefix: str, mapping: Mapping[str, Any]) -> None:
        for name, value in mapping.items():
            child = f"{prefix}/{_check_name(name, prefix)}"
            if isinstance(value, Mapping):
                collect(child, value)
            else:
                leaves.append((child, value, user_meta if isinstance(value, np.ndarray) else {}))

    collect(key, array_dict)
    backend = interface.backend

    def upload(leaf: tuple[str, Any, dict[str, str]]) -> None:
        child, value, meta = leaf
        arrayio.upload_raw(backend, child, value, compression, meta, None)

    if leaves:
        with ThreadPoolExecutor(min(_THREADS, len(leaves)), "cc-dict2cloud") as pool:
            list(pool.map(upload, leaves))
    logger.info('uploaded %d arrays in "%s"', len(leaves), key)


def load_stored_prefix(interface: "Interface", prefix: str, lazy: bool = False) -> Any:
    """The dask array or sparse matrix stored under ``prefix``, or ``None`` if it holds neither.

    Parameters
    ----------
    interface : Interface
    prefix : str
    lazy : bool
        Return a dask array as it is instead of computing it.
    """
    manifest_key = f"{prefix}/metadata.json"
    try:
        info = interface.backend.head(manifest_key)
    except ObjectNotFoundError:
        return None
    if is_array_metadata(info.metadata) or info.size > (1 << 26):
        return None
    try:
        manifest = json.loads(read_body(interface.backend, manifest_key))
    except (ValueError, UnicodeDecodeError):
        return None
    if is_dask_manifest(manifest):
        lazy_array = interface.download_dask_array(prefix)
        return lazy_array if lazy else lazy_array.compute()
    if is_sparse_manifest(manifest):
        return interface.download_sparse_array(prefix)
    return None


def _load_object(interface: "Interface", key: str) -> Any:
    try:
        return arrayio.download_raw(interface.backend, key, None)
    except ArrayFormatError as exc:
        logger.warning("cloud2dict: %s is not a raw array (%s); its value is None", key, exc)
        return None


def cloud2dict(interface: "Interface", key: str, keys: Any = None) -> dict:
    """Load a directory of raw arrays as a nested dict.

    Parameters
    ----------
    interface : Interface
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
    backend = interface.backend
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
            loaded = pool.map(lambda n: _load_object(interface, f"{key}/{n}" if key else n), objects)
            result.update(zip(objects, loaded))
    for name, is_dir in names:
        if is_dir:
            full = f"{key}/{name}" if key else name
            special = load_stored_prefix(interface, full)
            result[name] = special if special is not None else cloud2dict(interface, full)
    logger.info('downloaded %d entries in "%s"', len(result), key)
    return {name: result[name] for name, _ in names}
