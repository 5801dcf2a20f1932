"""Exception classes of cottoncandy.

Every exception derives from :class:`CottonCandyError` and from the builtin
exception a caller would naturally catch (``FileNotFoundError``,
``PermissionError``, ``ValueError``, ...), and carries an ``errno`` so the
FUSE layer can translate any of them with one table.
"""

from __future__ import annotations

import errno as _errno

from typing_extensions import override


class CottonCandyError(Exception):
    """Base class of all cottoncandy errors.

    Attributes
    ----------
    errno : int
        The POSIX error number this error maps to in the mount.
    key : str or None
        The object key the error is about, when there is one.
    """

    errno: int = _errno.EIO

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key
        self.message = message

    @override
    def __str__(self) -> str:
        return self.message


class ObjectNotFoundError(CottonCandyError, FileNotFoundError):
    """The object (or prefix) does not exist."""

    errno = _errno.ENOENT


class BucketNotFoundError(CottonCandyError, FileNotFoundError):
    """The bucket does not exist."""

    errno = _errno.ENOENT


class AccessDeniedError(CottonCandyError, PermissionError):
    """The server refused the credentials or the operation."""

    errno = _errno.EACCES


class CredentialsMissingError(AccessDeniedError):
    """No credentials were found (or the named profile does not exist): nothing was sent."""


class CredentialsRefusedError(AccessDeniedError):
    """The server did not accept the credentials (unknown access key, wrong secret, expired token)."""


class InvalidKeyError(CottonCandyError, ValueError):
    """An object key is not allowed (``..`` segment, NUL byte, too long)."""

    errno = _errno.EINVAL


class ArrayFormatError(CottonCandyError, ValueError):
    """An object's array metadata or body is corrupt or inconsistent."""

    errno = _errno.EIO


class UnknownCodecError(ArrayFormatError):
    """The ``compression`` metadata names a codec that is not available."""


class ArrayTooLargeError(CottonCandyError, MemoryError):
    """The array an object's metadata describes cannot be allocated in memory."""

    errno = _errno.ENOMEM


class UnsupportedArrayError(CottonCandyError, TypeError):
    """The array cannot be stored (object dtype, for example)."""

    errno = _errno.EINVAL


class StorageError(CottonCandyError, OSError):
    """The storage server or file system failed in a way not covered above."""

    errno = _errno.EIO
