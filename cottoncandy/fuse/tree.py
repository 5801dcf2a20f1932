"""Map mount paths to entries, with TTL caches for listings and HEADs.

The tree answers two questions for the FUSE operations: *what is at this
path* (:meth:`Tree.lookup`) and *what is in this directory*
(:meth:`Tree.readdir`). Naming rules and collision handling are described in
:mod:`cottoncandy.fuse.entries`.

Caching: listings, HEADs (including "not found"), directory contents and
direct lookups live in ``cachetools.TTLCache`` objects guarded by one lock;
after ``ttl`` seconds they are fetched again, so changes on the server show
up within ``ttl``. Parsed manifests are cached by ``(key, etag)`` and need no
TTL. The HEADs a directory needs go out in parallel on a thread pool.

A path that was never listed is resolved without listing its parent: the
tree HEADs the few keys that could claim the name (``x.npy`` may be key
``x.npy``, raw array ``x`` or dask prefix ``x/``) and applies the same
naming rules to them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from cachetools import LRUCache, TTLCache

from ..backends.base import Listing, ObjectInfo, StorageBackend
from ..errors import ArrayFormatError, CottonCandyError, ObjectNotFoundError
from ..manifests import (
    is_dask_manifest,
    is_sparse_manifest,
    parse_dask_manifest,
    parse_sparse_manifest,
)
from ..metadata import ArrayMeta, is_array_metadata
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

logger = logging.getLogger(__name__)

#: Manifests larger than this are not believed.
MAX_MANIFEST_BYTES = 64 << 20
_MISSING = object()


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
    max_workers : int
        Parallel HEADs per directory.
    build_sparse : callable, optional
        ``build_sparse(entry, tree) -> bytes`` returning the ``.npz`` of a
        sparse entry. Without it, sparse prefixes are shown as directories.
    timer : callable
        Monotonic clock for the caches (tests may pass a fake one).
    """

    def __init__(
        self,
        backend: StorageBackend,
        prefix: str = "",
        ttl: float = 30.0,
        max_workers: int = 16,
        build_sparse: Callable[[Entry, Tree], bytes] | None = None,
        timer: Callable[[], float] = time.monotonic,
    ):
        self.backend = backend
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.ttl = float(ttl)
        self.mount_time = time.time()
        self._build_sparse = build_sparse
        self._lock = threading.Lock()
        self._listings: TTLCache = TTLCache(maxsize=4096, ttl=self.ttl, timer=timer)
        self._heads: TTLCache = TTLCache(maxsize=1 << 16, ttl=self.ttl, timer=timer)
        self._dirs: TTLCache = TTLCache(maxsize=1024, ttl=self.ttl, timer=timer)
        self._lookups: TTLCache = TTLCache(maxsize=1 << 16, ttl=self.ttl, timer=timer)
        self._manifests: LRUCache = LRUCache(maxsize=1024)
        self._built: LRUCache = LRUCache(maxsize=256 << 20, getsizeof=len)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="cc-tree")

    def close(self) -> None:
        """Stop the HEAD thread pool."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- cached storage calls ----------------------------------------------
    def _cached(self, cache: TTLCache, key: object) -> object:
        with self._lock:
            return cache.get(key, _MISSING)

    def _store(self, cache: TTLCache, key: object, value: object) -> None:
        with self._lock:
            cache[key] = value

    def head(self, key: str, fresh: bool = False) -> ObjectInfo | None:
        """HEAD ``key`` (cached); ``None`` when it does not exist."""
        if not fresh:
            hit = self._cached(self._heads, key)
            if hit is not _MISSING:
                return hit  # type: ignore[return-value]
        try:
            info: ObjectInfo | None = self.backend.head(key)
        except ObjectNotFoundError:
            info = None
        self._store(self._heads, key, info)
        return info

    def listing(self, prefix: str, fresh: bool = False) -> Listing:
        """One listing level under ``prefix`` (cached)."""
        if not fresh:
            hit = self._cached(self._listings, prefix)
            if hit is not _MISSING:
                return hit  # type: ignore[return-value]
        result = self.backend.list_dir(prefix)
        self._store(self._listings, prefix, result)
        return result

    def heads(self, keys: Iterable[str], fresh: bool = False) -> dict[str, ObjectInfo | None]:
        """HEAD several keys in parallel."""
        keys = list(keys)
        if len(keys) <= 1:
            return {k: self.head(k, fresh) for k in keys}
        return dict(zip(keys, self._pool.map(lambda k: self.head(k, fresh), keys), strict=True))

    def manifest_json(self, info: ObjectInfo) -> dict | None:
        """The JSON object in a ``metadata.json``, cached by ETag; ``None`` if not JSON."""
        cache_key = (info.key, info.etag)
        with self._lock:
            hit = self._manifests.get(cache_key, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        data: dict | None = None
        if info.size <= MAX_MANIFEST_BYTES:
            body = self.backend.read_range(info.key, 0, info.size, etag=info.etag)
            try:
                parsed = json.loads(body.decode("utf-8"))
            except ValueError:  # includes UnicodeDecodeError
                parsed = None
            data = parsed if isinstance(parsed, dict) else None
        with self._lock:
            self._manifests[cache_key] = data
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

    def _entry_for_prefix(self, prefix: str, must_exist: bool) -> Entry | None:
        """Classify ``prefix`` (ending in ``/``) as directory, dask or sparse entry.

        With ``must_exist`` the prefix is listed to check that it is not empty.
        """
        name, key = basename(prefix), prefix.rstrip("/")
        info = self.head(prefix + MANIFEST_NAME)
        if info is not None:
            entry = self._entry_for_manifest(name, key, info)
            if entry is not None:
                return entry
        elif must_exist:
            listing = self.listing(prefix)
            if not listing.objects and not listing.prefixes:
                return None
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
            return Entry(
                name + NPY, Kind.DASK, key, info, manifest=manifest, size=size, mtime=info.last_modified
            )
        if is_sparse_manifest(data) and self._build_sparse is not None:
            try:
                sparse = parse_sparse_manifest(data, info.key)
            except CottonCandyError as exc:
                return Entry(name + NPZ, Kind.BROKEN, key, info, error=exc, mtime=info.last_modified)
            return Entry(name + NPZ, Kind.SPARSE, key, info, manifest=sparse, size=None, mtime=info.last_modified)
        return None

    # -- directories --------------------------------------------------------
    def _dir_prefix(self, parts: list[str]) -> str:
        return self.prefix + "".join(p + "/" for p in parts)

    def root(self) -> Entry:
        """The entry of the mount root."""
        return Entry("", Kind.DIR, self.prefix.rstrip("/"), mtime=self.mount_time)

    def dir_entries(self, prefix: str) -> dict[str, Entry]:
        """Name -> entry for the directory at ``prefix`` (``''`` or ending in ``/``)."""
        hit = self._cached(self._dirs, prefix)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        listing = self.listing(prefix, fresh=True)
        keys = [o.key for o in listing.objects if not is_hidden_key(o.key)]
        prefixes = [p for p in listing.prefixes if not is_hidden_key(p)]
        head_jobs = [self._pool.submit(self._object_entry_safe, k) for k in keys]
        prefix_jobs = [self._pool.submit(self._prefix_entry_safe, p) for p in prefixes]
        entries = [job.result() for job in head_jobs + prefix_jobs]
        named = assign_names(e for e in entries if e is not None)
        too_long = [n for n in named if not fits_name_max(n)]
        for name in too_long:  # the kernel could never look them up: a listing would only confuse
            logger.warning("%s: name of %d bytes is not shown (more than %d)", named.pop(name).key,
                           len(name.encode("utf-8", "surrogateescape")), NAME_MAX)
        self._store(self._dirs, prefix, named)
        return named

    def _object_entry_safe(self, key: str) -> Entry | None:
        try:
            info = self.head(key, fresh=True)
        except CottonCandyError as exc:
            logger.warning("cannot HEAD %s: %s", key, exc)
            return Entry(basename(key), Kind.BROKEN, key, error=exc, size=0, mtime=self.mount_time)
        return None if info is None else self._entry_for_object(info)

    def _prefix_entry_safe(self, prefix: str) -> Entry | None:
        try:
            self.head(prefix + MANIFEST_NAME, fresh=True)
            return self._entry_for_prefix(prefix, must_exist=False)
        except CottonCandyError as exc:
            logger.warning("cannot inspect %s: %s; showing it as a directory", prefix, exc)
            return Entry(basename(prefix), Kind.DIR, prefix.rstrip("/"), mtime=self.mount_time)

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
        head_jobs = [self._pool.submit(self.head, parent + o) for o in objects]
        prefix_jobs = [
            self._pool.submit(self._entry_for_prefix, parent + p + "/", p == name) for p in prefixes
        ]
        entries: list[Entry] = []
        for job in head_jobs:
            info = job.result()
            if info is not None and not is_hidden_key(info.key):
                entries.append(self._entry_for_object(info))
        entries.extend(e for e in (job.result() for job in prefix_jobs) if e is not None)
        return assign_names(entries).get(name)

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
        part_keys = sorted(set(entry.manifest.nonempty_parts().values()))  # type: ignore[union-attr]
        parts = self.heads(part_keys)
        missing = [k for k, v in parts.items() if v is None]
        if missing:
            raise ArrayFormatError(f"{entry.key}: dask part {missing[0]} is missing", entry.key)
        return src.DaskArrayFile(entry.manifest, parts)  # type: ignore[arg-type]

    def sparse_bytes(self, entry: Entry) -> bytes:
        """The ``.npz`` bytes of a sparse entry (built once per manifest version)."""
        assert entry.info is not None and self._build_sparse is not None
        cache_key = (entry.key, entry.info.etag)
        with self._lock:
            data = self._built.get(cache_key)
        if data is None:
            data = self._build_sparse(entry, self)
            with self._lock:
                self._built[cache_key] = data
        entry.size = len(data)
        return data

    def size(self, entry: Entry) -> int:
        """Exact size of a file entry (builds a sparse ``.npz`` if needed)."""
        if entry.size is None:
            return len(self.sparse_bytes(entry))
        return entry.size

    def identity(self, entry: Entry) -> tuple:
        """What identifies the version of an entry's content (for the page cache)."""
        return (entry.kind, entry.key, entry.info.etag if entry.info else None)
