"""Connection values and settings: where credentials, endpoint and bucket come from.

:mod:`.settings` resolves them (arguments, environment, config files, in that
order) into :class:`Credentials`, :class:`S3Settings` and :class:`Connection`;
:mod:`.files` reads the files cottoncandy 0.4.0 users have. Nothing is read at
import time.
"""

from .settings import (
    ENV_ACCESS_KEY,
    ENV_DEFAULT_BUCKET,
    ENV_ENDPOINT_URL,
    ENV_SECRET_KEY,
    Connection,
    Credentials,
    S3Settings,
    is_aws_endpoint,
    resolve_connection,
    resolve_credentials,
    resolve_default_bucket,
    resolve_force_bucket_creation,
)

__all__ = [
    "ENV_ACCESS_KEY",
    "ENV_DEFAULT_BUCKET",
    "ENV_ENDPOINT_URL",
    "ENV_SECRET_KEY",
    "Connection",
    "Credentials",
    "S3Settings",
    "is_aws_endpoint",
    "resolve_connection",
    "resolve_credentials",
    "resolve_default_bucket",
    "resolve_force_bucket_creation",
]
