"""The one place that imports the FUSE binding (:mod:`mfusepy`).

mfusepy loads libfuse when it is imported and, when both libfuse 2 and
libfuse 3 are installed, picks libfuse 2 unless ``FUSE_LIBRARY_NAME`` (or
``FUSE_LIBRARY_PATH``) says otherwise. libfuse 3 allows larger reads and is
preferred, so :func:`load_mfusepy` points mfusepy at it when it is present.

Nothing is imported at module import time: callers ask for the binding with
:func:`load_mfusepy` and get a :class:`FuseUnavailableError` with an
actionable message when the Python package or the C library is missing.
"""

from __future__ import annotations

import ctypes.util
import errno
import importlib
import logging
import os
import sys
from types import ModuleType

from ..errors import CottonCandyError

logger = logging.getLogger(__name__)

#: Library names tried, best first, for ``ctypes.util.find_library``.
_PREFERRED_LIBRARIES = ("fuse3",)
#: ``max_idle_threads`` given to libfuse 3. Its ``fuse_main_real`` (which mfusepy calls)
#: defaults the option to UINT_MAX ("never stop idle threads", new in 3.12) and then hands
#: that default to ``fuse_loop_cfg_set_idle_threads``, which in 3.12 to 3.14.0 (Debian 12)
#: rejects it with "Ignoring invalid max threads value 4294967295 > max (100000)." at every
#: mount (fixed upstream in 3.14.1, commit 2da03e3). Setting the option explicitly avoids
#: the message; 10 is libfuse's own cap on worker threads (FUSE_LOOP_MT_DEF_MAX_THREADS, also
#: the idle default before 3.12), so no worker is ever stopped, as with the default.
LIBFUSE3_MAX_IDLE_THREADS = 10


class FuseUnavailableError(CottonCandyError, OSError):
    """mfusepy or libfuse is not installed, so nothing can be mounted."""

    errno = errno.ENODEV


def _choose_library() -> None:
    """Point mfusepy at libfuse 3 unless the user already chose a library."""
    if os.environ.get("FUSE_LIBRARY_PATH") or os.environ.get("FUSE_LIBRARY_NAME"):
        return
    for name in _PREFERRED_LIBRARIES:
        if ctypes.util.find_library(name):
            os.environ["FUSE_LIBRARY_NAME"] = name
            logger.debug("using lib%s for FUSE", name)
            return


def load_mfusepy() -> ModuleType:
    """Import and return :mod:`mfusepy`, preferring libfuse 3.

    Returns
    -------
    module
        The imported ``mfusepy`` module.

    Raises
    ------
    FuseUnavailableError
        When the ``mfusepy`` package is not installed or libfuse cannot be
        loaded.
    """
    module = sys.modules.get("mfusepy")
    if module is not None:
        return module
    _choose_library()
    try:
        return importlib.import_module("mfusepy")
    except ModuleNotFoundError as exc:
        if exc.name != "mfusepy":
            raise
        raise FuseUnavailableError(
            "the FUSE binding is not installed: pip install 'cottoncandy[fuse]' (mfusepy)"
        ) from exc
    except (OSError, AttributeError) as exc:
        raise FuseUnavailableError(
            f"libfuse cannot be loaded ({exc}): install it, e.g. apt-get install fuse3"
        ) from exc


def fuse_major_version() -> int:
    """Major version (2 or 3) of the libfuse that mfusepy loaded."""
    return int(load_mfusepy().fuse_version_major)


def operations_base() -> type:
    """The ``mfusepy.Operations`` base class."""
    return load_mfusepy().Operations


def run_fuse(operations: object, mountpoint: str, **options: object) -> None:
    """Run the FUSE main loop until the file system is unmounted.

    Parameters
    ----------
    operations : mfusepy.Operations
        The file system.
    mountpoint : str
        Directory to mount on.
    **options
        Passed to ``mfusepy.FUSE`` (``foreground``, ``nothreads``, mount
        options such as ``ro`` or ``fsname``). With libfuse 3,
        ``max_idle_threads`` defaults to :data:`LIBFUSE3_MAX_IDLE_THREADS`.
    """
    if fuse_major_version() >= 3:
        options.setdefault("max_idle_threads", LIBFUSE3_MAX_IDLE_THREADS)
    load_mfusepy().FUSE(operations, mountpoint, raw_fi=True, **options)
