"""Opening a storage backend from what the caller gave and what the machine holds.

:func:`make_backend` is the one place where arguments, environment, config
files and the user's botocore ``Config`` meet (see :mod:`cottoncandy.config`
for the order), and where an S3 bucket is checked before anything else
happens, so that refused credentials and missing buckets fail at once with a
clear message instead of at the first transfer.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import BucketNotFoundError
from .base import StorageBackend

if TYPE_CHECKING:  # pragma: no cover
    from .s3 import S3Backend

logger = logging.getLogger(__name__)


def make_backend(
    bucket_name: str | None = None,
    backend: str = "s3",
    access_key: str | None = None,
    secret_key: str | None = None,
    endpoint_url: str | None = None,
    force_bucket_creation: bool | None = None,
    config: Any = None,
    profile: str | None = None,
    region: str | None = None,
    **settings: Any,
) -> StorageBackend:
    """Build a storage backend and check its bucket.

    Parameters
    ----------
    bucket_name : str, optional
        Bucket name (``backend='s3'``; default ``CC_DEFAULT_BUCKET`` or the
        config file's ``default_bucket``) or directory path (``backend='local'``).
    backend : {'s3', 'local'}
    access_key, secret_key, endpoint_url : str, optional
        Explicit S3 connection values; missing ones are resolved from the
        environment, the cottoncandy config file, ``~/.passwd-s3fs`` and
        boto3's own chain (see :mod:`cottoncandy.config`).
    force_bucket_creation : bool, optional
        Create the bucket (or directory) if it does not exist. ``None``: the
        config file's ``[basic] force_bucket_creation`` (0.4.0's default: no).
    config : botocore.config.Config, optional
        The S3 client's configuration, as 0.4.0 accepted it (timeouts,
        retries, proxies, signature version...). Merged over cottoncandy's
        defaults; ``settings`` given here win where both set the same thing.
    profile : str, optional
        AWS profile whose credentials and region boto3 uses; keys from the
        environment or the cottoncandy config file are then ignored (explicit
        ``access_key``/``secret_key`` still win), as with ``aws --profile``.
    region : str, optional
        Region of the S3 client (default: the profile's, else boto3's).
    **settings
        :class:`cottoncandy.config.S3Settings` fields (``max_concurrency``,
        ``part_size``, ``max_attempts``, ``retry_mode``, timeouts...).
        Ignored by the local backend.

    Returns
    -------
    StorageBackend
        For S3 with a bucket name, a bucket known to exist (or just created).
        A local directory need not exist: the first write creates it.

    Raises
    ------
    BucketNotFoundError
        The S3 bucket does not exist and is not to be created.
    CredentialsRefusedError
        The server refused the credentials.
    TypeError
        ``config`` is not a botocore ``Config``, or an unknown setting was given.
    """
    if backend == "local":
        from ..config.settings import resolve_force_bucket_creation
        from .local import LocalBackend

        if not bucket_name:
            raise ValueError("backend='local' needs a directory as bucket_name")
        return LocalBackend(bucket_name, create=resolve_force_bucket_creation(force_bucket_creation))
    if backend != "s3":
        raise ValueError(f"unknown backend {backend!r}: use 's3' or 'local'")
    from ..config.settings import S3Settings, resolve_connection
    from .s3 import S3Backend
    from .s3client import settings_from_config

    connection = resolve_connection(bucket_name, access_key, secret_key, endpoint_url, force_bucket_creation)
    credentials = connection.credentials
    if profile and access_key is None:
        credentials = replace(credentials, access_key=None, secret_key=None)
    if profile or region:
        credentials = replace(credentials, profile=profile or None, region=region or None)
    fields = settings_from_config(config) if config is not None else {}
    fields.update(settings)
    if connection.signature_version and "signature_version" not in fields:
        fields["signature_version"] = connection.signature_version
    # no bucket: a backend for bucket-level calls only (list, create), as get_interface() without one allows
    store = S3Backend(connection.bucket, credentials,  # type: ignore[arg-type]
                      S3Settings(**fields, client_config=config))
    if connection.bucket:
        try:
            _open_bucket(store, connection.force_bucket_creation)
        except BaseException:
            store.close()
            raise
    return store


def _open_bucket(store: "S3Backend", create: bool) -> None:
    """Check that the S3 bucket exists; create it if asked to."""
    if store.exists_bucket():
        return
    where = store.credentials.endpoint_url or "AWS"
    if not create:
        raise BucketNotFoundError(
            f"bucket {store.bucket!r} does not exist at {where} (pass force_bucket_creation=True to create it)",
            store.bucket,
        )
    logger.info("creating bucket %r at %s", store.bucket, where)
    store.create_bucket(store.bucket)
