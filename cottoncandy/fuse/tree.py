"""Map mount paths to entries, and entries to what an open file reads.

The tree answers *what is at this path* (:meth:`Tree.lookup`), *what is in
this directory* (:meth:`Tree.readdir`), *what is there now* when a file is
opened (:meth:`Tree.refresh`) and *what that file reads*
(:meth:`Tree.source`). It produces descriptors only; the read path builds and
serves the bytes. Its parts, each with one job:

* :mod:`cottoncandy.fuse.names` -- names from keys, and name collisions;
* :mod:`cottoncandy.fuse.classify` -- what each listed key is (one LIST per
  directory, HEADs in batches);
* :mod:`cottoncandy.fuse.objectmeta` -- HEADs, the persistent index and
  manifest bodies, cached;
* :mod:`cottoncandy.fuse.listings` -- directory contents for the TTL, one
  listing at a time per directory, sub-directories listed ahead.

A path whose directory was never listed is resolved by HEADing the few keys
that could claim its name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cachetools import TTLCache

from ..backends.base import ObjectInfo, StorageBackend
from ..errors import ArrayFormatError, ObjectNotFoundError
from ..format.manifests import manifest_key
from .classify import Classifier
from .entries import Directory, Entry, FileEntry
from .listings import DEFAULT_MAX_ENTRIES, Listings
from .metaindex import MetadataIndex
from .names import MARKED_NAME, assign_names, candidates_for, is_hidden_key
from .objectmeta import ObjectMetadata
from .sources import PartedFile, Source

logger = logging.getLogger(__name__)

#: Paths resolved without a listing, kept for the TTL.
MAX_LOOKUPS = 1 << 16


class Tree:
    """Paths of a mount -> :class:`~cottoncandy.fuse.entries.Entry`.

    Parameters
    ----------
    backend : StorageBackend
        The bucket.
    prefix : str
        Key prefix shown as the mount root (``''`` for the whole bucket).
    ttl : float
        Seconds listings and HEADs are trusted.
    index : MetadataIndex, optional
        Persistent metadata of earlier mounts (none: every cold directory HEADs
        its objects).
    sparse_files : bool
        Show sparse prefixes as ``.npz`` files (the read path can build them:
        scipy is installed); otherwise they are directories.
    max_entries : int
        Bound on the entries of listed directories held in memory.
    manifest_workers : int
        Threads fetching manifest bodies.
    prefetch_workers : int
        Threads listing sub-directories ahead (0: no prefetch).
    timer : callable
        Monotonic clock for the caches (tests may pass a fake one).
    """

    def __init__(
        self,
        backend: StorageBackend,
        prefix: str = "",
        ttl: float = 30.0,
        index: MetadataIndex | None = None,
        sparse_files: bool = False,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        manifest_workers: int = 8,
        prefetch_workers: int = 4,
        timer: Callable[[], float] = time.monotonic,
    ):
        self.backend = backend
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.ttl = float(ttl)
        self.objects = ObjectMetadata(backend, self.ttl, index, timer)
        self.classifier = Classifier(self.objects, sparse_files, manifest_workers)
        self.listings = Listings(self.classifier.list_directory, self.ttl, timer, max_entries, prefetch_workers)
        self._lock = threading.Lock()
        self._lookups: TTLCache[str, Entry | None] = TTLCache(maxsize=MAX_LOOKUPS, ttl=self.ttl, timer=timer)

    def close(self) -> None:
        """Stop the thread pools."""
        self.listings.close()
        self.classifier.close()

    def _dir_prefix(self, parts: list[str]) -> str:
        return self.prefix + "".join(p + "/" for p in parts)

    def root(self) -> Directory:
        """The entry of the mount root."""
        return self.classifier.directory(self.prefix.rstrip("/"))

    # -- directories --------------------------------------------------------
    def readdir(self, path: str) -> list[Entry]:
        """Entries of the directory at mount path ``path``, sorted by name.

        Raises
        ------
        ObjectNotFoundError
            If ``path`` is not a directory of the mount.
        NotADirectoryError
            If ``path`` is a file.
        """
        entry = self.lookup(path)
        if not entry.is_dir:
            raise NotADirectoryError(path)
        named = self.listings.get(entry.key + "/" if entry.key else "")
        return [named[n] for n in sorted(named)]

    # -- lookups ------------------------------------------------------------
    def lookup(self, path: str) -> Entry:
        """The entry at mount path ``path`` (``/a/b.npy``).

        Raises
        ------
        ObjectNotFoundError
            When nothing has that name.
        """
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self.root()
        parent, name = self._dir_prefix(parts[:-1]), parts[-1]
        listed = self.listings.cached(parent)
        if listed is not None:
            entry = listed.get(name)
        else:
            with self._lock:
                known = path in self._lookups
                entry = self._lookups.get(path)
            if not known:
                entry = self._resolve(parent, name)
                with self._lock:
                    self._lookups[path] = entry
        if entry is None:
            raise ObjectNotFoundError(f"no such file in the mount: {path}", parent + name)
        return entry

    def _resolve(self, parent: str, name: str) -> Entry | None:
        """Find ``name`` in directory ``parent`` without listing the whole directory."""
        if MARKED_NAME.search(name):
            return self.listings.get(parent).get(name)
        objects, prefixes = candidates_for(name)
        infos = self.objects.heads([parent + o for o in objects] + [manifest_key(parent + p) for p in prefixes])
        entries = [self.classifier.object_entry(info) for info in (infos[parent + o] for o in objects)
                   if info is not None and not is_hidden_key(info.key)]
        for p in prefixes:
            entry = self.classifier.prefix_entry(parent + p + "/", infos[manifest_key(parent + p)])
            if not entry.is_dir or (p == name and self._is_nonempty(parent + p + "/")):
                entries.append(entry)
        return assign_names(entries).get(name)

    def _is_nonempty(self, prefix: str) -> bool:
        listing = self.backend.list_dir(prefix)
        return bool(listing.objects or listing.prefixes)

    # -- opening ------------------------------------------------------------
    def refresh(self, path: str, entry: Entry) -> Entry:
        """The entry at ``path`` as the server has it now (an open must see the current version).

        Returns ``entry`` itself when its version did not change; otherwise the
        new entry, which also replaces the old one in the caches so that
        ``stat`` agrees with what the open file reads.

        Raises
        ------
        ObjectNotFoundError
            When the object (or manifest) is gone.
        """
        if not isinstance(entry, FileEntry):
            return entry
        head_key = entry.head_key  # the manifest of a dask/sparse entry
        info = self.objects.head(head_key, fresh=True)
        if info is None:
            raise ObjectNotFoundError(f"{path}: {head_key} was deleted", head_key)
        if info.etag == entry.etag:
            return entry
        current = self._reclassified(path, entry, info).renamed(entry.name)
        logger.info("%s changed on the server (ETag %s -> %s)", head_key, entry.etag, info.etag)
        self._replace(path, current)
        return current

    def _reclassified(self, path: str, entry: FileEntry, info: ObjectInfo) -> Entry:
        if info.key == entry.key:
            return self.classifier.object_entry(info)
        current = self.classifier.prefix_entry(entry.key + "/", info)
        if current.is_dir:
            raise ObjectNotFoundError(f"{path}: {entry.key}/ is no longer an array", info.key)
        return current

    def _replace(self, path: str, entry: Entry) -> None:
        parts = [p for p in path.split("/") if p]
        self.listings.replace(self._dir_prefix(parts[:-1]), parts[-1], entry)
        with self._lock:
            if path in self._lookups:
                self._lookups[path] = entry

    def source(self, entry: Entry, fresh: bool = True) -> Source:
        """The descriptor of what a file entry reads, with the HEADs of its parts.

        Parameters
        ----------
        entry : Entry
        fresh : bool
            HEAD a dask or sparse file's parts now (an open must read the current
            versions); otherwise HEADs within the TTL do (a ``stat``).

        Raises
        ------
        IsADirectoryError
            For directories.
        CottonCandyError
            For broken entries (the reason they are broken), missing parts and
            storage errors.
        """
        if not isinstance(entry, FileEntry):
            raise IsADirectoryError(entry.key)
        source = entry.source()
        if isinstance(source, PartedFile):
            keys = source.part_keys()
            if fresh:
                parts = self.objects.parts(entry.key + "/", keys)
            else:
                parts = {k: v for k, v in self.objects.heads(keys).items() if v is not None}
            missing = sorted(keys - parts.keys())
            if missing:
                raise ArrayFormatError(f"{entry.key}: part {missing[0]} is missing", entry.key)
            source = source.with_parts(parts)
        return source
