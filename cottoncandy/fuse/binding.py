"""The one place that imports the FUSE binding (:mod:`mfusepy`).

mfusepy loads libfuse when it is imported and, when both libfuse 2 and
libfuse 3 are installed, picks libfuse 2 unless ``FUSE_LIBRARY_NAME`` (or
``FUSE_LIBRARY_PATH``) says otherwise. libfuse 3 allows larger reads and is
preferred, so :func:`load_mfusepy` points mfusepy at it when it is present.

Nothing is imported at module import time: callers ask for the binding with
:func:`load_mfusepy` and get a :class:`FuseUnavailableError` with an
actionable message when the Python package or the C library is missing.

**Directory listings with attributes (readdirplus).** mfusepy's ``readdir``
hands libfuse names and file types only, and without offsets; libfuse 3's
high-level API then answers the kernel's ``READDIRPLUS`` with ``ino = 0``,
which tells the kernel to ignore the attributes, so ``ls -l`` sends one
``LOOKUP`` per entry. :func:`fuse_class` subclasses ``mfusepy.FUSE`` and
replaces that one libfuse call: entries go to libfuse's filler with their full
``stat``, ``FUSE_FILL_DIR_PLUS`` and their position as the offset (only the
offset mode passes attributes on), so the kernel caches each entry and its
attributes from the listing itself. It also lets ``opendir`` set
``keep_cache``/``cache_readdir`` so that the kernel keeps a listing it was
given. :func:`want_readdirplus_always` turns off the kernel's "auto" mode,
which sends ``READDIRPLUS`` only for the first page of a directory.
"""

from __future__ import annotations

import ctypes.util
import errno
import importlib
import logging
import os
import sys
from types import ModuleType
from typing import Any

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


def callback_names() -> frozenset[str]:
    """Names mfusepy looks up on an operations object as callbacks (``mfusepy.Operations``'s)."""
    operations = load_mfusepy().Operations
    return frozenset(n for n in dir(operations) if not n.startswith("_") and callable(getattr(operations, n)))


#: libfuse 3 ``fuse_readdir_flags``: the kernel asked for attributes too.
FUSE_READDIR_PLUS = 1 << 0
#: libfuse 3 ``fuse_fill_dir_flags``: the ``stat`` given to the filler is complete.
FUSE_FILL_DIR_PLUS = 1 << 1
#: libfuse 3 capability: the kernel decides per call whether to send READDIRPLUS.
FUSE_CAP_READDIRPLUS_AUTO = 1 << 14

_fuse_class: type | None = None


def want_readdirplus_always(conn_info: object) -> None:
    """Ask the kernel for ``READDIRPLUS`` on every page of a listing (``init``'s ``conn_info``).

    In "auto" mode the kernel asks for attributes only on a directory's first
    page and falls back to ``LOOKUP`` per entry for the rest.
    """
    if conn_info is not None and hasattr(conn_info, "want"):
        conn_info.want &= ~FUSE_CAP_READDIRPLUS_AUTO


def fuse_class() -> type:
    """``mfusepy.FUSE`` with ``opendir``/``readdir`` that pass cache flags and full attributes.

    The operations object must provide ``opendir(path, fi)`` (it sets ``fi.fh``
    and may set ``fi.keep_cache`` and ``fi.cache_readdir``) and
    ``readdir(path, fh)`` returning the same sequence of ``(name, attrs,
    0)`` for every call on one handle; ``attrs`` is a ``getattr`` dict.
    """
    global _fuse_class
    if _fuse_class is not None:
        return _fuse_class
    mfusepy = load_mfusepy()
    base: Any = mfusepy.FUSE

    class PlusFUSE(base):  # type: ignore[misc, unused-ignore]  # --strict: subclassing Any (mfusepy is untyped)
        def opendir(self, path: bytes, fip: Any) -> int:
            return self.operations.opendir(path.decode(self.encoding, self.errors), fip.contents) or 0

        def _fill(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int | None) -> int:
            decoded = None if path is None else path.decode(self.encoding, self.errors)
            entries = self.operations.readdir(decoded, fip.contents.fh)
            st = mfusepy.c_stat()
            size = ctypes.sizeof(st)
            plus = FUSE_FILL_DIR_PLUS if flags is not None and flags & FUSE_READDIR_PLUS else 0
            for position in range(offset, len(entries)):
                name, attrs, _ = entries[position]
                ctypes.memset(ctypes.byref(st), 0, size)
                mfusepy.set_st_attrs(st, attrs, use_ns=self.use_ns)
                encoded = name.encode(self.encoding, self.errors)
                # position + 1: the offset at which the next call resumes; attributes without a
                # size are incomplete and must not be cached by the kernel
                full = filler(buf, encoded, st, position + 1) if flags is None else \
                    filler(buf, encoded, st, position + 1, plus if "st_size" in attrs else 0)
                if full:
                    break
            return 0

        def readdir_fuse_2(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any) -> int:
            return self._fill(path, buf, filler, offset, fip, None)

        def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any,
                           flags: int) -> int:
            return self._fill(path, buf, filler, offset, fip, flags)

    _fuse_class = PlusFUSE
    return PlusFUSE


def invalidate_path(path: str) -> bool:
    """Make the kernel drop the attributes and pages it caches for ``path`` (libfuse 3).

    Call it from a FUSE callback (it finds the file system through the
    request's context). Returns whether the kernel was told.
    """
    mfusepy = load_mfusepy()
    if int(mfusepy.fuse_version_major) < 3:
        return False
    lib = mfusepy._libfuse
    function = lib.fuse_invalidate_path
    function.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    function.restype = ctypes.c_int
    context = lib.fuse_get_context()
    if not context or not context.contents.fuse:  # not called from a FUSE request
        return False
    fuse = context.contents.fuse
    status = int(function(fuse, os.fsencode(path)))
    if status:  # -ENOENT: the kernel holds nothing for it
        logger.debug("fuse_invalidate_path(%s): %s", path, os.strerror(-status))
    return status == 0


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
    fuse_class()(operations, mountpoint, raw_fi=True, **options)
