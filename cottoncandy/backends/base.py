"""The storage backend contract shared by the S3 and local backends.

A backend stores opaque bodies with string user metadata under keys in one
bucket. Everything above it (array formats, the Interface, the mount) talks
only to this contract. Keys passed in are already normalised by
:mod:`cottoncandy.paths`; backends still refuse keys that would escape their
root.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Protocol, Sequence, Union

from ..errors import AccessDeniedError, BucketNotFoundError, CottonCandyError, CredentialsRefusedError
from ..paths import normalize_prefix

#: ``progress(nbytes_done_since_last_call)``; called from worker threads.
ProgressCallback = Callable[[int], None]


class Readable(Protocol):
    """A readable binary file: ``read(n)`` returns up to ``n`` bytes, ``b''`` at the end."""

    def read(self, size: int = -1, /) -> bytes: ...


class BodyStream(Readable, Protocol):
    """An object's body opened for reading (:meth:`StorageBackend.open_stream`): a file, or
    botocore's ``StreamingBody``."""

    def readinto(self, buffer: memoryview, /) -> int: ...

    def seekable(self) -> bool: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...

    def close(self) -> None: ...


#: What :meth:`StorageBackend.write` stores: bytes-like, bytes-like chunks back to back, or a binary file.
Body = Union[bytes, bytearray, memoryview, Sequence[memoryview], Readable]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD (or a listing) knows of an object.

    Attributes
    ----------
    key : str
    size : int
        Body size in bytes.
    etag : str
        Version tag; changes whenever the body or metadata change.
    last_modified : float
        POSIX timestamp.
    metadata : dict or None
        User metadata with lower-cased keys; ``None`` when it came from a
        listing, which does not carry metadata.
    """

    key: str
    size: int
    etag: str
    last_modified: float = 0.0
    metadata: dict[str, str] | None = field(default=None, compare=False)


def head_result(head: Callable[[str], ObjectInfo], key: str) -> "ObjectInfo | None | Exception":
    """One entry of :meth:`StorageBackend.heads`: ``head(key)``, ``None`` if missing, or its error."""
    try:
        return head(key)
    except FileNotFoundError:
        return None
    except CottonCandyError as exc:
        return exc


@dataclass(frozen=True)
class Listing:
    """One level of a ``/``-delimited listing: objects and sub-prefixes (ending in ``/``)."""

    objects: list[ObjectInfo]
    prefixes: list[str]


class StorageBackend(abc.ABC):
    """Abstract storage backend (one bucket).

    Implementations must be thread-safe: the mount and parallel transfers call
    them from many threads.
    """

    #: Name of the bucket (or root directory) this backend serves.
    bucket: str

    # -- reading -----------------------------------------------------------
    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Return size, ETag and user metadata; raise ``ObjectNotFoundError``."""

    def heads(self, keys: Sequence[str]) -> list["ObjectInfo | None | Exception"]:
        """HEAD many keys at once; one result per key, in the order given.

        Each result is the key's :class:`ObjectInfo`, ``None`` when the key
        does not exist, or the ``CottonCandyError`` that HEAD raised for it (one
        bad key does not fail the others). Backends with a cheaper way to keep
        many requests in flight override this; the default asks one by one.
        """
        return [head_result(self.head, key) for key in keys]

    @abc.abstractmethod
    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        """Return body bytes ``[start, end)`` (short only at end of body).

        If ``etag`` is given and the object changed, raise ``ObjectNotFoundError``
        rather than return bytes of another version.
        """

    @abc.abstractmethod
    def read_into(
        self,
        key: str,
        buffer: memoryview,
        start: int = 0,
        etag: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Fill ``buffer`` (writable, contiguous bytes) with the body from ``start``.

        Fast path for big bodies: the S3 backend issues parallel ranged GETs
        straight into the buffer. Raise ``ArrayFormatError`` if the body ends
        before the buffer is full.
        """

    @abc.abstractmethod
    def open_stream(self, key: str) -> tuple[BodyStream, ObjectInfo]:
        """Open the whole body for sequential reading; the caller closes the stream."""

    # -- writing -----------------------------------------------------------
    @abc.abstractmethod
    def write(self, key: str, body: Body, metadata: Mapping[str, str] | None = None,
              progress: ProgressCallback | None = None) -> None:
        """Store ``body`` under ``key`` atomically, replacing any previous version.

        ``body`` is a bytes-like object, a sequence of bytes-like chunks (written
        back to back, without joining them in memory), or a readable binary file.
        On failure the previous version stays intact and no partial object is
        visible.
        """

    @abc.abstractmethod
    def delete(self, keys: Sequence[str]) -> None:
        """Delete objects (missing keys are ignored)."""

    @abc.abstractmethod
    def copy(self, src: str, dst: str) -> None:
        """Server-side copy with metadata; raise ``ObjectNotFoundError`` if ``src`` is missing."""

    # -- listing -----------------------------------------------------------
    @abc.abstractmethod
    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix`` (string prefix), paginated.

        In the server's order: UTF-8 binary order on S3 (``a.b/`` before ``a/``);
        some servers (SeaweedFS) walk directories instead. Sort if order matters.
        """

    @abc.abstractmethod
    def list_dir(self, prefix: str = "") -> Listing:
        """List one level under ``prefix`` (``''`` or ending in ``/``), paginated."""

    # -- bucket ------------------------------------------------------------
    @abc.abstractmethod
    def exists_bucket(self, name: str | None = None) -> bool:
        """Tell whether a bucket exists."""

    @abc.abstractmethod
    def create_bucket(self, name: str) -> None:
        """Create a bucket."""

    @abc.abstractmethod
    def remove_bucket(self, name: str) -> None:
        """Remove an empty bucket."""

    @abc.abstractmethod
    def list_buckets(self) -> list[str]:
        """Names of all buckets visible to the credentials."""

    @property
    def location(self) -> str:
        """Where this bucket lives, as one string (endpoint and bucket): names it in caches."""
        return f"{type(self).__name__}:{self.bucket}"

    def check_access(self, prefix: str = "") -> Listing:
        """Make sure the bucket exists and the keys under ``prefix`` can be listed; return that listing.

        What a mount needs before it starts (``cottoncandy-mount --prefix``).

        Raises
        ------
        BucketNotFoundError
            The bucket (or the local directory) does not exist.
        AccessDeniedError
            The credentials are refused (:class:`~cottoncandy.errors.CredentialsRefusedError`),
            or they may not list ``prefix``.
        """
        if not self.exists_bucket():
            raise BucketNotFoundError(f"no such bucket: {self.bucket}", self.bucket)
        prefix = normalize_prefix(prefix)
        try:
            return self.list_dir(prefix)
        except CredentialsRefusedError:
            raise
        except AccessDeniedError as exc:
            where = f"the prefix {prefix!r}" if prefix else "the bucket root"
            raise AccessDeniedError(f"{exc}; these credentials may not list {where} (policies often "
                                    "allow listing only some prefixes)", prefix) from exc

    def with_bucket(self, name: str) -> "StorageBackend":  # pragma: no cover - overridden
        """Return a backend of the same kind and settings for another bucket."""
        raise NotImplementedError

    def close(self) -> None:
        """Release pools and connections."""
