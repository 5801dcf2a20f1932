"""cottoncandy 0.4.0's ``backend_interface``: the object behind its lower-level methods.

0.4.0 scripts reach below the Interface through ``cci.backend_interface`` and
through methods that hand out its objects (``get_bucket``, ``get_objects``,
``get_object``...). On S3 those are boto3 resource objects
(:mod:`.s3legacy`). On a local store 0.4.0 returned bare key names, or
nothing at all; here they are small objects with the attributes scripts read
of boto3's: ``key``, ``size``, ``last_modified`` (timezone-aware),
``e_tag``, ``bucket_name``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from typing import TYPE_CHECKING, Any, Iterator, Mapping, cast

from typing_extensions import override

from ..errors import ObjectNotFoundError
from ..paths import normalize_key
from .base import ObjectInfo, StorageBackend

if TYPE_CHECKING:  # pragma: no cover - names only the type checker sees
    from .local import LocalBackend
    from .s3 import S3Backend

logger = logging.getLogger(__name__)

#: 0.4.0's ``list_objects`` defaults: at most 1000 objects unless told otherwise.
DEFAULT_LIMIT = 1000


def listing_options(kwargs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split 0.4.0's ``list_objects`` keywords into a key prefix and the other collection methods.

    ``filter=dict(Prefix=...)`` gives the prefix (0.4.0's ``'/'`` and a
    leading ``/`` mean the bucket root); ``limit`` defaults to 1000 and
    ``page_size`` to 1000, as in 0.4.0; ``None`` values are dropped.
    """
    options: dict[str, Any] = {"limit": DEFAULT_LIMIT, "page_size": DEFAULT_LIMIT, **kwargs}
    prefix = (options.pop("filter", None) or {}).get("Prefix", "")
    prefix = normalize_key(prefix.lstrip("/"), allow_empty=True)
    return prefix, {name: value for name, value in options.items() if value is not None}


def describe(objects: list) -> list[str]:
    """0.4.0's ``print_objects`` lines: key, local modification time and size in MiB."""
    names = [o.key for o in objects]
    width = min(max(map(len, names), default=0) + 3, 70)
    return [f"{name[-100:]:<{width}} {o.last_modified.astimezone():%Y/%m/%d (%H:%M:%S)} "
            f"{round(o.size / 2 ** 20, 1)}M" for name, o in zip(names, objects)]


def for_backend(backend: StorageBackend) -> "BackendInterface":
    """The ``backend_interface`` of a storage backend."""
    if hasattr(backend, "new_resource"):  # the S3 backend; boto3 stays in the S3 modules
        from .s3legacy import S3BackendInterface

        return S3BackendInterface(cast("S3Backend", backend))
    return LocalBackendInterface(backend)


class BackendInterface:
    """What 0.4.0's S3 and local clients both offered. Subclasses add the rest.

    Attributes
    ----------
    backend : StorageBackend
        The backend it wraps.
    """

    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend

    @property
    def bucket_name(self) -> str:
        """Name of the bucket (the directory of a local store)."""
        return self.backend.bucket

    def check_file_exists(self, object_name: str, bucket_name: str | None = None) -> bool:
        """Tell whether the object exists (in ``bucket_name`` if given)."""
        backend = self.backend if bucket_name is None else self.backend.with_bucket(bucket_name)
        try:
            backend.head(normalize_key(object_name))
        except ObjectNotFoundError:
            return False
        return True

    # what each backend's own interface answers (0.4.0's names)
    def get_bucket(self) -> Any:
        """The current bucket (a boto3 ``Bucket`` on S3)."""
        raise NotImplementedError

    def list_objects(self, **kwargs: Any) -> Any:
        """The bucket's objects, at most ``limit`` (see :func:`listing_options`)."""
        raise NotImplementedError

    def get_s3_object(self, object_name: str, bucket_name: str | None = None) -> Any:
        """One object (a boto3 ``Object`` on S3)."""
        raise NotImplementedError

    def get_owner(self, object_name: str) -> dict[str, str]:
        """The object's owner, ``{'DisplayName', 'ID'}``."""
        raise NotImplementedError

    def check_bucket_exists(self, bucket_name: str) -> bool:
        """Tell whether the bucket exists."""
        return self.backend.exists_bucket(bucket_name)

    @property
    def size(self) -> int:
        """Bytes held by all objects of the bucket (logged with the object count, as 0.4.0 printed)."""
        total = count = 0
        for info in self.backend.iter_objects(""):
            total += info.size
            count += 1
        logger.info("%d bytes over %d objects", total, count)
        return total


