"""Map mount paths to entries: listings, HEADs many at once, and what is remembered.

The tree answers *what is at this path* (:meth:`Tree.lookup`), *what is in
this directory* (:meth:`Tree.readdir`) and, when a file is opened, *what is
there now* (:meth:`Tree.refresh`). Naming rules and collision handling are in
:mod:`cottoncandy.fuse.entries`.

A directory costs one ``/``-delimited LIST. What the listing cannot say, an
object's array metadata and whether a sub-prefix holds a dask or sparse
manifest, comes from the persistent :class:`~cottoncandy.fuse.metaindex.MetadataIndex`
when the listing's ETag and size match what it remembers, and otherwise from
HEADs sent together through :meth:`StorageBackend.heads` (many in flight).
A second mount of an unchanged bucket therefore lists with LISTs and the few
manifest HEADs only.

In memory, directory contents are trusted for ``ttl`` seconds in a cache
bounded by the number of entries it holds (not the number of directories, so
a tree of thousands of small directories does not thrash it). Entries are
immutable; a refresh replaces them. A path whose directory was never listed
is resolved by HEADing the few keys that could claim its name.

Listing a directory starts listing its first :data:`PREFETCH_CHILDREN`
sub-directories in the background: ``ls -R``, ``find`` and ``os.walk`` go
there next, and their LISTs and HEADs then overlap instead of waiting for each
other directory by directory. A directory being listed is listed once: a
second caller waits for the first.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from cachetools import LRUCache, TTLCache

from ..backends.base import ObjectInfo, StorageBackend
from ..errors import ArrayFormatError, CottonCandyError, ObjectNotFoundError
from ..format.manifests import is_dask_manifest, is_sparse_manifest, parse_dask_manifest, parse_sparse_manifest
from ..format.metadata import ARRAY_METADATA_KEYS, ArrayMeta, is_array_metadata
from . import sources as src
from .entries import (
    MANIFEST_NAME,
    MARKED_NAME,
    NAME_MAX,
    NPY,
    NPZ,
    Entry,
    Kind,
    array_name,
    assign_names,
    basename,
    candidates_for,
    fits_name_max,
    is_hidden_key,
)
from .metaindex import IndexedObject, MetadataIndex

logger = logging.getLogger(__name__)

#: Manifests larger than this are not believed.
MAX_MANIFEST_BYTES = 64 << 20
#: Entries (over all cached directories) kept in memory; about 0.5 KiB each.
DEFAULT_MAX_ENTRIES = 1_000_000
#: Sub-directories of a listed directory that are listed ahead, in the background.
PREFETCH_CHILDREN = 64
_MISSING = object()


def _array_subset(metadata: dict[str, str] | None) -> dict[str, str]:
    """The part of an object's user metadata that says what it is (what the index keeps)."""
    return {k: v for k, v in (metadata or {}).items() if k in ARRAY_METADATA_KEYS}


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
    build_sparse : callable, optional
        ``build_sparse(entry, tree) -> bytes`` returning the ``.npz`` of a
        sparse entry. Without it, sparse prefixes are shown as directories.
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
        build_sparse: Callable[[Entry, Tree], bytes] | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        manifest_workers: int = 8,
        prefetch_workers: int = 4,
        timer: Callable[[], float] = time.monotonic,
    ):
        self.backend = backend
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.ttl = float(ttl)
        self.index = index
        self.mount_time = time.time()
        self._build_sparse = build_sparse
        self._lock = threading.Lock()
        self._dirs: TTLCache = TTLCache(maxsize=max(1, max_entries), ttl=self.ttl, timer=timer,
                                        getsizeof=lambda named: len(named) + 1)
        self._heads: TTLCache = TTLCache(maxsize=1 << 16, ttl=self.ttl, timer=timer)
        self._lookups: TTLCache = TTLCache(maxsize=1 << 16, ttl=self.ttl, timer=timer)
        self._manifests: LRUCache = LRUCache(maxsize=1024)
        self._built: LRUCache = LRUCache(maxsize=256 << 20, getsizeof=len)
        self._pool = ThreadPoolExecutor(max_workers=max(1, manifest_workers), thread_name_prefix="cc-tree")
        self._prefetcher = (ThreadPoolExecutor(max_workers=prefetch_workers, thread_name_prefix="cc-prefetch")
                            if prefetch_workers > 0 else None)
        self._listing: dict[str, Future] = {}  # directories being listed right now

    def close(self) -> None:
        """Stop the thread pools."""
        if self._prefetcher is not None:
            self._prefetcher.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- cached storage calls ----------------------------------------------
    def _cached(self, cache: TTLCache | LRUCache, key: object) -> object:
        with self._lock:
            return cache.get(key, _MISSING)

    def _store(self, cache: TTLCache | LRUCache, key: object, value: object) -> None:
        with self._lock:
            cache[key] = value

    def heads(self, keys: Iterable[str], fresh: bool = False) -> dict[str, ObjectInfo | None]:
        """HEAD several keys at once (cached); ``None`` for missing keys.

        Raises
        ------
        CottonCandyError
            The first failure other than "not found".
        """
        keys = list(dict.fromkeys(keys))
        out: dict[str, ObjectInfo | None] = {}
        wanted = []
        for key in keys:
            hit = _MISSING if fresh else self._cached(self._heads, key)
            if hit is _MISSING:
                wanted.append(key)
            else:
                out[key] = hit  # type: ignore[assignment]
        for key, result in zip(wanted, self.backend.heads(wanted), strict=True):
            if isinstance(result, Exception):
                raise result
            out[key] = result
            self._store(self._heads, key, result)
        return out

    def head(self, key: str, fresh: bool = False) -> ObjectInfo | None:
        """HEAD one key (cached); ``None`` when it does not exist."""
        return self.heads([key], fresh)[key]

    def _heads_per_key(self, keys: Sequence[str]) -> dict[str, ObjectInfo | None | Exception]:
        """HEAD ``keys`` fresh, keeping each key's own failure (one bad key must not hide the rest)."""
        results = dict(zip(keys, self.backend.heads(list(keys)), strict=True))
        with self._lock:
            for key, result in results.items():
                if not isinstance(result, Exception):
                    self._heads[key] = result
        return results

    def described(self, listed: Sequence[ObjectInfo]) -> dict[str, ObjectInfo | Exception]:
        """Listed objects with their metadata: from the index when the ETag matches, else HEADed.

        Objects that vanished between the listing and the HEAD are left out.
        """
        known = self.index.lookup({o.key: (o.etag, o.size) for o in listed}) if self.index else {}
        out: dict[str, ObjectInfo | Exception] = {}
        for o in listed:
            hit = known.get(o.key)
            if hit is not None:
                out[o.key] = ObjectInfo(o.key, o.size, o.etag, o.last_modified, hit.metadata)
        missing = [o.key for o in listed if o.key not in out]
        learned = []
        for key, result in self._heads_per_key(missing).items():
            if result is None:
                continue
            out[key] = result
            if isinstance(result, ObjectInfo):
                learned.append((key, IndexedObject(result.etag, result.size, _array_subset(result.metadata))))
        if self.index is not None:
            self.index.store(learned)
        return out

    def manifest_json(self, info: ObjectInfo) -> dict | None:
        """The JSON object in a ``metadata.json`` (cached by ETag, kept in the index); ``None`` if not JSON."""
        cache_key = (info.key, info.etag)
        hit = self._cached(self._manifests, cache_key)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        data: dict | None = None
        if info.size <= MAX_MANIFEST_BYTES:
            known = self.index.lookup({info.key: (info.etag, info.size)}) if self.index else {}
            body = known[info.key].body if info.key in known else None
            if body is None:
                body = self.backend.read_range(info.key, 0, info.size, etag=info.etag)
                if self.index is not None:
                    self.index.store([(info.key, IndexedObject(info.etag, info.size, {}, body))])
            try:
                parsed = json.loads(body.decode("utf-8"))
            except ValueError:  # includes UnicodeDecodeError
                parsed = None
            data = parsed if isinstance(parsed, dict) else None
        self._store(self._manifests, cache_key, data)
        return data

    # -- classification -----------------------------------------------------
    def _entry_for_object(self, info: ObjectInfo) -> Entry:
        name = basename(info.key)
        if not is_array_metadata(info.metadata):
            return Entry(name, Kind.OBJECT, info.key, info, size=info.size, mtime=info.last_modified)
        name = array_name(name)
        try:
            meta = ArrayMeta.from_metadata(info.metadata or {}, info.key)
            size = src.file_size(src.RawArrayFile(info.key, info.etag, info.size, meta))
        except CottonCandyError as exc:
            return Entry(name, Kind.BROKEN, info.key, info, error=exc, size=0, mtime=info.last_modified)
        return Entry(name, Kind.RAW, info.key, info, meta=meta, size=size, mtime=info.last_modified)

    def _entry_for_prefix(self, prefix: str, manifest: ObjectInfo | None | Exception) -> Entry:
        """Classify ``prefix`` (ending in ``/``) from the HEAD of its ``metadata.json``."""
        name, key = basename(prefix), prefix.rstrip("/")
        if isinstance(manifest, Exception):
            logger.warning("cannot inspect %s: %s; showing it as a directory", prefix, manifest)
        elif manifest is not None:
            entry = self._entry_for_manifest(name, key, manifest)
            if entry is not None:
                return entry
        return Entry(name, Kind.DIR, key, mtime=self.mount_time)

    def _entry_for_manifest(self, name: str, key: str, info: ObjectInfo) -> Entry | None:
        try:
            data = self.manifest_json(info)
        except CottonCandyError as exc:
            logger.warning("cannot read manifest %s: %s", info.key, exc)
            return None
        if data is None:
            return None
        if is_dask_manifest(data):
            try:
                manifest = parse_dask_manifest(data, info.key)
                size = src.file_size(src.DaskArrayFile(manifest, {}))
            except CottonCandyError as exc:
                return Entry(name + NPY, Kind.BROKEN, key, info, error=exc, mtime=info.last_modified)
            return Entry(name + NPY, Kind.DASK, key, info, manifest=manifest, size=size, mtime=info.last_modified)
        if is_sparse_manifest(data) and self._build_sparse is not None:
            try:
                sparse = parse_sparse_manifest(data, info.key)
            except CottonCandyError as exc:
                return Entry(name + NPZ, Kind.BROKEN, key, info, error=exc, mtime=info.last_modified)
            return Entry(name + NPZ, Kind.SPARSE, key, info, manifest=sparse, size=None, mtime=info.last_modified)
        return None

    def _classify(self, objects: Sequence[ObjectInfo], prefixes: Sequence[str]) -> list[Entry]:
        """Entries for listed objects and sub-prefixes: one batch of HEADs for everything unknown."""
        manifest_keys = [p + MANIFEST_NAME for p in prefixes]
        manifest_jobs = None
        if manifest_keys:  # the manifests' HEADs go out while the objects are described
            manifest_jobs = self._pool.submit(self._heads_per_key, manifest_keys)
        described = self.described(objects)
        entries: list[Entry] = []
        for o in objects:
            result = described.get(o.key)
            if isinstance(result, Exception):
                logger.warning("cannot HEAD %s: %s", o.key, result)
                entries.append(Entry(basename(o.key), Kind.BROKEN, o.key, error=result, size=0,
                                     mtime=o.last_modified))
            elif result is not None:
                entries.append(self._entry_for_object(result))
        manifests = manifest_jobs.result() if manifest_jobs is not None else {}
        found = {p: manifests[p + MANIFEST_NAME] for p in prefixes}
        with_manifest = [p for p, info in found.items() if isinstance(info, ObjectInfo)]
        # a manifest found means a body to read: fetch those in parallel
        read = dict(zip(with_manifest, self._pool.map(lambda p: self._entry_for_prefix(p, found[p]), with_manifest),
                        strict=True))
        entries.extend(read[p] if p in read else self._entry_for_prefix(p, found[p]) for p in prefixes)
        return entries

    # -- directories --------------------------------------------------------
    def _dir_prefix(self, parts: list[str]) -> str:
        return self.prefix + "".join(p + "/" for p in parts)

    def root(self) -> Entry:
        """The entry of the mount root."""
        return Entry("", Kind.DIR, self.prefix.rstrip("/"), mtime=self.mount_time)

    def dir_entries(self, prefix: str, prefetch: bool = True) -> dict[str, Entry]:
        """Name -> entry for the directory at ``prefix`` (``''`` or ending in ``/``).

        With ``prefetch``, the first sub-directories are then listed ahead.
        """
        with self._lock:
            hit = self._dirs.get(prefix, _MISSING)
            running = self._listing.get(prefix) if hit is _MISSING else None
            mine = hit is _MISSING and running is None
            if mine:
                running = self._listing[prefix] = Future()
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        if not mine:
            try:
                return running.result()  # type: ignore[union-attr]
            except CottonCandyError:  # the other lister failed: try on our own
                return self.dir_entries(prefix, prefetch)
        try:
            named = self._list(prefix)
        except BaseException as exc:
            running.set_exception(exc)  # type: ignore[union-attr]
            raise
        finally:
            with self._lock:
                self._listing.pop(prefix, None)
        running.set_result(named)  # type: ignore[union-attr]
        if prefetch:
            self._prefetch([e.key + "/" for e in named.values() if e.is_dir][:PREFETCH_CHILDREN])
        return named

    def _prefetch(self, prefixes: list[str]) -> None:
        if self._prefetcher is None:
            return
        for prefix in prefixes:
            with self._lock:
                known = prefix in self._dirs or prefix in self._listing
            if not known:
                try:
                    self._prefetcher.submit(self._list_ahead, prefix)
                except RuntimeError:  # shut down: the mount is going away
                    return

    def _list_ahead(self, prefix: str) -> None:
        try:
            self.dir_entries(prefix, prefetch=False)
        except CottonCandyError as exc:  # whoever opens it will see the error then
            logger.debug("listing %s ahead failed: %s", prefix, exc)

    def _list(self, prefix: str) -> dict[str, Entry]:
        listing = self.backend.list_dir(prefix)
        objects = [o for o in listing.objects if not is_hidden_key(o.key)]
        prefixes = [p for p in listing.prefixes if not is_hidden_key(p)]
        named = assign_names(self._classify(objects, prefixes))
        too_long = [n for n in named if not fits_name_max(n)]
        for name in too_long:  # the kernel could never look them up: a listing would only confuse
            logger.warning("%s: name of %d bytes is not shown (more than %d)", named.pop(name).key,
                           len(name.encode("utf-8", "surrogateescape")), NAME_MAX)
        self._store(self._dirs, prefix, named)
        return named

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
        named = self.dir_entries(entry.key + "/" if entry.key else "")
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
        listed = self._cached(self._dirs, parent)
        if listed is not _MISSING:
            entry = listed.get(name)  # type: ignore[union-attr]
        else:
            entry = self._cached(self._lookups, path)
            if entry is _MISSING:
                entry = self._resolve(parent, name)
                self._store(self._lookups, path, entry)
        if entry is None:
            raise ObjectNotFoundError(f"no such file in the mount: {path}", parent + name)
        return entry  # type: ignore[return-value]

    def _resolve(self, parent: str, name: str) -> Entry | None:
        """Find ``name`` in directory ``parent`` without listing the whole directory."""
        if MARKED_NAME.search(name):
            return self.dir_entries(parent).get(name)
        objects, prefixes = candidates_for(name)
        infos = self.heads([parent + o for o in objects] + [parent + p + "/" + MANIFEST_NAME for p in prefixes])
        entries = [self._entry_for_object(info) for info in (infos[parent + o] for o in objects)
                   if info is not None and not is_hidden_key(info.key)]
        for p in prefixes:
            entry = self._entry_for_prefix(parent + p + "/", infos[parent + p + "/" + MANIFEST_NAME])
            if entry.kind is not Kind.DIR or (p == name and self._is_nonempty(parent + p + "/")):
                entries.append(entry)
        return assign_names(entries).get(name)

    def _is_nonempty(self, prefix: str) -> bool:
        listing = self.backend.list_dir(prefix)
        return bool(listing.objects or listing.prefixes)

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
        if entry.is_dir:
            return entry
        head_key = entry.info.key if entry.info is not None else entry.key  # the manifest of a dask/sparse entry
        info = self.head(head_key, fresh=True)
        if info is None:
            raise ObjectNotFoundError(f"{path}: {head_key} was deleted", head_key)
        if entry.info is not None and info.etag == entry.info.etag:
            return entry
        if head_key == entry.key:
            current = self._entry_for_object(info)
        else:
            current = self._entry_for_prefix(entry.key + "/", info)
            if current.is_dir:
                raise ObjectNotFoundError(f"{path}: {entry.key}/ is no longer an array", head_key)
        current = _renamed(current, entry.name)
        logger.info("%s changed on the server (ETag %s -> %s)", head_key,
                    entry.info.etag if entry.info else None, info.etag)
        self._replace(path, current)
        return current

    def _replace(self, path: str, entry: Entry) -> None:
        parts = [p for p in path.split("/") if p]
        parent = self._dir_prefix(parts[:-1])
        with self._lock:
            listed = self._dirs.get(parent)
            if listed is not None and parts[-1] in listed:
                updated = dict(listed)
                updated[parts[-1]] = entry
                self._dirs[parent] = updated
            if path in self._lookups:
                self._lookups[path] = entry

    # -- what an open file reads -------------------------------------------
    def source(self, entry: Entry) -> object:
        """The read-path source descriptor of a file entry.

        Raises
        ------
        IsADirectoryError
            For directories.
        CottonCandyError
            For broken entries (the reason they are broken) and storage errors.
        """
        if entry.kind is Kind.DIR:
            raise IsADirectoryError(entry.key)
        if entry.kind is Kind.BROKEN:
            raise entry.error or ArrayFormatError(f"{entry.key}: unreadable", entry.key)
        info = entry.info
        assert info is not None  # every file entry but BROKEN has its HEAD
        if entry.kind is Kind.OBJECT:
            return src.ObjectBody(info.key, info.etag, info.size)
        if entry.kind is Kind.RAW:
            return src.RawArrayFile(info.key, info.etag, info.size, entry.meta)
        if entry.kind is Kind.DASK:
            return self._dask_source(entry)
        return src.InMemoryFile(entry.name, self.sparse_bytes(entry))

    def _dask_source(self, entry: Entry) -> object:
        manifest = entry.manifest
        part_keys = set(manifest.nonempty_parts().values())  # type: ignore[union-attr]
        # one listing gives the parts' ETags, so the index can spare their HEADs
        listed = [o for o in self.backend.iter_objects(entry.key + "/") if o.key in part_keys]
        described = self.described(listed)
        elsewhere = part_keys - described.keys()  # part keys are full keys: they may live outside the prefix
        described.update({k: v for k, v in self.heads(elsewhere).items() if v is not None})
        failed = [v for v in described.values() if isinstance(v, Exception)]
        if failed:
            raise failed[0]
        missing = sorted(part_keys - described.keys())
        if missing:
            raise ArrayFormatError(f"{entry.key}: dask part {missing[0]} is missing", entry.key)
        return src.DaskArrayFile(manifest, described)  # type: ignore[arg-type]

    def sparse_bytes(self, entry: Entry) -> bytes:
        """The ``.npz`` bytes of a sparse entry (built once per manifest version)."""
        assert entry.info is not None and self._build_sparse is not None
        cache_key = (entry.key, entry.info.etag)
        data = self._cached(self._built, cache_key)
        if data is _MISSING:
            data = self._build_sparse(entry, self)
            self._store(self._built, cache_key, data)
        return data  # type: ignore[return-value]

    def size(self, entry: Entry) -> int:
        """Exact size of a file entry (builds a sparse ``.npz`` if needed)."""
        if entry.size is None:
            return len(self.sparse_bytes(entry))
        return entry.size

    def identity(self, entry: Entry) -> tuple:
        """What identifies the version of an entry's content (for the page cache)."""
        return (entry.kind, entry.key, entry.info.etag if entry.info else None)


def _renamed(entry: Entry, name: str) -> Entry:
    """``entry`` under the name the user opened it by."""
    return entry if entry.name == name else replace(entry, name=name)
