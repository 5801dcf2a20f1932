"""Credential and transfer-settings resolution.

Nothing here runs at import time: every function reads the environment and the
config file when called, and no function ever creates or writes a file.

Credentials and the endpoint are resolved per value, first match wins:

1. explicit arguments (``get_interface(..., ACCESS_KEY=..., endpoint_url=...)``);
2. environment variables:

   ``CC_ACCESS_KEY``
       S3 access key id.
   ``CC_SECRET_KEY``
       S3 secret access key.
   ``CC_ENDPOINT_URL``
       URL of the S3-compatible server (``https://s3.example.org``).
   ``CC_DEFAULT_BUCKET``
       Bucket used when none is given.
   ``CC_CONFIG_FILE``
       Path of the cottoncandy config file to read instead of the default.

3. the cottoncandy config file in the 0.4.0 format::

       [login]
       access_key = ...
       secret_key = ...
       endpoint_url = https://...
       [basic]
       default_bucket = ...

   looked up at ``$CC_CONFIG_FILE``, else ``~/.config/cottoncandy/options.cfg``
   (``$XDG_CONFIG_HOME``), else where cottoncandy 0.4.0 wrote it,
   ``~/.local/share/cottoncandy/options.cfg`` (``$XDG_DATA_HOME``).
   Placeholder values 0.4.0 wrote (``auto``, ``KEYSNOTFOUND``,
   ``ACCESS_KEY``...) count as unset;
4. otherwise ``None``, so boto3 applies its own chain (``AWS_ACCESS_KEY_ID``,
   ``AWS_PROFILE``, ``~/.aws/credentials``, instance roles...).
"""

from __future__ import annotations

import configparser
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

ENV_ACCESS_KEY = "CC_ACCESS_KEY"
ENV_SECRET_KEY = "CC_SECRET_KEY"
ENV_ENDPOINT_URL = "CC_ENDPOINT_URL"
ENV_DEFAULT_BUCKET = "CC_DEFAULT_BUCKET"
ENV_CONFIG_FILE = "CC_CONFIG_FILE"

#: Values cottoncandy 0.4.0 (and its docs) left in config files meaning "not set".
PLACEHOLDERS = frozenset(
    {"", "auto", "keysnotfound", "access_key", "secret_key", "fill_in"}
)
#: 0.4.0 wrote this endpoint as a default; it means "plain AWS", best left to boto3.
_DEFAULT_AWS_ENDPOINTS = frozenset({"https://s3.amazonaws.com", "https://s3.amazonaws.com/"})

MiB = 1 << 20


@dataclass(frozen=True)
class Credentials:
    """Resolved connection values; ``None`` fields are left to boto3.

    The secret key never appears in ``repr`` or ``str``.
    """

    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None

    def __repr__(self) -> str:
        secret = None if self.secret_key is None else "***"
        return (
            f"Credentials(access_key={self.access_key!r}, secret_key={secret!r}, "
            f"endpoint_url={self.endpoint_url!r})"
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


def config_file_paths() -> list[Path]:
    """Candidate config files, in lookup order (``CC_CONFIG_FILE`` alone when set)."""
    explicit = os.environ.get(ENV_CONFIG_FILE)
    if explicit:
        return [Path(explicit).expanduser()]
    home = Path.home()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    data_home = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return [config_home / "cottoncandy" / "options.cfg", data_home / "cottoncandy" / "options.cfg"]


def read_config_file() -> dict[str, str]:
    """Read the first existing cottoncandy config file.

    Returns
    -------
    dict
        ``access_key``, ``secret_key``, ``endpoint_url``, ``default_bucket``
        for the values that are set (placeholders dropped). Empty when no file
        exists or it cannot be parsed (a warning is logged, without values).
    """
    for path in config_file_paths():
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError) as exc:
            logger.warning("ignoring unreadable cottoncandy config file %s: %s", path, type(exc).__name__)
            return {}
        values = {
            "access_key": parser.get("login", "access_key", fallback=None),
            "secret_key": parser.get("login", "secret_key", fallback=None),
            "endpoint_url": parser.get("login", "endpoint_url", fallback=None),
            "default_bucket": parser.get("basic", "default_bucket", fallback=None),
        }
        if values["endpoint_url"] and values["endpoint_url"].strip() in _DEFAULT_AWS_ENDPOINTS:
            values["endpoint_url"] = None
        logger.debug("read cottoncandy config file %s", path)
        return {k: v.strip() for k, v in values.items() if _is_set(v)}
    return {}


def _is_set(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in PLACEHOLDERS


def _first(explicit: str | None, env_name: str, file_values: dict[str, str], file_key: str) -> str | None:
    if _is_set(explicit):
        return explicit.strip()  # type: ignore[union-attr]
    env = os.environ.get(env_name)
    if _is_set(env):
        return env.strip()  # type: ignore[union-attr]
    return file_values.get(file_key)


def resolve_credentials(
    access_key: str | None = None,
    secret_key: str | None = None,
    endpoint_url: str | None = None,
) -> Credentials:
    """Resolve access key, secret key and endpoint (arguments > env > config file > boto3).

    Parameters
    ----------
    access_key, secret_key, endpoint_url : str, optional
        Explicit values; placeholders such as ``'auto'`` count as not given.

    Returns
    -------
    Credentials
        Fields still ``None`` are left for boto3 to resolve. If only one of
        the two keys resolves, both are left to boto3.
    """
    file_values = read_config_file()
    ak = _first(access_key, ENV_ACCESS_KEY, file_values, "access_key")
    sk = _first(secret_key, ENV_SECRET_KEY, file_values, "secret_key")
    url = _first(endpoint_url, ENV_ENDPOINT_URL, file_values, "endpoint_url")
    if (ak is None) != (sk is None):
        logger.warning("only one of access key / secret key is configured; leaving both to boto3")
        ak = sk = None
    return Credentials(access_key=ak, secret_key=sk, endpoint_url=url)


def resolve_default_bucket(bucket: str | None = None) -> str | None:
    """Return ``bucket`` if given, else ``CC_DEFAULT_BUCKET``, else the config file's ``default_bucket``."""
    if _is_set(bucket):
        return bucket.strip()  # type: ignore[union-attr]
    env = os.environ.get(ENV_DEFAULT_BUCKET)
    if _is_set(env):
        return env.strip()  # type: ignore[union-attr]
    return read_config_file().get("default_bucket")


def is_aws_endpoint(endpoint_url: str | None) -> bool:
    """Tell whether an endpoint is AWS S3 itself (``None`` or a ``*.amazonaws.com`` host)."""
    if not endpoint_url:
        return True
    from urllib.parse import urlsplit

    host = (urlsplit(endpoint_url if "//" in endpoint_url else "//" + endpoint_url).hostname or "").lower()
    return host == "amazonaws.com" or host.endswith(".amazonaws.com")