@dataclass(frozen=True)
class LocalObject:
    """An object of a local store, with the attributes 0.4.0 scripts read of boto3's objects.

    Attributes
    ----------
    bucket_name : str
        The store's directory.
    key : str
    size : int
        Bytes (``content_length`` says the same).
    last_modified : datetime.datetime
        Timezone-aware, as boto3's.
    e_tag : str
        Quoted version tag; changes with the content.
    metadata : dict or None
        User metadata (set by :meth:`LocalBackendInterface.get_s3_object`, ``None`` in listings).
    """

    bucket_name: str
    key: str
    size: int
    last_modified: datetime
    e_tag: str
    metadata: dict[str, str] | None = None

    @property
    def content_length(self) -> int:
        """The body size, as boto3's ``Object.content_length``."""
        return self.size

    @classmethod
    def from_info(cls, bucket: str, info: ObjectInfo) -> "LocalObject":
        """Build from what the backend knows of an object."""
        return cls(bucket, info.key, info.size, datetime.fromtimestamp(info.last_modified, tz=timezone.utc),
                   f'"{info.etag.strip(chr(34))}"', info.metadata)


class LocalObjectCollection:
    """A local store's objects, with the collection methods 0.4.0 scripts chain on boto3's ``bucket.objects``.

    ``all()``, ``filter(Prefix=...)``, ``limit(n)`` and ``page_size(n)`` return
    collections; iterating lists the objects in key order.
    """

    def __init__(self, backend: StorageBackend, prefix: str = "", count: int | None = None) -> None:
        self._backend, self._prefix, self._count = backend, prefix, count

    def all(self) -> "LocalObjectCollection":  # noqa: D102 - boto3's name
        return self

    def filter(self, Prefix: str = "", **_ignored: Any) -> "LocalObjectCollection":  # noqa: N803, D102
        return LocalObjectCollection(self._backend, normalize_key(Prefix.lstrip("/"), allow_empty=True), self._count)

    def limit(self, count: int) -> "LocalObjectCollection":  # noqa: D102
        return LocalObjectCollection(self._backend, self._prefix, count)

    def page_size(self, count: int) -> "LocalObjectCollection":  # noqa: D102 - pages mean nothing on disk
        return self

    def __iter__(self) -> Iterator[LocalObject]:
        infos = islice(self._backend.iter_objects(self._prefix), self._count)
        return (LocalObject.from_info(self._backend.bucket, info) for info in infos)


@dataclass(frozen=True)
class LocalBucket:
    """A local store as 0.4.0 scripts use a boto3 ``Bucket``: its ``name`` and its ``objects``."""

    name: str
    objects: LocalObjectCollection


class LocalBackendInterface(BackendInterface):
    """0.4.0's ``LocalClient`` names over a local store."""

    backend: LocalBackend

    @property
    def path(self) -> str:
        """The store's directory (0.4.0's ``LocalClient.path``)."""
        return self.backend.bucket

    @override
    def get_bucket(self) -> LocalBucket:
        """The store as a bucket-like object."""
        return LocalBucket(self.backend.bucket, LocalObjectCollection(self.backend))

    @override
    def list_objects(self, **kwargs: Any) -> list[LocalObject]:
        """Objects in key order; keywords as 0.4.0's (``filter=dict(Prefix=...)``, ``limit=1000``)."""
        prefix, options = listing_options(kwargs)
        infos = islice(self.backend.iter_objects(prefix), options.get("limit"))
        return [LocalObject.from_info(self.backend.bucket, info) for info in infos]

    @override
    def get_s3_object(self, object_name: str, bucket_name: str | None = None) -> LocalObject:
        """One object, with its metadata; raises ``ObjectNotFoundError`` if it does not exist."""
        backend = self.backend if bucket_name is None else self.backend.with_bucket(bucket_name)
        return LocalObject.from_info(backend.bucket, backend.head(normalize_key(object_name)))

    @override
    def get_owner(self, object_name: str) -> dict[str, str]:
        """The owner of the object's file: ``{'DisplayName': user name, 'ID': uid}``."""
        import pwd

        key = normalize_key(object_name)
        self.backend.head(key)  # ObjectNotFoundError when missing
        uid = os.stat(self.backend.file_of(key)).st_uid
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return {"DisplayName": name, "ID": str(uid)}
