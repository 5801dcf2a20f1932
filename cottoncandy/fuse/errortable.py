"""The one table from exceptions to FUSE answers, and the marks on FUSE callbacks.

An exception's ``errno`` is kept when it is one a file system caller expects
(``ENOENT`` missing, ``EACCES`` denied, ``EROFS``...) and anything else
becomes ``EIO``, logged once with the key it is about. A bad object never
takes the mount down; only that file answers ``EIO``.

Every method of the operations class that libfuse is to call carries one of
the decorators here (:func:`callback`, :func:`translated`,
:func:`read_only`), which mark it with :data:`CALLBACK_MARK`. mfusepy finds
callbacks by name, so a misspelt one would silently never be called; the
test suite checks every marked name against mfusepy's callbacks, and that
no public method goes unmarked.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

logger = logging.getLogger(__name__)

#: errnos passed to the caller as they are; everything else becomes EIO.
PASSTHROUGH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ENODATA,
        errno.EBADF,
        errno.ERANGE,
        errno.ENOTSUP,
    }
)
#: errnos that are part of normal operation and not worth more than a debug line.
_QUIET_ERRNOS = frozenset({errno.ENOENT, errno.ENODATA, errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.ENOTSUP})

#: Attribute set (to True) on every method meant to be a FUSE callback.
CALLBACK_MARK = "fuse_callback"

_F = TypeVar("_F", bound=Callable[..., Any])


def fuse_errno(exc: BaseException) -> int:
    """The errno a FUSE callback answers for ``exc`` (the one error table)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in PASSTHROUGH_ERRNOS:
        return code
    return errno.EIO


def fs_error(code: int, what: str = "") -> OSError:
    """An ``OSError`` carrying ``code`` (what mfusepy turns into ``-code``)."""
    return OSError(code, os.strerror(code), what or None)


def callback(method: _F) -> _F:
    """Mark ``method`` as a FUSE callback (its name must be one of mfusepy's)."""
    setattr(method, CALLBACK_MARK, True)
    return method


def translated(method: _F) -> _F:
    """A FUSE callback whose failures go through the error table, one log line each."""

    @functools.wraps(method)
    def wrapper(self: object, path: Any, *args: Any) -> Any:
        try:
            return method(self, path, *args)
        except Exception as exc:  # the FUSE boundary: a bad object must never kill the mount
            code = fuse_errno(exc)
            key = getattr(exc, "key", None) or path
            if code in _QUIET_ERRNOS:
                logger.debug("%s %s: %s", method.__name__, key, os.strerror(code))
            else:
                logger.error("%s %s failed: %s: %s", method.__name__, key, type(exc).__name__, exc)
                logger.debug("traceback of the %s failure", method.__name__, exc_info=True)
            raise fs_error(code, str(path)) from None

    return cast(_F, callback(wrapper))  # same signature as ``method``


def read_only(name: str) -> Callable[..., int]:
    """The FUSE callback ``name`` of a call that would change something: it answers ``EROFS``."""

    def refuse(self: object, *args: Any, **kwargs: Any) -> int:
        raise fs_error(errno.EROFS)

    refuse.__name__ = refuse.__qualname__ = name
    return callback(refuse)
