"""Turn listed objects and prefixes into entries: what each key is, decided once.

An object is a raw array when its metadata says so (from the index or a
HEAD), else a plain file; a prefix is a dask or sparse file when its
``metadata.json`` is such a manifest, else a directory. A directory costs one
``/``-delimited LIST; the HEADs of its objects and of its sub-prefixes'
manifests go out in one batch, and the manifests found are read in parallel.
What cannot be used becomes a :class:`~cottoncandy.fuse.entries.BrokenEntry`
(``EIO`` on that file only), or a directory when a prefix merely looks odd.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ..backends.base import ObjectInfo
from ..errors import CottonCandyError
from ..format.manifests import DaskManifest, SparseManifest, classify, is_dask_manifest, manifest_key
from ..format.metadata import ArrayMeta, is_array_metadata
from .entries import (
    BrokenEntry,
    DaskArrayEntry,
    Directory,
    Entry,
    ObjectFile,
    RawArrayEntry,
    SparseMatrixEntry,
)
from .names import NAME_MAX, array_name, assign_names, basename, is_hidden_key, name_bytes
from .objectmeta import HeadResult, ObjectMetadata
from .sources import DaskArrayFile, ObjectBody, RawArrayFile, SparseMatrixFile

logger = logging.getLogger(__name__)


class Classifier:
    """Entries for keys of one bucket.

    Parameters
    ----------
    objects : ObjectMetadata
        HEADs, the index and manifest bodies.
    sparse_files : bool
        Show sparse prefixes as ``.npz`` files (the read path can build them:
        scipy is installed); otherwise they are directories.
    workers : int
        Threads reading manifest bodies.
    """

    def __init__(self, objects: ObjectMetadata, sparse_files: bool = False, workers: int = 8):
        self.objects = objects
        self.sparse_files = sparse_files
        self.mount_time = time.time()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cc-tree")

    def close(self) -> None:
        """Stop the thread pool."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def directory(self, key: str) -> Directory:
        """The directory entry of prefix ``key`` (without its ``/``; ``''`` for the bucket root)."""
        return Directory(name=basename(key), key=key, mtime=self.mount_time)

    # -- one key ------------------------------------------------------------
    def object_entry(self, info: ObjectInfo) -> Entry:
        """The entry of an object, from its HEAD."""
        name, key, mtime = basename(info.key), info.key, info.last_modified
        if not is_array_metadata(info.metadata):
            return ObjectFile(name=name, key=key, mtime=mtime, size=info.size, info=info,
                              file=ObjectBody(key, info.etag, info.size))
        name = array_name(name)
        try:
            array = RawArrayFile(key, info.etag, info.size, ArrayMeta.from_metadata(info.metadata or {}, key))
            return RawArrayEntry(name=name, key=key, mtime=mtime, size=array.known_size, info=info, file=array)
        except CottonCandyError as exc:
            return BrokenEntry(name=name, key=key, mtime=mtime, size=0, info=info, error=exc)

    def prefix_entry(self, prefix: str, manifest: HeadResult) -> Entry:
        """The entry of ``prefix`` (ending in ``/``), from the HEAD of its ``metadata.json``."""
        if isinstance(manifest, Exception):
            logger.warning("cannot inspect %s: %s; showing it as a directory", prefix, manifest)
        elif manifest is not None:
            entry = self._manifest_entry(prefix.rstrip("/"), manifest)
            if entry is not None:
                return entry
        return self.directory(prefix.rstrip("/"))

    def _manifest_entry(self, key: str, info: ObjectInfo) -> Entry | None:
        """The file a manifest makes of prefix ``key``, or ``None`` for a plain directory."""
        try:
            data = self.objects.manifest_json(info)
        except CottonCandyError as exc:
            logger.warning("cannot read manifest %s: %s", info.key, exc)
            return None
        stem, mtime = basename(key), info.last_modified
        try:
            manifest = classify(data, info.key)
            if isinstance(manifest, DaskManifest):
                array = DaskArrayFile(manifest, etag=info.etag)
                return DaskArrayEntry(name=stem + DaskArrayEntry.extension, key=key, mtime=mtime,
                                      size=array.known_size, info=info, file=array)
        except CottonCandyError as exc:  # it claims to be an array but is not a valid one: EIO on open
            claimed = DaskArrayEntry if data is not None and is_dask_manifest(data) else SparseMatrixEntry
            if claimed is SparseMatrixEntry and not self.sparse_files:
                return None
            return BrokenEntry(name=stem + claimed.extension, key=key, mtime=mtime, size=0, info=info, error=exc)
        if isinstance(manifest, SparseManifest) and self.sparse_files:
            return SparseMatrixEntry(name=stem + SparseMatrixEntry.extension, key=key, mtime=mtime, size=None,
                                     info=info, file=SparseMatrixFile(manifest, info.etag))
        return None

    # -- a directory --------------------------------------------------------
    def entries(self, objects: Sequence[ObjectInfo], prefixes: Sequence[str]) -> list[Entry]:
        """Entries for listed objects and sub-prefixes: one batch of HEADs for everything unknown."""
        manifest_keys = [manifest_key(p) for p in prefixes]
        manifest_jobs = None
        if manifest_keys:  # the manifests' HEADs go out while the objects are described
            manifest_jobs = self._pool.submit(self.objects.heads_per_key, manifest_keys)
        described = self.objects.described(objects)
        entries: list[Entry] = []
        for o in objects:
            result = described.get(o.key)
            if isinstance(result, Exception):
                logger.warning("cannot HEAD %s: %s", o.key, result)
                entries.append(BrokenEntry(name=basename(o.key), key=o.key, mtime=o.last_modified, size=0,
                                           info=None, error=result))
            elif result is not None:
                entries.append(self.object_entry(result))
        manifests = manifest_jobs.result() if manifest_jobs is not None else {}
        found = {p: manifests[manifest_key(p)] for p in prefixes}
        with_manifest = [p for p, info in found.items() if isinstance(info, ObjectInfo)]
        # a manifest found means a body to read: fetch those in parallel
        read = dict(zip(with_manifest, self._pool.map(lambda p: self.prefix_entry(p, found[p]), with_manifest),
                        strict=True))
        entries.extend(read[p] if p in read else self.prefix_entry(p, found[p]) for p in prefixes)
        return entries

    def list_directory(self, prefix: str) -> dict[str, Entry]:
        """Name -> entry for the directory at ``prefix`` (``''`` or ending in ``/``): one LIST."""
        listing = self.objects.backend.list_dir(prefix)
        objects = [o for o in listing.objects if not is_hidden_key(o.key)]
        prefixes = [p for p in listing.prefixes if not is_hidden_key(p)]
        named = assign_names(self.entries(objects, prefixes))
        too_long = [n for n in named if name_bytes(n) > NAME_MAX]
        for name in too_long:  # the kernel could never look them up: a listing would only confuse
            logger.warning("%s: name of %d bytes is not shown (more than %d)", named.pop(name).key,
                           name_bytes(name), NAME_MAX)
        return named
