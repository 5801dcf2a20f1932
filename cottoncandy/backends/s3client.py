"""Creating boto3 S3 clients for AWS and for S3-compatible servers.

Third-party servers get path-style addressing and CRC checksums only when
required (boto3 >= 1.36 sends and checks new checksums that many servers
reject); retries, timeouts and the pool size come from
:class:`~cottoncandy.config.S3Settings`. Every client creation also makes sure
botocore's debug logs cannot show the keys (:mod:`.s3logs`).
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ProfileNotFound

from ..config import Credentials, S3Settings, is_aws_endpoint
from .s3errors import translate_error
from .s3logs import protect as protect_logs

_client_lock = threading.Lock()
_session = None


def make_client(credentials: Credentials | None = None, settings: S3Settings | None = None):
    """Create a boto3 S3 client (thread-safe; share it between threads).

    Parameters
    ----------
    credentials : Credentials, optional
        Resolved values (see :func:`cottoncandy.config.resolve_credentials`);
        ``None`` fields are left to boto3's own chain. A ``profile`` gets its
        own boto3 session; ``region`` overrides the session's.
    settings : S3Settings, optional
        Retries, timeouts and pool size.

    Raises
    ------
    ValueError
        The endpoint URL is not ``http(s)://host[:port]``.
    cottoncandy.errors.CredentialsMissingError
        The profile does not exist.
    """
    credentials = credentials or Credentials()
    settings = settings or S3Settings()
    if credentials.endpoint_url is not None:
        check_endpoint_url(credentials.endpoint_url)
    # botocore's debug logs print the Authorization header, which names the access key
    protect_logs(credentials.access_key, credentials.secret_key)
    aws = is_aws_endpoint(credentials.endpoint_url)
    options: dict = dict(
        signature_version="s3v4",
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=settings.pool_size,
    )
    if not aws:
        options["s3"] = {"addressing_style": "path"}
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    explicit = credentials.access_key is not None and credentials.secret_key is not None
    with _client_lock:  # boto3 sessions are not thread-safe: create clients under a lock
        try:
            if credentials.profile:
                session = boto3.session.Session(profile_name=credentials.profile)
            else:
                session = _shared_session() if explicit else boto3.session.Session()
            region = credentials.region or session.region_name or (None if aws else "us-east-1")
        except ProfileNotFound as exc:
            raise translate_error(exc, operation="connect") from exc
        return session.client(
            "s3",
            endpoint_url=credentials.endpoint_url,
            region_name=region,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            config=Config(**options),
        )


def check_endpoint_url(url: str) -> str:
    """Return ``url`` if it is an ``http://`` or ``https://`` URL with a host, else raise ``ValueError``.

    botocore's own message ("Invalid endpoint: s3.example.org") does not say
    what is missing, and it accepts other schemes that then fail on the first
    request.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        hint = f" (e.g. https://{url.strip()})" if "//" not in url else ""
        raise ValueError(f"endpoint URL {url!r} must start with http:// or https:// and name a host{hint}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"endpoint URL {url!r} has an invalid port") from None
    return url.strip()


def _shared_session():
    """One boto3 session reused for clients with explicit keys (saves ~0.2 s per client).

    Clients without explicit keys get a fresh session so that boto3 resolves
    the current ``AWS_*`` environment and profiles each time.
    """
    global _session
    if _session is None:
        _session = boto3.session.Session()
    return _session
