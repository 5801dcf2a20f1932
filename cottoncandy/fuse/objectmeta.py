"""What the mount knows about objects beyond a listing: HEADs, manifest bodies, parts.

What a listing cannot say, an object's array metadata and a manifest's body,
comes from the persistent :class:`~cottoncandy.fuse.metaindex.MetadataIndex`
when the listing's ETag and size match what it remembers, and otherwise from
HEADs sent together through :meth:`StorageBackend.heads` (many in flight).
A second mount of an unchanged bucket therefore lists with LISTs and the few
manifest HEADs only. HEADs are trusted for ``ttl`` seconds; manifests are
cached by ETag.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from cachetools import LRUCache, TTLCache

from ..backends.base import ObjectInfo, StorageBackend
from ..format.manifests import may_be_manifest
from ..format.metadata import ARRAY_METADATA_KEYS
from .metaindex import IndexedObject, MetadataIndex

logger = logging.getLogger(__name__)

#: HEADs (and "not found" answers) kept for the TTL.
MAX_HEADS = 1 << 16
#: Decoded manifests kept (by ETag).
MAX_MANIFESTS = 1024

HeadResult = ObjectInfo | None | Exception


def _array_subset(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The part of an object's user metadata that says what it is (what the index keeps)."""
    return {k: v for k, v in (metadata or {}).items() if k in ARRAY_METADATA_KEYS}


class ObjectMetadata:
    """HEADs, descriptions of listed objects, and manifest bodies, cached and indexed.

    Parameters
    ----------
    backend : StorageBackend
    ttl : float
        Seconds HEADs are trusted.
    index : MetadataIndex, optional
        Persistent metadata of earlier mounts.
    timer : callable
        Monotonic clock for the TTL cache.
    """

    def __init__(self, backend: StorageBackend, ttl: float, index: MetadataIndex | None,
                 timer: Callable[[], float]):
        self.backend = backend
        self.index = index
        self._lock = threading.Lock()
        self._heads: TTLCache[str, ObjectInfo | None] = TTLCache(maxsize=MAX_HEADS, ttl=ttl, timer=timer)
        self._manifests: LRUCache[tuple[str, str], dict[str, Any] | None] = LRUCache(maxsize=MAX_MANIFESTS)

    def heads(self, keys: Iterable[str], fresh: bool = False) -> dict[str, ObjectInfo | None]:
        """HEAD several keys at once (cached); ``None`` for missing keys.

        Raises
        ------
        CottonCandyError
            The first failure other than "not found".
        """
        out: dict[str, ObjectInfo | None] = {}
        wanted = []
        with self._lock:
            for key in dict.fromkeys(keys):
                if not fresh and key in self._heads:
                    out[key] = self._heads[key]
                else:
                    wanted.append(key)
        for key, result in self.heads_per_key(wanted).items():
            if isinstance(result, Exception):
                raise result
            out[key] = result
        return out

    def head(self, key: str, fresh: bool = False) -> ObjectInfo | None:
        """HEAD one key (cached); ``None`` when it does not exist."""
        return self.heads([key], fresh)[key]

    def heads_per_key(self, keys: Sequence[str]) -> dict[str, HeadResult]:
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
        for key, result in self.heads_per_key(missing).items():
            if result is None:
                continue
            out[key] = result
            if isinstance(result, ObjectInfo):
                learned.append((key, IndexedObject(result.etag, result.size, _array_subset(result.metadata))))
        if self.index is not None:
            self.index.store(learned)
        return out

    def parts(self, prefix: str, keys: Collection[str]) -> dict[str, ObjectInfo]:
        """Fresh HEADs of a manifest's parts; missing keys are left out.

        One listing of ``prefix`` gives the ETags of the parts under it, so the
        index can spare their HEADs; part keys are full keys, so a part may live
        elsewhere and is HEADed.

        Raises
        ------
        CottonCandyError
            The first failure other than "not found".
        """
        wanted = set(keys)
        listed = [o for o in self.backend.iter_objects(prefix) if o.key in wanted]
        described = self.described(listed)
        elsewhere = wanted - described.keys()
        found: dict[str, ObjectInfo] = {k: v for k, v in self.heads(elsewhere).items() if v is not None}
        for key, result in described.items():
            if isinstance(result, Exception):
                raise result
            found[key] = result
        return found

    def manifest_json(self, info: ObjectInfo) -> dict[str, Any] | None:
        """The JSON object in a ``metadata.json`` (cached by ETag, kept in the index).

        ``None`` when it is not a JSON object, or not worth reading (too big, or
        a raw array: see :func:`~cottoncandy.format.manifests.may_be_manifest`).
        """
        cache_key = (info.key, info.etag)
        with self._lock:
            if cache_key in self._manifests:
                return self._manifests[cache_key]
        data: dict[str, Any] | None = None
        if may_be_manifest(info.size, info.metadata):
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
        with self._lock:
            self._manifests[cache_key] = data
        return data
