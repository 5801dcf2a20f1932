"""Where connection values and settings come from.

Nothing here runs at import time: every function reads the environment and the
files when called, and no function ever creates or writes a file.

Values are resolved when asked for, first match wins:

=================  ==========================================================
access/secret key  1. arguments (``get_interface(..., ACCESS_KEY=..., SECRET_KEY=...)``)
                   2. ``CC_ACCESS_KEY`` / ``CC_SECRET_KEY``
                   3. the cottoncandy config file, ``[login] access_key/secret_key``
                   4. ``~/.passwd-s3fs`` (s3fs-fuse's file, read by 0.4.0 too)
                   5. boto3's own chain (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``,
                      ``~/.aws/credentials``, instance roles...)
endpoint           argument > ``CC_ENDPOINT_URL`` > ``[login] endpoint_url`` > boto3
bucket             argument > ``CC_DEFAULT_BUCKET`` > ``[basic] default_bucket``
bucket creation    argument > ``[basic] force_bucket_creation`` > no
signature version  a ``botocore.config.Config`` argument > ``[basic] signature_version`` > SigV4
=================  ==========================================================

The two keys go together: a source that holds only one of them is skipped
with a warning. ``False``, ``None`` (any case), an empty value and the
placeholders 0.4.0's docs used (``auto``, ``KEYSNOTFOUND``, ``ACCESS_KEY``...)
mean "not set", in arguments, ``CC_*`` variables and the config file alike.

The config file is 0.4.0's ``options.cfg``, looked up at ``$CC_CONFIG_FILE``,
else ``~/.config/cottoncandy/options.cfg`` (``$XDG_CONFIG_HOME``; on macOS
``~/Library/Application Support/cottoncandy/options.cfg``), else
``~/.local/share/cottoncandy/options.cfg`` (``$XDG_DATA_HOME``). The keys
named above are honoured; the others 0.4.0 wrote (``default_acl``,
``threads``, ``[upload_settings]``, ``[compression]``...) are ignored. The
endpoint 0.4.0 wrote by default, ``https://s3.amazonaws.com/``, is left to
boto3 (plain AWS). A file that is not valid INI is ignored with one warning
naming it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from typing_extensions import override

from .files import TRUE_WORDS, is_set, read_config_file, read_passwd_s3fs

logger = logging.getLogger(__name__)

ENV_ACCESS_KEY = "CC_ACCESS_KEY"
ENV_SECRET_KEY = "CC_SECRET_KEY"
ENV_ENDPOINT_URL = "CC_ENDPOINT_URL"
ENV_DEFAULT_BUCKET = "CC_DEFAULT_BUCKET"

MiB = 1 << 20


@dataclass(frozen=True)
class Credentials:
    """Resolved connection values; ``None`` fields are left to boto3.

    ``profile`` names an AWS profile (``~/.aws/config``) for boto3's session,
    ``region`` the client's region. The secret key never appears in ``repr``
    or ``str``.
    """

    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None

    @override
    def __repr__(self) -> str:
        secret = None if self.secret_key is None else "***"
        return (
            f"Credentials(access_key={self.access_key!r}, secret_key={secret!r}, "
            f"endpoint_url={self.endpoint_url!r}, profile={self.profile!r}, region={self.region!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class S3Settings:
    """Tuning of the S3 client and of parallel transfers.

    Attributes
    ----------
    max_concurrency : int
        Ranged GETs / part uploads in flight for one transfer.
    part_size : int
        Bytes per ranged GET and per multipart-upload part (>= 5 MiB for uploads).
    multipart_threshold : int
        Bodies at least this large are uploaded in parts; smaller ones in one PUT.
    max_pool_connections : int
        HTTP connection pool size (raised to at least ``max_concurrency``).
    retry_mode : {'standard', 'adaptive', 'legacy'}
        botocore retry mode.
    max_attempts : int
        Total attempts per request, first one included.
    connect_timeout, read_timeout : float
        Seconds.
    signature_version : str
        botocore signature version (``'s3v4'``; the config file may say otherwise).
    client_config : botocore.config.Config, optional
        The user's own client configuration (0.4.0's ``config=`` argument),
        merged over cottoncandy's defaults; the fields above win where both
        set the same thing (see :func:`cottoncandy.backends.connect.make_backend`).
    max_inflight : int
        Requests kept in flight at once by bulk metadata calls
        (:meth:`~cottoncandy.backends.base.StorageBackend.heads`).
    """

    max_concurrency: int = 8
    part_size: int = 8 * MiB
    multipart_threshold: int = 16 * MiB
    max_pool_connections: int = 32
    retry_mode: str = "standard"
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    signature_version: str = "s3v4"
    client_config: Any = field(default=None, compare=False, repr=False)
    max_inflight: int = 64

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, not {self.max_concurrency}")
        if self.part_size < 5 * MiB:
            raise ValueError(f"part_size must be at least 5 MiB (S3 minimum), not {self.part_size}")
        if self.multipart_threshold < 1:
            raise ValueError(f"multipart_threshold must be positive, not {self.multipart_threshold}")
        if self.retry_mode not in ("standard", "adaptive", "legacy"):
            raise ValueError(f"retry_mode must be 'standard', 'adaptive' or 'legacy', not {self.retry_mode!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {self.max_attempts}")
        if self.max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, not {self.max_inflight}")

    @property
    def pool_size(self) -> int:
        """Connection pool size actually used: never below the transfer concurrency."""
        return max(self.max_pool_connections, self.max_concurrency)


@dataclass(frozen=True)
class Connection:
    """Everything resolved to open a bucket (see the module notes for the order).

    Attributes
    ----------
    bucket : str or None
    credentials : Credentials
    force_bucket_creation : bool
    signature_version : str or None
        From the config file; ``None`` when it leaves the choice to us.
    """

    bucket: str | None
    credentials: Credentials
    force_bucket_creation: bool = False
    signature_version: str | None = None


def _clean(value: object) -> str | None:
    return value.strip() if is_set(value) else None


def _first(explicit: object, env_name: str, file_values: Mapping[str, str], file_key: str) -> str | None:
    return _clean(explicit) or _clean(os.environ.get(env_name)) or file_values.get(file_key)


def _key_pair(access_key: object, secret_key: object, bucket: str | None,
              file_values: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The first source holding both keys (arguments, ``CC_*``, config file, ~/.passwd-s3fs), else boto3's."""
    sources = (
        ("the ACCESS_KEY/SECRET_KEY arguments", access_key, secret_key),
        (f"{ENV_ACCESS_KEY}/{ENV_SECRET_KEY}", os.environ.get(ENV_ACCESS_KEY), os.environ.get(ENV_SECRET_KEY)),
        ("the cottoncandy config file", file_values.get("access_key"), file_values.get("secret_key")),
    )
    for where, ak, sk in sources:
        ak, sk = _clean(ak), _clean(sk)
        if ak and sk:
            return ak, sk
        if ak or sk:
            logger.warning("%s set only one of the access key and the secret key; looking further", where)
    return read_passwd_s3fs(bucket) or (None, None)


