"""cottoncandy: sugar for S3.

numpy arrays on S3-compatible storage (or a local directory), read and
written from Python, and a FUSE mount that shows them as ``.npy`` files.
Importing the package reads no file, opens no connection and prints nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AccessDeniedError,
    ArrayFormatError,
    ArrayTooLargeError,
    BucketNotFoundError,
    CottonCandyError,
    CredentialsMissingError,
    CredentialsRefusedError,
    InvalidKeyError,
    ObjectNotFoundError,
    StorageError,
    UnknownCodecError,
    UnsupportedArrayError,
)

if TYPE_CHECKING:  # pragma: no cover - imported on first use (see __getattr__)
    from .interface import Interface

__version__ = "1.0.0.dev0"

__all__ = [
    "get_interface",
    "get_browser",
    "Interface",
    "CottonCandyError",
    "ObjectNotFoundError",
    "BucketNotFoundError",
    "AccessDeniedError",
    "CredentialsMissingError",
    "CredentialsRefusedError",
    "InvalidKeyError",
    "ArrayFormatError",
    "ArrayTooLargeError",
    "UnknownCodecError",
    "UnsupportedArrayError",
    "StorageError",
]


def get_interface(
    bucket_name: str | None = None,
    ACCESS_KEY: str | None = None,
    SECRET_KEY: str | None = None,
    endpoint_url: str | None = None,
    force_bucket_creation: bool | None = None,
    verbose: bool = True,
    backend: str = "s3",
    progress: Any = False,
    **botocore_kwargs: Any,
) -> "Interface":
    """Return an :class:`Interface` to a bucket.

    Parameters
    ----------
    bucket_name : str, optional
        S3 bucket name, or the directory for ``backend='local'`` (it need not
        exist yet: the first write creates it). Defaults to ``CC_DEFAULT_BUCKET``
        or the config file's ``default_bucket``.
    ACCESS_KEY, SECRET_KEY : str, optional
        S3 credentials. When not given (``False`` and ``None`` mean not given):
        ``CC_ACCESS_KEY``/``CC_SECRET_KEY``, then
        ``~/.config/cottoncandy/options.cfg``, then ``~/.passwd-s3fs``, then
        boto3's own chain (``AWS_ACCESS_KEY_ID``..., profiles, ``~/.aws``).
    endpoint_url : str, optional
        S3 endpoint (MinIO, Ceph, Wasabi...); ``CC_ENDPOINT_URL`` or the config
        file otherwise; AWS by default.
    force_bucket_creation : bool, optional
        Create the bucket if it does not exist. Default: the config file's
        ``force_bucket_creation`` (``False`` as 0.4.0 wrote it).
    verbose : bool
        Log the connection at INFO level (0.4.0 printed it).
    backend : {'s3', 'local'}
    progress : bool or callable
        Show progress of big transfers (``True``: tqdm bar).
    **botocore_kwargs
        ``config``: a ``botocore.config.Config`` (timeouts, retries, proxies,
        signature version...), as in 0.4.0. Transfer and retry settings:
        ``max_concurrency``, ``part_size``, ``multipart_threshold``,
        ``max_attempts``, ``retry_mode``, ``connect_timeout``, ``read_timeout``,
        ``max_pool_connections``; where these and ``config`` set the same
        thing, these win. Ignored by the local backend.

    Returns
    -------
    Interface

    Raises
    ------
    BucketNotFoundError
        The S3 bucket does not exist (and is not to be created).
    CredentialsRefusedError
        The server refused the credentials. A bucket whose policy refuses
        ``HeadBucket`` but lets objects be read is accepted.
    """
    import logging

    from .backends.connect import make_backend
    from .interface import Interface

    store = make_backend(
        bucket_name,
        backend,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        endpoint_url=endpoint_url or None,
        force_bucket_creation=force_bucket_creation,
        **botocore_kwargs,
    )
    interface = Interface(store, progress=progress)
    if verbose:
        logging.getLogger(__name__).info("cottoncandy: using %r", store)
    return interface


def get_browser(bucket_name: str | None = None, ACCESS_KEY: str | None = None, SECRET_KEY: str | None = None,
                endpoint_url: str | None = None, backend: str = "s3", **kwargs: Any):
    """Return a tab-completion browser over a bucket (see :meth:`Interface.get_browser`); it never creates one."""
    kwargs.setdefault("force_bucket_creation", False)
    interface = get_interface(bucket_name, ACCESS_KEY, SECRET_KEY, endpoint_url, verbose=False,
                              backend=backend, **kwargs)
    return interface.get_browser()


def __getattr__(name: str) -> Any:
    if name == "Interface":
        from .interface import Interface

        return Interface
    raise AttributeError(f"module 'cottoncandy' has no attribute {name!r}")
