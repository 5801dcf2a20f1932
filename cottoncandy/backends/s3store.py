"""Creating obstore S3 stores that talk to the server exactly as the backend's boto3 client does.

The store is derived from the boto3 client itself, not from the settings that
made it, so that both clients always agree, however boto3 resolved them:

* **identity**: the credentials the client signs with, whichever link of
  boto3's chain found them (explicit keys, ``AWS_*``, profiles, roles), handed
  to obstore through its ``credential_provider`` hook and refreshed whenever
  botocore refreshes them. They never go into the store's configuration,
  which obstore can show. A client without credentials gets no store (boto3
  then raises its clear "no credentials" error) so that obstore never goes
  looking for an instance role on the network by itself.
* **endpoint, region, addressing**: path-style requests to the client's
  endpoint for S3-compatible servers (plain ``http`` allowed when the endpoint
  says so); on AWS, the bucket's own region (boto3 follows region redirects,
  obstore does not) and virtual-hosted requests as boto3 makes them.
* **time bounds**: :class:`~cottoncandy.config.S3Settings` ``connect_timeout``
  and ``read_timeout`` (reset by every successful read, like botocore's socket
  timeout, so a stalled server is caught and a slow large body is not), and
  ``max_attempts`` attempts in all with exponential backoff, within a total
  retry budget. Unlike botocore, obstore resumes a body that broke off by
  itself, from the first missing byte, within the same attempts.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from botocore.credentials import RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError
from obstore.store import S3Store
from typing_extensions import override

if TYPE_CHECKING:  # pragma: no cover - a name only the type checker sees
    from obstore.store import S3Credential

from ..config.settings import S3Settings, is_aws_endpoint

logger = logging.getLogger(__name__)

#: Longest a single request may take in all. Stalls are caught by ``read_timeout``; this only
#: replaces obstore's default of 30 s, which would fail large ranged reads on slow links.
REQUEST_LIMIT = timedelta(hours=1)
#: How long obstore may keep refreshable credentials before asking botocore again
#: (botocore renews them at least 10 minutes before they expire).
REFRESH_EVERY = timedelta(minutes=5)
#: Bucket names usable as a host name label (else boto3 addresses AWS path-style too).
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class BotocoreIdentity:
    """obstore credential provider returning the keys a botocore client signs with.

    Parameters
    ----------
    credentials : botocore.credentials.Credentials
        The client's credentials object (refreshable ones refresh themselves).
    """

    def __init__(self, credentials) -> None:
        self._credentials = credentials

    @override
    def __repr__(self) -> str:
        return "BotocoreIdentity(<the boto3 client's credentials>)"

    def __call__(self) -> S3Credential:
        frozen = self._credentials.get_frozen_credentials()
        expires = None
        if isinstance(self._credentials, RefreshableCredentials):
            expires = datetime.now(timezone.utc) + REFRESH_EVERY
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": expires,
        }


def client_credentials(client):
    """The credentials object a boto3 client signs with, or ``None`` if it has none.

    botocore offers no public accessor; ``_get_credentials`` is the one its own
    presigners use. If a botocore release drops it, the backend simply keeps
    using boto3 for everything (``None``).
    """
    getter = getattr(client, "_get_credentials", None)
    try:
        return getter() if getter is not None else None
    except (AttributeError, BotoCoreError):
        return None


def store_options(bucket: str, endpoint_url: str, region: str, settings: S3Settings) -> dict:
    """Keyword arguments of :class:`obstore.store.S3Store` (except the credential provider).

    Parameters
    ----------
    bucket : str
    endpoint_url : str
        The endpoint the boto3 client resolved (``client.meta.endpoint_url``).
    region : str
        The region to sign for (on AWS: the bucket's).
    settings : S3Settings
        Timeouts and attempts.
    """
    config: dict = {"region": region, "skip_signature": False}
    if is_aws_endpoint(endpoint_url):
        if _DNS_BUCKET.match(bucket):
            config["endpoint"] = f"https://{bucket}.s3.{region}.amazonaws.com"
            config["virtual_hosted_style_request"] = True
        else:
            config["endpoint"] = f"https://s3.{region}.amazonaws.com"
            config["virtual_hosted_style_request"] = False
    else:
        config["endpoint"] = endpoint_url.rstrip("/")
        config["virtual_hosted_style_request"] = False
    # worst case of botocore's standard mode: every attempt times out, backoff capped at 20 s
    budget = settings.max_attempts * (settings.connect_timeout + settings.read_timeout) + 20 * settings.max_attempts
    return {
        "config": config,
        "client_options": {
            "allow_http": config["endpoint"].startswith("http://"),
            "connect_timeout": timedelta(seconds=settings.connect_timeout),
            "read_timeout": timedelta(seconds=settings.read_timeout),
            "timeout": REQUEST_LIMIT,
        },
        "retry_config": {
            "max_retries": settings.max_attempts - 1,
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=20),
                        "base": 2},
            "retry_timeout": timedelta(seconds=budget),
        },
    }


def bucket_region(client, bucket: str) -> str:
    """The region to sign for: on AWS the bucket's own (asked once with HEAD bucket), else the client's."""
    region = client.meta.region_name or "us-east-1"
    if not is_aws_endpoint(client.meta.endpoint_url):
        return region
    try:
        headers = client.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
    except (BotoCoreError, ClientError, KeyError) as exc:
        logger.debug("region of bucket %r not found (%s); using %s", bucket, type(exc).__name__, region)
        return region
    return headers.get("x-amz-bucket-region") or region


def make_store(client, bucket: str, settings: S3Settings) -> S3Store | None:
    """An obstore store for ``bucket`` with the client's identity, or ``None`` if the client has none."""
    credentials = client_credentials(client)
    if credentials is None:
        return None
    region = bucket_region(client, bucket)
    return S3Store(bucket, credential_provider=BotocoreIdentity(credentials),
                   **store_options(bucket, client.meta.endpoint_url, region, settings))
