"""One table translating S3 / botocore errors to cottoncandy exceptions.

Messages name the operation, bucket and key, the S3 error code and the HTTP
status. They never carry credentials: server messages of authentication errors
(which may echo the access key or the string to sign) are dropped, and any
other server message is scrubbed of the secrets the caller passes in.

Authentication failures come in three kinds, so that a user knows what to fix:
no credentials at all or an unknown profile (:class:`CredentialsMissingError`:
nothing was sent), keys the server does not accept
(:class:`CredentialsRefusedError`: unknown access key, wrong secret, expired
token), and any other refusal (:class:`AccessDeniedError`: valid keys without
the permission, or a bare 403 without an error code, as HEAD answers carry
no body).
"""

from __future__ import annotations

from typing import Iterable

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ..errors import (
    AccessDeniedError,
    BucketNotFoundError,
    CottonCandyError,
    CredentialsMissingError,
    CredentialsRefusedError,
    ObjectNotFoundError,
    StorageError,
)

#: S3 error code (or HTTP status as a string) -> exception class.
ERROR_CODES: dict[str, type[CottonCandyError]] = {
    "NoSuchKey": ObjectNotFoundError,
    "404": ObjectNotFoundError,
    "NotFound": ObjectNotFoundError,
    "NoSuchBucket": BucketNotFoundError,
    "AccessDenied": AccessDeniedError,
    "403": AccessDeniedError,
    "Forbidden": AccessDeniedError,
    # The credentials themselves are refused (a policy refusing an operation says AccessDenied).
    "InvalidAccessKeyId": CredentialsRefusedError,
    "SignatureDoesNotMatch": CredentialsRefusedError,
    "ExpiredToken": CredentialsRefusedError,
    "InvalidToken": CredentialsRefusedError,
    "TokenRefreshRequired": CredentialsRefusedError,
    "AllAccessDisabled": AccessDeniedError,
    "AccountProblem": AccessDeniedError,
    "RequestTimeTooSkewed": AccessDeniedError,
    # An If-Match that no longer matches: the object we were reading changed.
    "PreconditionFailed": ObjectNotFoundError,
    "412": ObjectNotFoundError,
}

#: Fallback on the HTTP status when the code is not in the table.
HTTP_STATUS: dict[int, type[CottonCandyError]] = {
    401: AccessDeniedError,
    403: AccessDeniedError,
    404: ObjectNotFoundError,
    412: ObjectNotFoundError,
}

_MAX_SERVER_MESSAGE = 200


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _target(bucket: str | None, key: str | None) -> str:
    if bucket and key is not None:
        return f"s3://{bucket}/{key}"
    if bucket:
        return f"bucket {bucket!r}"
    return repr(key) if key is not None else "the server"


def translate_error(
    exc: BaseException,
    *,
    operation: str,
    bucket: str | None = None,
    key: str | None = None,
    endpoint_url: str | None = None,
    secrets: Iterable[str | None] = (),
) -> CottonCandyError:
    """Return the cottoncandy exception for a botocore exception.

    Parameters
    ----------
    exc : BaseException
        Usually a ``ClientError`` or ``BotoCoreError``.
    operation : str
        What was being done (``'GET'``, ``'list'``...), for the message.
    bucket, key : str, optional
        What it was done to; named in the message and stored on the error.
    endpoint_url : str, optional
        Named in connection and authentication messages (``None``: AWS S3).
    secrets : iterable of str
        Strings to mask if a server message echoes them.

    Returns
    -------
    CottonCandyError
        The caller raises it ``from exc``.
    """
    secrets = tuple(secrets)
    where = _target(bucket, key)
    server = endpoint_url or "AWS S3"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {}) or {}
        code = str(error.get("Code", "") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        cls = ERROR_CODES.get(code) or HTTP_STATUS.get(status or 0, StorageError)
        if code in ("PreconditionFailed", "412") or status == 412:
            return ObjectNotFoundError(f"{operation} {where}: the object changed while being read", key)
        if cls is BucketNotFoundError or (cls is ObjectNotFoundError and code == "NoSuchBucket"):
            return BucketNotFoundError(f"{operation} {where}: bucket {bucket!r} does not exist", key)
        detail = f"{code or 'error'} (HTTP {status})"
        if cls is StorageError:
            server_message = str(error.get("Message", "") or "")[:_MAX_SERVER_MESSAGE]
            if server_message:
                detail += ": " + _scrub(server_message, secrets)
        if cls is ObjectNotFoundError:
            return ObjectNotFoundError(f"{operation} {where}: no such object [{detail}]", key)
        if cls is CredentialsRefusedError:
            return CredentialsRefusedError(
                f"{operation} {where}: credentials refused by the server ({server}) [{detail}]; check the "
                "access key and the secret key, and which source they came from (arguments, "
                "CC_ACCESS_KEY/CC_SECRET_KEY, the cottoncandy config file, ~/.passwd-s3fs, the AWS "
                "configuration)", key
            )
        if issubclass(cls, AccessDeniedError):
            return AccessDeniedError(
                f"{operation} {where}: access denied by the server ({server}) [{detail}]; check the "
                "credentials and permissions", key
            )
        return cls(f"{operation} {where} failed: {detail}", key)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsMissingError(
            f"{operation} {where}: no S3 credentials found, nothing was sent to {server} (give them as "
            "arguments, in CC_ACCESS_KEY/CC_SECRET_KEY, in the cottoncandy config file or in the AWS "
            "configuration)",
            key,
        )
    if isinstance(exc, ProfileNotFound):
        profile = exc.kwargs.get("profile", "")
        return CredentialsMissingError(
            f"no AWS profile {profile!r} (looked up in ~/.aws/config and ~/.aws/credentials, or "
            "AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE)", key
        )
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return StorageError(
            f"{operation} {where}: connection to {server} failed ({type(exc).__name__}); "
            "is the server running and reachable?",
            key,
        )
    if isinstance(exc, BotoCoreError):
        return StorageError(f"{operation} {where} failed: {_scrub(str(exc), secrets)[:_MAX_SERVER_MESSAGE]}", key)
    return StorageError(f"{operation} {where} failed: {type(exc).__name__}", key)
