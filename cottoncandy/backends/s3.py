"""S3 storage backend, for AWS and S3-compatible servers.

The ``s3*`` modules of this package are the only ones that use boto3 and
obstore. The backend reads through obstore (:mod:`.s3reader`) where that is
faster and exact: HEADs (many at once in :meth:`S3Backend.heads`), one-level
listings and ranged GETs; through boto3 (:mod:`.s3client`) otherwise. Ranged
reads are in :mod:`.s3download` (parallel ranged GETs straight into the
caller's buffer, resumed where a body breaks off), writes in :mod:`.s3upload`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Mapping, Sequence

from botocore.exceptions import BotoCoreError, ClientError
from typing_extensions import override

from ..config.settings import Credentials, S3Settings, is_aws_endpoint
from ..errors import AccessDeniedError, BucketNotFoundError, CredentialsRefusedError, StorageError
from ..usermeta import normalize_metadata
from .base import Body, BodyStream, Listing, ObjectInfo, ProgressCallback, StorageBackend
from .s3client import make_client, make_resource
from .s3download import Download
from .s3errors import BODY_FAILURES, BodyBrokeOff, translate_error
from .s3parts import quote_etag
from .s3reader import ObstoreReader, Unservable
from .s3upload import Upload

logger = logging.getLogger(__name__)

DELETE_BATCH = 1000


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
        self._connect_readers()

    def _connect_readers(self) -> None:
        self.reader = ObstoreReader(self.bucket, self.client, self.credentials, self.settings)
        self.download = Download(self.client, self.bucket, self.settings, self.reader, self._errors)

    @override
    def __repr__(self) -> str:
        return f"S3Backend(bucket={self.bucket!r}, endpoint_url={self.credentials.endpoint_url!r})"

    @property
    @override
    def location(self) -> str:
        """``s3:<endpoint>/<bucket>`` (AWS when no endpoint is set)."""
        return f"s3:{(self.credentials.endpoint_url or 'https://s3.amazonaws.com').rstrip('/')}/{self.bucket}"

    def __getstate__(self) -> dict:
        # botocore clients and obstore stores do not pickle: ship credentials and settings,
        # reconnect on arrival (dask sends backends to workers).
        state = self.__dict__.copy()
        state["client"] = state["reader"] = state["download"] = None
        state["_owns_client"] = True
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.client = make_client(self.credentials, self.settings)
        self._connect_readers()

    def new_client(self):
        """A fresh client with the same credentials and settings (e.g. one per process or thread)."""
        return make_client(self.credentials, self.settings)

    def new_resource(self):
        """A boto3 S3 service resource with the same credentials and settings (0.4.0's API objects)."""
        return make_resource(self.credentials, self.settings)

    @override
    def with_bucket(self, name: str) -> "S3Backend":
        """A backend for another bucket sharing this one's client and settings."""
        return S3Backend(name, self.credentials, self.settings, client=self.client)

    @override
    def close(self) -> None:
        """Stop the reader's event loop; close the client's connections if this backend created it."""
        self.reader.close()
        if self._owns_client:
            self.client.close()

    # -- errors -------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, operation: str, key: str | None = None, bucket: str | None = None,
                body: bool = False) -> Iterator[None]:
        """Translate botocore errors; with ``body`` (reading a response body), a body that broke
        off raises :class:`~.s3errors.BodyBrokeOff` (same message) for the reader to resume."""
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            error = translate_error(
                exc,
                operation=operation,
                bucket=bucket or self.bucket,
                key=key,
                endpoint_url=self.credentials.endpoint_url,
                secrets=(self.credentials.secret_key, self.credentials.access_key),
            )
            if body and isinstance(exc, BODY_FAILURES):
                error = BodyBrokeOff(error.message, error.key)
            raise error from exc

    # -- reading ------------------------------------------------------------
    @override
    def head(self, key: str) -> ObjectInfo:
        """Return size, ETag and lower-cased user metadata of ``key``."""
        if self.reader.serves(key):
            with contextlib.suppress(Unservable):
                return self.reader.head(key)
        return self._boto3_head(key)

    @override
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

    @override
    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        """Return body bytes ``[start, end)``, short only at the end of the body (see :mod:`.s3download`)."""
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {key!r}")
        if end == start:
            return b""
        return self.download.read_range(key, start, end, etag)

    @override
    def read_into(
        self,
        key: str,
        buffer: memoryview,
        start: int = 0,
        etag: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Fill ``buffer`` with the body from ``start`` using parallel ranged GETs (see :mod:`.s3download`).

        A body replaced during the read raises ``ObjectNotFoundError`` instead
        of mixing versions; a body too short raises ``ArrayFormatError``.
        """
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise ValueError("read_into needs a writable buffer")
        if view.nbytes:
            self.download.read_into(key, view, start, etag, progress)

    @override
    def open_stream(self, key: str) -> tuple[BodyStream, ObjectInfo]:
        """Open the whole body for sequential reading; the caller closes it."""
        with self._errors("GET", key):
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
        return resp["Body"], self._info(key, resp)

    # -- writing ------------------------------------------------------------
    @override
    def write(self, key: str, body: Body, metadata: Mapping[str, str] | None = None,
              progress: ProgressCallback | None = None) -> None:
        """Store ``body`` under ``key``: one PUT when small, else a parallel multipart upload."""
        Upload(self.client, self.bucket, self.settings, self._errors).write(key, body, metadata, progress)

    @override
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

    @override
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

    @override
    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, sorted by key."""
        for page in self._pages(Prefix=prefix):  # S3 lists in UTF-8 binary = code point order
            for obj in page.get("Contents", []):
                yield self._info(obj["Key"], obj)

    @override
    def list_dir(self, prefix: str = "") -> Listing:
        """One ``/``-delimited level under ``prefix``: objects and sub-prefixes, sorted."""
        if self.reader.serves():
            try:
                return self.reader.list_dir(prefix)
            except Unservable as exc:
                logger.debug("LIST s3://%s/%s with boto3: %s", self.bucket, prefix, exc)
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        for page in self._pages(Prefix=prefix, Delimiter="/"):
            objects.extend(self._info(o["Key"], o) for o in page.get("Contents", []) if o["Key"] != prefix)
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        return Listing(objects=sorted(objects, key=lambda o: o.key), prefixes=sorted(set(prefixes)))

    # -- buckets ------------------------------------------------------------
    @override
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

    @override
    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (in the client's region on AWS)."""
        kwargs: dict = {"Bucket": name}
        region = self.client.meta.region_name
        if is_aws_endpoint(self.credentials.endpoint_url) and region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with self._errors("create", bucket=name):
            self.client.create_bucket(**kwargs)

    @override
    def remove_bucket(self, name: str) -> None:
        """Remove the empty bucket ``name``."""
        with self._errors("remove", bucket=name):
            self.client.delete_bucket(Bucket=name)

    @override
    def list_buckets(self) -> list[str]:
        """Names of all buckets the credentials can see, sorted."""
        with self._errors("list buckets", bucket=""):
            resp = self.client.list_buckets()
        return sorted(b["Name"] for b in resp.get("Buckets", []))
