"""S3 storage backend, for AWS and S3-compatible servers.

The ``s3*`` modules of this package are the only ones that use boto3 and
obstore. The backend reads through obstore (:mod:`.s3reader`) where that is
faster and exact: HEADs (many at once in :meth:`S3Backend.heads`), one-level
listings and ranged GETs; through boto3 (:mod:`.s3client`) otherwise. Big
reads are parallel ranged GETs straight into the caller's buffer, resumed where
a body breaks off; writes are in :mod:`.s3upload`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Iterator, Mapping, Sequence

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError

from ..config.settings import Credentials, S3Settings, is_aws_endpoint
from ..errors import (
    AccessDeniedError,
    ArrayFormatError,
    BucketNotFoundError,
    CredentialsRefusedError,
    ObjectNotFoundError,
    StorageError,
)
from ..usermeta import normalize_metadata
from .base import Listing, ObjectInfo, ProgressCallback, StorageBackend
from .s3client import make_client, make_resource
from .s3errors import is_invalid_range, translate_error
from .s3parts import etag_changed, quote_etag, wait_all
from .s3reader import ObstoreReader, Unservable
from .s3upload import Upload

logger = logging.getLogger(__name__)

#: Bytes copied per ``readinto`` call while streaming a response body.
STREAM_CHUNK = 1 << 20
DELETE_BATCH = 1000
#: Failures of a response body that broke off after its headers arrived (connection
#: reset or closed, read timeout, fewer bytes than Content-Length). botocore retries
#: requests, not bodies: the backend resumes the ranged GET where the body stopped.
BODY_FAILURES = (IncompleteReadError, HTTPClientError)


class S3Backend(StorageBackend):
    """A bucket on AWS S3 or an S3-compatible server.

    Parameters
    ----------
    bucket : str
        The bucket this backend serves.
    credentials : Credentials, optional
        Already resolved credentials and endpoint.
    settings : S3Settings, optional
        Transfer and client tuning.
    client : botocore client, optional
        Share an existing client (e.g. between backends of several buckets);
        a new one is created otherwise. Clients are thread-safe.
    """

    def __init__(
        self,
        bucket: str,
        credentials: Credentials | None = None,
        settings: S3Settings | None = None,
        client=None,
    ) -> None:
        self.bucket = bucket
        self.credentials = credentials or Credentials()
        self.settings = settings or S3Settings()
        self._owns_client = client is None
        self.client = client if client is not None else make_client(self.credentials, self.settings)
        self.reader = ObstoreReader(bucket, self.client, self.credentials, self.settings)

    def __repr__(self) -> str:
        return f"S3Backend(bucket={self.bucket!r}, endpoint_url={self.credentials.endpoint_url!r})"

    @property
    def location(self) -> str:
        """``s3:<endpoint>/<bucket>`` (AWS when no endpoint is set)."""
        return f"s3:{(self.credentials.endpoint_url or 'https://s3.amazonaws.com').rstrip('/')}/{self.bucket}"

    def __getstate__(self) -> dict:
        # botocore clients and obstore stores do not pickle: ship credentials and settings,
        # reconnect on arrival (dask sends backends to workers).
        state = self.__dict__.copy()
        state["client"] = state["reader"] = None
        state["_owns_client"] = True
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.client = make_client(self.credentials, self.settings)
        self.reader = ObstoreReader(self.bucket, self.client, self.credentials, self.settings)

    def new_client(self):
        """A fresh client with the same credentials and settings (e.g. one per process or thread)."""
        return make_client(self.credentials, self.settings)

    def new_resource(self):
        """A boto3 S3 service resource with the same credentials and settings (0.4.0's API objects)."""
        return make_resource(self.credentials, self.settings)

    def with_bucket(self, name: str) -> "S3Backend":
        """A backend for another bucket sharing this one's client and settings."""
        return S3Backend(name, self.credentials, self.settings, client=self.client)

    def close(self) -> None:
        """Stop the reader's event loop; close the client's connections if this backend created it."""
        self.reader.close()
        if self._owns_client:
            self.client.close()

    # -- errors -------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, operation: str, key: str | None = None, bucket: str | None = None):
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise translate_error(
                exc,
                operation=operation,
                bucket=bucket or self.bucket,
                key=key,
                endpoint_url=self.credentials.endpoint_url,
                secrets=(self.credentials.secret_key, self.credentials.access_key),
            ) from exc

    def _check_etag(self, key: str, expected: str | None, got: str | None) -> None:
        # Some servers (rclone) ignore If-Match: compare the ETag we got as well.
        if etag_changed(expected, got):
            raise ObjectNotFoundError(f"GET s3://{self.bucket}/{key}: the object changed while being read", key)

    # -- reading ------------------------------------------------------------
    def head(self, key: str) -> ObjectInfo:
        """Return size, ETag and lower-cased user metadata of ``key``."""
        if self.reader.serves(key):
            with contextlib.suppress(Unservable):
                return self.reader.head(key)
        return self._boto3_head(key)

    def heads(self, keys: Sequence[str]) -> list[ObjectInfo | None | Exception]:
        """HEAD many keys with up to ``settings.max_inflight`` requests in flight (see the base class)."""
        return self.reader.heads(list(keys), self._boto3_head)

    def _boto3_head(self, key: str) -> ObjectInfo:
        with self._errors("HEAD", key):
            resp = self.client.head_object(Bucket=self.bucket, Key=key)
        return self._info(key, resp)

    @staticmethod
    def _info(key: str, resp: Mapping) -> ObjectInfo:
        modified = resp.get("LastModified")
        return ObjectInfo(
            key=key,
            size=int(resp.get("ContentLength", resp.get("Size", 0))),
            etag=quote_etag(resp.get("ETag", "")),
            last_modified=modified.timestamp() if modified is not None else 0.0,
            metadata=normalize_metadata(resp.get("Metadata")) if "Metadata" in resp else None,
        )

    def _get(self, key: str, start: int, end: int, etag: str | None) -> dict:
        kwargs = {"Bucket": self.bucket, "Key": key, "Range": f"bytes={start}-{end - 1}"}
        if etag is not None:
            kwargs["IfMatch"] = etag
        with self._errors("GET", key):
            resp = self.client.get_object(**kwargs)
        self.reader.note_ranged_answer(resp.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        self._check_etag(key, etag, resp.get("ETag"))
        return resp

    def _retry_or_raise(self, exc: StorageError, failures: int, key: str, where: str) -> None:
        """Re-raise ``exc`` unless it is a body that broke off (:data:`BODY_FAILURES`) and attempts remain."""
        if failures >= self.settings.max_attempts or not isinstance(exc.__cause__, BODY_FAILURES):
            raise exc
        logger.info("GET s3://%s/%s broke off %s (%s)", self.bucket, key, where, type(exc.__cause__).__name__)

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        """Return body bytes ``[start, end)``, short only at the end of the body.

        A body that breaks off is fetched again whole (ranges here are blocks of
        a few MiB), up to ``max_attempts`` times.
        """
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {key!r}")
        if end == start:
            return b""
        if self.reader.serves(key):
            try:
                return self.reader.read_range(key, start, end, etag)
            except Unservable:
                pass
            except StorageError as exc:
                if is_invalid_range(exc):
                    return b""  # start at or past the end of the body
                raise
        failures = 0
        while True:
            try:
                resp = self._get(key, start, end, etag)
            except StorageError as exc:
                if is_invalid_range(exc):
                    return b""  # start at or past the end of the body
                raise
            try:
                with self._errors("GET", key):
                    # One read of the whole body: a fraction of the CPU of chunked readinto,
                    # no second copy, and botocore checks it against Content-Length.
                    return resp["Body"].read()
            except StorageError as exc:
                failures += 1
                self._retry_or_raise(exc, failures, key, f"in [{start}, {end}); fetching it again")

    def read_into(
        self,
        key: str,
        buffer: memoryview,
        start: int = 0,
        etag: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Fill ``buffer`` with the body from ``start`` using parallel ranged GETs.

        The first part's response fixes the ETag the other parts must match, so
        a body replaced during the read raises ``ObjectNotFoundError`` instead of
        mixing versions. Raises ``ArrayFormatError`` if the body is too short.
        """
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise ValueError("read_into needs a writable buffer")
        size = view.nbytes
        if size == 0:
            return
        part = self.settings.part_size
        offsets = list(range(0, size, part))
        known = threading.Event()  # set once the ETag all parts must match is known
        state: dict = {"etag": etag, "known": known}
        if etag is not None:
            known.set()

        def fetch(offset: int) -> None:
            length = min(part, size - offset)
            if offset:
                known.wait()
                if state.get("cancel"):
                    return
            try:
                got = self._read_span(key, view[offset : offset + length], start + offset, state, progress)
            except StorageError as exc:
                if not offset:
                    state["cancel"] = True
                    known.set()
                if is_invalid_range(exc):
                    raise ArrayFormatError(
                        f"{key}: body ends before byte {start + offset + 1} (expected {start + size} bytes)", key
                    ) from exc
                raise
            if got < length and not state.get("cancel"):
                raise ArrayFormatError(
                    f"{key}: body ends at byte {start + offset + got}, expected at least {start + size} bytes", key
                )

        if len(offsets) == 1:
            fetch(0)
            return
        with ThreadPoolExecutor(min(self.settings.max_concurrency, len(offsets)), "cc-s3-get") as pool:
            futures = [pool.submit(fetch, offset) for offset in offsets]
            wait_all(futures, state)

    def _read_span(self, key: str, target: memoryview, position: int, state: dict, progress) -> int:
        """Stream body bytes ``[position, position + len(target))`` into ``target``.

        A body that breaks off (see :data:`BODY_FAILURES`) is resumed with a new
        ranged GET from the first missing byte, pinned to the same ETag, up to
        ``max_attempts`` times. The first response fixes ``state['etag']`` when it
        is not known yet (and sets ``state['known']``). Returns the bytes read:
        fewer than asked only when the body ends first (or ``state['cancel']``).
        """
        if self.reader.serves(key):
            with contextlib.suppress(Unservable):
                got, etag = self.reader.read_span(key, target, position, state.get("etag"))
                self._fix_etag(state, etag)
                if progress is not None and got:
                    progress(got)
                return got
        done, total, failures = 0, target.nbytes, 0
        while done < total:
            if state.get("cancel"):
                return done
            resp = self._get(key, position + done, position + total, state.get("etag"))
            self._fix_etag(state, resp.get("ETag"))
            body = resp["Body"]
            try:
                with self._errors("GET", key):
                    while done < total:
                        if state.get("cancel"):
                            return done
                        n = body.readinto(target[done : done + STREAM_CHUNK])
                        if not n:  # the body ended, as long as its Content-Length said
                            return done
                        done += n
                        if progress is not None:
                            progress(n)
            except StorageError as exc:
                failures += 1
                self._retry_or_raise(exc, failures, key, f"at byte {position + done}; resuming")
            finally:
                body.close()
        return done

    @staticmethod
    def _fix_etag(state: dict, etag: str | None) -> None:
        """The first answer of a read fixes the ETag every part must match."""
        if state.get("etag") is None:
            state["etag"] = etag
            if "known" in state:
                state["known"].set()

    def open_stream(self, key: str) -> tuple[BinaryIO, ObjectInfo]:
        """Open the whole body for sequential reading; the caller closes it."""
        with self._errors("GET", key):
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
        return resp["Body"], self._info(key, resp)

    # -- writing ------------------------------------------------------------
    def write(
        self,
        key: str,
        body: bytes | memoryview | Sequence[memoryview] | BinaryIO,
        metadata: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Store ``body`` under ``key``: one PUT when small, else a parallel multipart upload."""
        Upload(self.client, self.bucket, self.settings, self._errors).write(key, body, metadata, progress)

    def delete(self, keys: Sequence[str]) -> None:
        """Delete objects in batches of 1000; missing keys are ignored."""
        keys = list(dict.fromkeys(keys))
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i : i + DELETE_BATCH]
            with self._errors("DELETE", batch[0]):
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            errors = [e for e in resp.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StorageError(
                    f"DELETE s3://{self.bucket}/{first.get('Key')} failed: {first.get('Code')} "
                    f"({len(errors)} of {len(batch)} keys not deleted)",
                    first.get("Key"),
                )

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy of ``src`` to ``dst`` with its metadata."""
        with self._errors(f"COPY to {dst!r} from", src):
            self.client.copy_object(
                Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src}, MetadataDirective="COPY"
            )

    # -- listing ------------------------------------------------------------
    def _pages(self, **kwargs) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("LIST", kwargs.get("Prefix", "")):
            yield from paginator.paginate(Bucket=self.bucket, **kwargs)

    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, sorted by key."""
        for page in self._pages(Prefix=prefix):  # S3 lists in UTF-8 binary = code point order
            for obj in page.get("Contents", []):
                yield self._info(obj["Key"], obj)

    def list_dir(self, prefix: str = "") -> Listing:
        """One ``/``-delimited level under ``prefix``: objects and sub-prefixes, sorted."""
        if self.reader.serves():
            try:
                return self.reader.list_dir(prefix)
            except Unservable as exc:
                logger.debug("LIST s3://%s/%s with boto3: %s", self.bucket, prefix, exc)
        objects, prefixes = [], []
        for page in self._pages(Prefix=prefix, Delimiter="/"):
            objects.extend(self._info(o["Key"], o) for o in page.get("Contents", []) if o["Key"] != prefix)
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        return Listing(objects=sorted(objects, key=lambda o: o.key), prefixes=sorted(set(prefixes)))

    # -- buckets ------------------------------------------------------------
    def exists_bucket(self, name: str | None = None) -> bool:
        """Tell whether bucket ``name`` (default: this one) exists.

        Policies that grant object access (``s3:GetObject``, a prefix-conditioned
        ``s3:ListBucket``) but not ``HeadBucket`` answer it with 403. HEAD answers
        carry no error code, so a refused HEAD is followed by a one-key listing,
        whose answer tells refused credentials (raised, as
        :class:`~cottoncandy.errors.CredentialsRefusedError`), a missing bucket
        and such a policy apart. Under such a policy the bucket counts as
        existing, as in 0.4.0 (its issue #87): its objects may be readable.
        """
        name = name or self.bucket
        try:
            with self._errors("HEAD", bucket=name):
                self.client.head_bucket(Bucket=name)
            return True
        except FileNotFoundError:
            return False
        except (AccessDeniedError, StorageError) as exc:  # 403, or a 400 of a server refusing the request
            if not isinstance(exc.__cause__, ClientError):
                raise  # unreachable endpoint, timeout...
            refused = exc
        try:
            with self._errors("LIST", bucket=name):
                self.client.list_objects_v2(Bucket=name, MaxKeys=1)
        except BucketNotFoundError:
            return False
        except CredentialsRefusedError:
            raise
        except AccessDeniedError:
            if not isinstance(refused, AccessDeniedError):
                raise refused
            logger.info("bucket %r: HeadBucket and listing its root are refused; assuming it exists", name)
        return True

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (in the client's region on AWS)."""
        kwargs: dict = {"Bucket": name}
        region = self.client.meta.region_name
        if is_aws_endpoint(self.credentials.endpoint_url) and region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with self._errors("create", bucket=name):
            self.client.create_bucket(**kwargs)

    def remove_bucket(self, name: str) -> None:
        """Remove the empty bucket ``name``."""
        with self._errors("remove", bucket=name):
            self.client.delete_bucket(Bucket=name)

    def list_buckets(self) -> list[str]:
        """Names of all buckets the credentials can see, sorted."""
        with self._errors("list buckets", bucket=""):
            resp = self.client.list_buckets()
        return sorted(b["Name"] for b in resp.get("Buckets", []))

