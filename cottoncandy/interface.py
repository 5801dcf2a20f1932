"""The user-facing Interface: cottoncandy 0.4.0's method names over a storage backend.

The Interface holds a :class:`~cottoncandy.backends.base.StorageBackend` and
delegates: object and file transfers to :mod:`cottoncandy.transfer.objectio`,
raw arrays to :mod:`cottoncandy.transfer.arrayio`, listings to
:mod:`cottoncandy.transfer.listing`, the chunked/sparse/grouped formats and
the browser to :mod:`cottoncandy.extensions`, and 0.4.0's lower-level methods
(boto3 objects) to :attr:`Interface.backend_interface`
(:mod:`cottoncandy.backends.legacy`). Backends are made by
:func:`cottoncandy.backends.connect.make_backend`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Any, Mapping

import numpy as np
from typing_extensions import override

from .backends import legacy
from .backends.base import StorageBackend
from .errors import ObjectNotFoundError
from .extensions import browser, dask_arrays, groups, sparse_arrays
from .format.compression import DEFAULT_COMPRESSION
from .paths import has_magic, normalize_key, normalize_prefix
from .transfer import arrayio, listing, objectio
from .transfer.progress import ProgressArg
from .usermeta import string_metadata

logger = logging.getLogger(__name__)


class Interface:
    """Read and write arrays and objects in one bucket.

    Use :func:`cottoncandy.get_interface` to make one. Method names, argument
    names and return types follow cottoncandy 0.4.0; arguments that only
    tuned 0.4.0's transfers (``acl``, ``threads``, ``buffersize``) are
    accepted and ignored.

    Parameters
    ----------
    backend : StorageBackend
    progress : bool or callable
        Default progress reporting for big transfers (``True``: a tqdm bar).
    """

    def __init__(self, backend: StorageBackend, progress: ProgressArg = False):
        self.backend = backend
        self.progress = progress
        self._backend_interface: legacy.BackendInterface | None = None

    @override
    def __repr__(self) -> str:
        return f"<cottoncandy.Interface {self.backend!r}>"

    @property
    def bucket_name(self) -> str | None:
        """Name of the current bucket (the directory for the local backend)."""
        return self.backend.bucket

    # -- buckets -----------------------------------------------------------
    def exists_bucket(self, bucket_name: str) -> bool:
        """Tell whether ``bucket_name`` exists."""
        return self.backend.exists_bucket(bucket_name)

    def create_bucket(self, bucket_name: str, acl: str | None = None) -> None:
        """Create a bucket and make it the current one."""
        self.backend.create_bucket(bucket_name)
        self.set_bucket(bucket_name)

    def rm_bucket(self, bucket_name: str) -> None:
        """Remove an empty bucket."""
        self.backend.remove_bucket(bucket_name)

    def set_bucket(self, bucket_name: str) -> None:
        """Switch to another existing bucket."""
        if not self.backend.exists_bucket(bucket_name):
            raise ObjectNotFoundError(f'bucket "{bucket_name}" does not exist', bucket_name)
        self.backend = self.backend.with_bucket(bucket_name)

    def show_buckets(self) -> list[str]:
        """Return (and log) the names of the buckets these credentials see."""
        names = self.backend.list_buckets()
        logger.info("buckets: %s", ", ".join(names))
        return names

    def get_size(self, object_name: str | None = None) -> int:
        """Size in bytes of one object, or of the whole bucket when no name is given."""
        if object_name is not None:
            return self.backend.head(normalize_key(object_name)).size
        return sum(info.size for info in self.backend.iter_objects(""))

    # -- 0.4.0's lower-level API (boto3 objects on S3) ------------------------
    @property
    def backend_interface(self) -> legacy.BackendInterface:
        """0.4.0's client object: ``bucket_name``, ``get_bucket()``, ``list_objects()``, ``size``,
        ``get_s3_object()``...; on S3 also ``url`` and ``connection`` (a boto3 S3 resource),
        on a local store ``path``."""
        if self._backend_interface is None or self._backend_interface.backend is not self.backend:
            self._backend_interface = legacy.for_backend(self.backend)
        return self._backend_interface

    def get_bucket(self):
        """The current bucket: a boto3 ``Bucket`` on S3; on a local store an object with
        ``name`` and ``objects`` (``all()``, ``filter(Prefix=...)``, ``limit(n)``)."""
        return self.backend_interface.get_bucket()

    def get_objects(self, **kwargs: Any):
        """The bucket's objects, at most ``limit`` (default 1000, as in 0.4.0).

        Keywords as in 0.4.0: ``filter=dict(Prefix='path/')``, ``limit``,
        ``page_size``. Returns a boto3 ``ObjectSummary`` collection on S3, a
        list of objects with ``key``, ``size``, ``last_modified``, ``e_tag``
        on a local store.
        """
        return self.backend_interface.list_objects(**kwargs)

    def get_bucket_objects(self, **kwargs: Any):
        """Deprecated name of :meth:`get_objects` (as in 0.4.0)."""
        warnings.warn("Deprecated. Use get_objects() instead", DeprecationWarning, stacklevel=2)
        return self.get_objects(**kwargs)

    def get_bucket_size(self, limit: int = 10**6, page_size: int = 10**6) -> int:
        """Deprecated name of :meth:`get_size`: bytes held by all objects of the bucket."""
        warnings.warn("Deprecated, use get_size() instead", DeprecationWarning, stacklevel=2)
        return self.backend_interface.size

    def get_object(self, object_name: str, bucket_name: str | None = None):
        """One object: a boto3 ``Object`` on S3 (lazy, as in 0.4.0); on a local store an object
        with ``key``, ``size``, ``last_modified``, ``e_tag``, ``metadata`` (``ObjectNotFoundError`` if missing)."""
        return self.backend_interface.get_s3_object(object_name, bucket_name)

    def get_object_owner(self, object_name: str) -> dict[str, str]:
        """Return (and log) the object's owner: its ACL's ``{'DisplayName', 'ID'}`` on S3 (else the
        ``s3cmd-attrs`` metadata), the file's user on a local store. 0.4.0 printed it."""
        self.exists_object(object_name, raise_err=True)
        owner = self.backend_interface.get_owner(object_name)
        logger.info("%s", owner)
        return owner

    def show_objects(self, limit: int = 1000, page_size: int = 1000) -> list[str]:
        """Return (and log at INFO) one line per object, name, date and size, as 0.4.0 printed them."""
        lines = legacy.describe(list(self.get_objects(limit=limit, page_size=page_size)))
        logger.info("\n".join(lines))
        return lines

    def glob_s3(self, pattern: str, **kwargs: Any) -> list[str]:
        """0.4.0's name of :meth:`glob` on S3 (the same here on every backend)."""
        return self.glob(pattern, **kwargs)

    # -- names and listings ------------------------------------------------
    @staticmethod
    def pathjoin(a: str, *p: str) -> str:
        """Join key parts with ``/``; a part starting with ``/`` restarts the path (like 0.4.0)."""
        path = a
        for part in p:
            if part.startswith("/") or not path:
                path = part
            else:
                path = path.rstrip("/") + "/" + part
        return path

    def exists_object(self, object_name: str, bucket_name: str | None = None, raise_err: bool = False) -> bool:
        """Tell whether an object with exactly this key exists (prefixes are not objects)."""
        backend = self.backend if bucket_name is None else self.backend.with_bucket(bucket_name)
        key = normalize_key(object_name)
        if listing.exists_object(backend, key):
            return True
        if raise_err:
            raise ObjectNotFoundError(f"no such object: {key}", key)
        return False

    def glob(self, pattern: str, **kwargs: Any) -> list[str]:
        """Sorted keys matching ``pattern``; ``*``/``?`` stay within a segment, ``**`` crosses.

        Without wildcards, ``pattern`` is a path: that key and every key below
        it (``glob('project/sub01.grp')`` lists the group), never a sibling
        sharing a string prefix. 0.4.0's ``page_size``/``limit`` keywords are accepted and ignored.
        """
        return listing.glob(self.backend, pattern)

    def lsdir(self, path: str = "/", limit: int | None = None) -> list[str]:
        """Full paths of the objects and sub-directories directly under ``path`` (sorted, no trailing ``/``)."""
        names = [name.rstrip("/") for name in listing.list_level(self.backend, path)]
        return names if limit is None else names[:limit]

    def ls(self, pattern: str = "", page_size: int | None = None, limit: int | None = None,
           verbose: bool = False) -> list[str]:
        """Like :meth:`lsdir`, and with wildcards, the entries at the pattern's depth that match it."""
        pattern = normalize_key(pattern, allow_empty=True)
        if pattern.endswith("/*"):
            pattern = pattern[:-2]
        names = listing.glob_entries(self.backend, pattern) if has_magic(pattern) else self.lsdir(pattern)
        if verbose:
            logger.info("\n".join(names))
        return names if limit is None else names[:limit]

    def search(self, pattern: str, **kwargs: Any) -> list[str]:
        """Keys matching a glob pattern, each logged with its size (0.4.0 printed them)."""
        keys = self.glob(pattern)
        for key in keys:
            logger.info("%s", key)
        logger.info('found %d objects matching "%s"', len(keys), pattern)
        return keys

    # -- deleting, copying -------------------------------------------------
    def rm(self, object_name: str, recursive: bool = False, delete: bool = True) -> bool:
        """Delete an object, or with ``recursive=True`` everything below a directory.

        Returns ``True`` if something was deleted, ``False`` if nothing was:
        nothing matched, or ``object_name`` is a directory and ``recursive`` is
        false (a warning says to use it, as 0.4.0 printed; its documented
        ``cci.rm('data/experiment')`` must not stop a script). Never deletes
        siblings that only share a string prefix.
        """
        key = normalize_key(object_name).rstrip("/")
        if not object_name.endswith("/") and listing.exists_object(self.backend, key):
            self.backend.delete([key])
            return True
        if listing.is_prefix(self.backend, key):
            if not recursive:
                logger.warning("cannot remove '%s': it is a directory; use recursive=True to remove the branch", key)
                return False
            count = listing.remove_tree(self.backend, key)
            logger.info("deleted %d objects under %s/", count, key)
            return True
        logger.warning("nothing found under '%s'", key)
        return False

    def cp(self, source_name: str, dest_name: str, source_bucket: str | None = None,
           dest_bucket: str | None = None, overwrite: bool = False) -> str:
        """Copy an object (with its metadata); return the destination key.

        Raises
        ------
        FileExistsError
            The destination exists and ``overwrite`` is false.
        """
        src_backend = self.backend if source_bucket is None else self.backend.with_bucket(source_bucket)
        dst_backend = src_backend if dest_bucket is None else self.backend.with_bucket(dest_bucket)
        src, dst = normalize_key(source_name), normalize_key(dest_name)
        if not overwrite and listing.exists_object(dst_backend, dst):
            raise FileExistsError(f"{dst} exists; pass overwrite=True to replace it")
        if dst_backend is src_backend:
            src_backend.copy(src, dst)
        else:
            stream, info = src_backend.open_stream(src)
            with contextlib.closing(stream):
                dst_backend.write(dst, stream, info.metadata)
        return dst

    def mv(self, source_name: str, dest_name: str, source_bucket: str | None = None,
           dest_bucket: str | None = None, overwrite: bool = False) -> str:
        """Move an object: copy it, then delete the source; return the destination key."""
        dst = self.cp(source_name, dest_name, source_bucket, dest_bucket, overwrite)
        src_backend = self.backend if source_bucket is None else self.backend.with_bucket(source_bucket)
        src_backend.delete([normalize_key(source_name)])
        return dst

    # -- plain objects and files -------------------------------------------
    def upload_object(self, object_name: str, body: Any, acl: str | None = None, threads: int | None = None,
                      **metadata: str) -> None:
        """Store ``body`` (bytes or a readable binary file) with optional user metadata."""
        self._put(object_name, body, metadata)

    def _put(self, object_name: str, body: Any, metadata: Mapping[str, Any]) -> None:
        self.backend.write(normalize_key(object_name), body, string_metadata(metadata))

    def download_object(self, object_name: str, threads: int | None = None) -> bytes:
        """Return an object's body as bytes."""
        return objectio.read_body(self.backend, normalize_key(object_name))

    def download_stream(self, object_name: str, threads: int | None = None) -> objectio.CloudStream:
        """Open an object for streaming: a readable binary file (``.read()``, ``with``) that also has
        0.4.0's ``.content`` (the backend's stream) and ``.metadata`` (a dict)."""
        return objectio.open_cloud_stream(self.backend, normalize_key(object_name))

    def upload_from_file(self, flname: str, object_name: str | None = None, ExtraArgs: Mapping | None = None,
                         threads: int | None = None) -> str:
        """Upload a local file; the key defaults to the file's path. Returns the key."""
        key = normalize_key(object_name if object_name is not None else os.fspath(flname))
        objectio.upload_file(self.backend, flname, key, self.progress)
        return key

    def upload_from_directory(self, disk_path: str, cloud_path: str | None = None, recursive: bool = False,
                              ExtraArgs: Mapping | None = None, threads: int | None = None) -> list[str]:
        """Upload the files of a local directory (and sub-directories if ``recursive``); return the keys."""
        return objectio.upload_directory(self.backend, disk_path, cloud_path, recursive, self.progress)

    def download_to_file(self, object_name: str, file_name: str, threads: int | None = None) -> str:
        """Write an object to a local file (atomically); return the file name."""
        objectio.download_file(self.backend, normalize_key(object_name), file_name, self.progress)
        return file_name

    def download_directory(self, directory: str, disk_name: str) -> list[str]:
        """Download every object below ``directory`` into the local directory ``disk_name``; return the files."""
        return objectio.download_directory(self.backend, normalize_prefix(directory), disk_name, self.progress)

    def upload_json(self, object_name: str, ddict: Any, acl: str | None = None, threads: int = 1,
                    **metadata: str) -> None:
        """Store a JSON-serialisable value."""
        self._put(object_name, objectio.to_json(ddict), metadata)

    def download_json(self, object_name: str, threads: int = 1) -> Any:
        """Load a JSON object."""
        key = normalize_key(object_name)
        return objectio.from_json(self.download_object(key), key)

    def upload_pickle(self, object_name: str, data_object: Any, acl: str | None = None,
                      threads: int | None = None, **metadata: str) -> None:
        """Store any picklable Python object."""
        import pickle

        self._put(object_name, pickle.dumps(data_object), metadata)

    def download_pickle(self, object_name: str, threads: int | None = None) -> Any:
        """Load a pickled object. Only unpickle data you trust."""
        import pickle

        return pickle.loads(self.download_object(object_name))

    # -- arrays ------------------------------------------------------------
    def upload_npy_array(self, object_name: str, array: np.ndarray, acl: str | None = None,
                         threads: int | None = None, **metadata: str) -> None:
        """Store an array in ``.npy`` format (readable by ``np.load`` after download)."""
        arrayio.upload_npy(self.backend, normalize_key(object_name), array, string_metadata(metadata))

    def download_npy_array(self, object_name: str, threads: int | None = None) -> np.ndarray:
        """Load an array stored in ``.npy`` format."""
        key = normalize_key(object_name)
        return arrayio.download_npy(self.backend, key)

    def upload_raw_array(self, object_name: str, array: np.ndarray, compression: str | bool | None = DEFAULT_COMPRESSION,
                         acl: str | None = None, threads: int | None = None, progress: ProgressArg = None,
                         **metadata: str) -> None:
        """Store an array's bytes with ``dtype``/``shape``/``compression``/``order`` metadata.

        Parameters
        ----------
        object_name : str
        array : numpy.ndarray
            Any shape and order; written as C-order bytes. Object arrays are refused.
        compression : str or bool
            ``False``/``None`` for raw bytes, ``'gzip'``, or a numcodecs id
            (``'Zstd'``, ``'LZ4'``, ``'Blosc'``...). ``True`` means the default,
            :data:`cottoncandy.format.compression.DEFAULT_COMPRESSION` (one rule for every
            API: :func:`cottoncandy.format.compression.normalize_compression`).
        progress : bool or callable, optional
            Overrides the Interface's progress setting for this call.
        **metadata : str
            Extra user metadata (must not use the reserved names). 0.4.0's
            deprecated ``gzip=True``/``False`` still means ``compression='gzip'``/``False``.
        """
        if "gzip" in metadata:
            warnings.warn("Deprecated keyword argument `gzip`. Use `compression='gzip'` instead",
                          DeprecationWarning, stacklevel=2)
            compression = "gzip" if metadata.pop("gzip") else False
        arrayio.upload_raw(self.backend, normalize_key(object_name), array, compression,
                           string_metadata(metadata), self._progress(progress))

    def download_raw_array(self, object_name: str, buffersize: int | None = None, threads: int | None = None,
                           progress: ProgressArg = None, **kwargs: Any) -> np.ndarray:
        """Load an array stored by :meth:`upload_raw_array` (or by cottoncandy 0.4.0)."""
        return arrayio.download_raw(self.backend, normalize_key(object_name), self._progress(progress))

    def _progress(self, progress: ProgressArg) -> ProgressArg:
        return self.progress if progress is None else progress

    # -- chunked, sparse and grouped arrays (need the dask / scipy extras) --
    def upload_dask_array(self, object_name: str, arr: Any, axis: int | None = -1, buffersize: int | None = None,
                          threads: int | None = None, progress: ProgressArg = None, **metakwargs: str) -> None:
        """Store a numpy or dask array as chunks ``<name>/pt0000...`` plus ``<name>/metadata.json``."""
        dask_arrays.upload_dask_array(self.backend, normalize_key(object_name), arr, axis, buffersize,
                                      self._progress(progress), string_metadata(metakwargs))

    def download_dask_array(self, object_name: str, dask_name: str = "array", threads: int | None = None):
        """Open a stored dask array lazily: only the chunks a computation touches are downloaded."""
        return dask_arrays.download_dask_array(self.backend, normalize_key(object_name), dask_name)

    def open_dask_array(self, object_name: str, chunks: Any = "auto"):
        """Open an uncompressed raw array lazily as a dask array whose chunks are ranged GETs."""
        return dask_arrays.open_dask_array(self.backend, normalize_key(object_name), chunks)

    def upload_sparse_array(self, object_name: str, arr: Any, threads: int | None = None) -> None:
        """Store a scipy.sparse matrix (csr, csc, coo, bsr, dia; others as csr)."""
        sparse_arrays.upload_sparse_array(self.backend, normalize_key(object_name), arr)

    def download_sparse_array(self, object_name: str, threads: int | None = None):
        """Load a scipy.sparse matrix stored by :meth:`upload_sparse_array`."""
        return sparse_arrays.download_sparse_array(self.backend, normalize_key(object_name))

    def dict2cloud(self, object_name: str, array_dict: Mapping[str, Any], acl: str | None = None,
                   verbose: bool = True, threads: int | None = None, **metadata: str) -> None:
        """Store a (nested) dict of arrays: one raw array per leaf, sub-dicts as sub-directories."""
        groups.dict2cloud(self.backend, normalize_key(object_name), array_dict, string_metadata(metadata))

    def cloud2dict(self, object_root: str, verbose: bool = True, keys: Any = None, threads: int | None = None,
                   **metadata: str) -> dict:
        """Load a directory of raw arrays as a nested dict (only ``keys`` if given)."""
        return groups.cloud2dict(self.backend, normalize_key(object_root), keys)

    def cloud2dataset(self, object_root: str, **metadata: str):
        """A browser object rooted at ``object_root``."""
        return browser.make_browser(self.backend, normalize_key(object_root, allow_empty=True), self.progress)

    def get_browser(self):
        """A tab-completion browser rooted at the bucket root."""
        return browser.make_browser(self.backend, "", self.progress)