def resolve_credentials(
    access_key: str | None = None,
    secret_key: str | None = None,
    endpoint_url: str | None = None,
    bucket: str | None = None,
    file_values: Mapping[str, str] | None = None,
) -> Credentials:
    """Resolve the key pair and the endpoint (order in the module notes).

    Parameters
    ----------
    access_key, secret_key, endpoint_url : str, optional
        Explicit values; ``False``, ``None`` and placeholders count as not given.
    bucket : str, optional
        The bucket being opened (selects a ``BUCKET:`` line of ``~/.passwd-s3fs``).
    file_values : mapping, optional
        What :func:`read_config_file` returned, when the caller already read it.

    Returns
    -------
    Credentials
        Fields still ``None`` are left for boto3 to resolve.
    """
    file_values = read_config_file() if file_values is None else file_values
    ak, sk = _key_pair(access_key, secret_key, bucket, file_values)
    url = _first(endpoint_url, ENV_ENDPOINT_URL, file_values, "endpoint_url")
    return Credentials(access_key=ak, secret_key=sk, endpoint_url=url)


def resolve_default_bucket(bucket: str | None = None, file_values: Mapping[str, str] | None = None) -> str | None:
    """Return ``bucket`` if given, else ``CC_DEFAULT_BUCKET``, else the config file's ``default_bucket``."""
    file_values = read_config_file() if file_values is None else file_values
    return _first(bucket, ENV_DEFAULT_BUCKET, file_values, "default_bucket")


def resolve_force_bucket_creation(flag: bool | None = None, file_values: Mapping[str, str] | None = None) -> bool:
    """Return ``flag`` if given, else the config file's ``[basic] force_bucket_creation`` (default ``False``)."""
    if flag is not None:
        return bool(flag)
    file_values = read_config_file() if file_values is None else file_values
    return file_values.get("force_bucket_creation", "").lower() in TRUE_WORDS


def resolve_connection(
    bucket: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    endpoint_url: str | None = None,
    force_bucket_creation: bool | None = None,
) -> Connection:
    """Resolve everything needed to open a bucket, reading the config file once.

    Parameters
    ----------
    bucket, access_key, secret_key, endpoint_url : str, optional
        Explicit values (see :func:`resolve_credentials`).
    force_bucket_creation : bool, optional
        ``None`` lets the config file's ``[basic] force_bucket_creation`` decide.

    Returns
    -------
    Connection
    """
    file_values = read_config_file()
    name = resolve_default_bucket(bucket, file_values)
    return Connection(
        bucket=name,
        credentials=resolve_credentials(access_key, secret_key, endpoint_url, name, file_values),
        force_bucket_creation=resolve_force_bucket_creation(force_bucket_creation, file_values),
        signature_version=file_values.get("signature_version"),
    )


def is_aws_endpoint(endpoint_url: str | None) -> bool:
    """Tell whether an endpoint is AWS S3 itself (``None`` or a ``*.amazonaws.com`` host)."""
    if not endpoint_url:
        return True
    from urllib.parse import urlsplit

    host = (urlsplit(endpoint_url if "//" in endpoint_url else "//" + endpoint_url).hostname or "").lower()
    return host == "amazonaws.com" or host.endswith(".amazonaws.com")
