"""One table translating S3 errors, from botocore or from obstore, to cottoncandy exceptions.

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

obstore (:mod:`.s3reader`) raises a handful of classes whose text carries the
HTTP status and the server's XML error body; :func:`translate_obstore_error`
reads the status, S3 code and message out of that text and applies the same
table, so that both clients fail the same way for the same answer.
"""

from __future__ import annotations

import re
from typing import Callable, ContextManager, Iterable

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from obstore.exceptions import PermissionDeniedError, PreconditionError, UnauthenticatedError

from ..errors import (
    AccessDeniedError,
    BucketNotFoundError,
    CottonCandyError,
    CredentialsMissingError,
    CredentialsRefusedError,
    ObjectNotFoundError,
    StorageError,
)


class BodyBrokeOff(StorageError):
    """A response body ended early after its headers arrived (connection reset or closed, read
    timeout, fewer bytes than Content-Length). botocore retries requests, not bodies: the reader
    may resume with a new ranged GET from the first missing byte."""


class RangeNotSatisfiable(StorageError):
    """The server answered 416: the requested range starts at or past the end of the body."""


#: ``errors(operation, key, bucket=None, body=False)``: the S3 backend's context manager
#: translating botocore errors; with ``body``, a body that broke off raises :class:`BodyBrokeOff`.
Errors = Callable[..., ContextManager[None]]

#: Failures of botocore while a response body is read that mean it broke off.
BODY_FAILURES = (IncompleteReadError, HTTPClientError)

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
    "InvalidRange": RangeNotSatisfiable,
    "416": RangeNotSatisfiable,
}

#: Fallback on the HTTP status when the code is not in the table.
HTTP_STATUS: dict[int, type[CottonCandyError]] = {
    401: AccessDeniedError,
    403: AccessDeniedError,
    404: ObjectNotFoundError,
    412: ObjectNotFoundError,
    416: RangeNotSatisfiable,
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
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {}) or {}
        code = str(error.get("Code", "") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return _from_answer(code, status, str(error.get("Message", "") or ""), operation, where, bucket, key,
                            endpoint_url, secrets)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsMissingError(
            f"{operation} {where}: no S3 credentials found, nothing was sent to {endpoint_url or 'AWS S3'} "
            "(give them as arguments, in CC_ACCESS_KEY/CC_SECRET_KEY, in the cottoncandy config file, in "
            "~/.passwd-s3fs or in the AWS configuration)",
            key,
        )
    if isinstance(exc, ProfileNotFound):
        profile = exc.kwargs.get("profile", "")
        return CredentialsMissingError(
            f"no AWS profile {profile!r} (looked up in ~/.aws/config and ~/.aws/credentials, or "
            "AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE)", key
        )
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return _connection_error(operation, where, key, endpoint_url, type(exc).__name__)
    if isinstance(exc, BotoCoreError):
        return StorageError(f"{operation} {where} failed: {_scrub(str(exc), secrets)[:_MAX_SERVER_MESSAGE]}", key)
    return StorageError(f"{operation} {where} failed: {type(exc).__name__}", key)


def _from_answer(
    code: str, status: int | None, server_message: str, operation: str, where: str, bucket, key,
    endpoint_url: str | None, secrets
) -> CottonCandyError:
    """The exception for an S3 error answer: its code (may be empty), HTTP status and message."""
    cls = ERROR_CODES.get(code) or HTTP_STATUS.get(status or 0, StorageError)
    if code in ("PreconditionFailed", "412") or status == 412:
        return ObjectNotFoundError(f"{operation} {where}: the object changed while being read", key)
    if cls is BucketNotFoundError or (cls is ObjectNotFoundError and code == "NoSuchBucket"):
        return BucketNotFoundError(f"{operation} {where}: bucket {bucket!r} does not exist", key)
    detail = f"{code or 'error'} (HTTP {status})"
    if issubclass(cls, StorageError) and server_message:
        detail += ": " + _scrub(server_message[:_MAX_SERVER_MESSAGE], secrets)
    if cls is ObjectNotFoundError:
        return ObjectNotFoundError(f"{operation} {where}: no such object [{detail}]", key)
    server = endpoint_url or "AWS S3"
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


def _connection_error(operation: str, where: str, key, endpoint_url: str | None, kind: str) -> StorageError:
    server = endpoint_url or "AWS S3"
    return StorageError(
        f"{operation} {where}: connection to {server} failed ({kind}); is the server running and reachable?", key
    )


# obstore's error text: "... Server returned non-2xx status code: 404 Not Found: <?xml ...><Code>NoSuchKey</Code>
# <Message>...</Message>..." then a Rust debug dump naming the error kind (Connect, Timeout, Body...).
_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(r"<Message>([^<]{0,1000})</Message>")
_RETRIES = re.compile(r"after (\d+) retries")
#: Rust error kinds in obstore's debug text -> what happened, in words.
_KINDS = (
    ("kind: Connect", "connect"),
    ("kind: Timeout", "no answer within the timeout"),
    ("TimedOut", "no answer within the timeout"),
    ("kind: Body", "the response body broke off"),
    ("kind: Decode", "the response body broke off"),
    ("kind: Interrupted", "the response body broke off"),
)


def obstore_error_status(exc: BaseException) -> int | None:
    """The HTTP status an obstore error reports, if it reports one."""
    match = _STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def translate_obstore_error(
    exc: BaseException,
    *,
    operation: str,
    bucket: str | None = None,
    key: str | None = None,
    endpoint_url: str | None = None,
    secrets: Iterable[str | None] = (),
) -> CottonCandyError:
    """Return the cottoncandy exception for an exception raised by obstore.

    Parameters are those of :func:`translate_error`. A server answer goes
    through the same table as botocore's ``ClientError``; a failure without an
    answer (connection refused, timeout, body cut) becomes a ``StorageError``
    saying which, with the attempts made. obstore's own text (URLs, XML bodies,
    Rust debug output) never reaches the message.
    """
    secrets = tuple(secrets)
    where = _target(bucket, key)
    text = str(exc)
    status = obstore_error_status(exc)
    if isinstance(exc, FileNotFoundError) and status is None:
        status = 404
    elif isinstance(exc, PreconditionError) and status is None:
        status = 412
    elif isinstance(exc, (PermissionDeniedError, UnauthenticatedError)) and status is None:
        status = 403
    if status is not None:
        code = _CODE.search(text)
        message = _MESSAGE.search(text)
        # like botocore, which names an answer without an XML body (HEAD) by its status
        return _from_answer(code.group(1) if code else str(status), status, message.group(1) if message else "",
                            operation, where, bucket, key, endpoint_url, secrets)
    kind = next((words for marker, words in _KINDS if marker in text), None)
    retries = _RETRIES.search(text)
    attempts = f" after {int(retries.group(1)) + 1} attempts" if retries else ""
    if kind == "connect":
        return _connection_error(operation, where, key, endpoint_url, f"no connection{attempts}")
    if kind is not None:
        return StorageError(f"{operation} {where} failed: {kind}{attempts}", key)
    return StorageError(f"{operation} {where} failed: {type(exc).__name__}{attempts}", key)
