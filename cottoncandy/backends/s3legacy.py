"""cottoncandy 0.4.0's ``backend_interface`` on S3: boto3 resource objects, as 0.4.0 handed out.

The boto3 resource (``connection``) is created on first use with the
backend's credentials and settings. boto3 resources are not thread-safe; use
them from one thread, as 0.4.0 scripts did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from typing_extensions import override

from ..paths import normalize_key
from .legacy import BackendInterface, listing_options
from .s3errors import translate_error

if TYPE_CHECKING:  # pragma: no cover - a name only the type checker sees
    from .s3 import S3Backend


class S3BackendInterface(BackendInterface):
    """0.4.0's ``S3Client`` names over an :class:`~cottoncandy.backends.s3.S3Backend`."""

    backend: S3Backend

    def __init__(self, backend: S3Backend) -> None:
        super().__init__(backend)
        self._connection = None

    @property
    def url(self) -> str | None:
        """The endpoint (``None``: AWS)."""
        return self.backend.credentials.endpoint_url

    @property
    def connection(self):
        """A boto3 S3 service resource (0.4.0's ``S3Client.connection``)."""
        if self._connection is None:
            self._connection = self.backend.new_resource()
        return self._connection

    @override
    def get_bucket(self):
        """The boto3 ``Bucket`` of the current bucket."""
        return self.connection.Bucket(self.backend.bucket)

    @override
    def list_objects(self, **kwargs: Any):
        """A boto3 ``ObjectSummary`` collection, built as 0.4.0 did.

        ``filter=dict(Prefix=...)`` (default: everything), ``limit`` (default
        1000), ``page_size`` (default 1000), and any other collection method
        as ``name=value`` (a dict value is passed as keywords).
        """
        prefix, options = listing_options(kwargs)
        request = self.get_bucket().objects
        request = request.filter(Prefix=prefix) if prefix else request.all()
        for name, value in options.items():
            method = getattr(request, name)
            request = method(**value) if isinstance(value, dict) else method(value)
        return request.all()

    @override
    def get_s3_object(self, object_name: str, bucket_name: str | None = None):
        """A boto3 ``Object`` (lazy: it is not fetched until an attribute is read)."""
        return self.connection.Object(bucket_name or self.backend.bucket, normalize_key(object_name))

    @override
    def get_owner(self, object_name: str) -> dict[str, str]:
        """The object's owner from its ACL, else from s3cmd's ``s3cmd-attrs`` metadata (as 0.4.0)."""
        key = normalize_key(object_name)
        obj = self.get_s3_object(key)
        try:
            return dict(obj.Acl().owner)
        except ClientError as acl_error:
            try:
                attrs = {k.lower(): v for k, v in obj.metadata.items()}.get("s3cmd-attrs")
            except (ClientError, BotoCoreError) as exc:
                raise self._translated(exc, key) from exc
            if not attrs:
                raise self._translated(acl_error, key) from acl_error
            return dict(item.split(":", 1) for item in attrs.split("/") if ":" in item)
        except BotoCoreError as exc:
            raise self._translated(exc, key) from exc

    def _translated(self, exc: BaseException, key: str):
        credentials = self.backend.credentials
        return translate_error(exc, operation="GET ACL of", bucket=self.backend.bucket, key=key,
                               endpoint_url=credentials.endpoint_url,
                               secrets=(credentials.secret_key, credentials.access_key))
