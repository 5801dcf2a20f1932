"""The FUSE file system: a thin ``mfusepy.Operations`` over the tree and the read path.

Every callback goes through one error table (:func:`fuse_errno`): an
exception's ``errno`` is kept when it is one a file system caller expects
(``ENOENT`` missing, ``EACCES`` denied, ``EROFS``...) and anything else
becomes ``EIO``, logged once with the key it is about. A bad object never
takes the mount down; only that file answers ``EIO``.

The mount is read-only: every call that would change something answers
``EROFS``. Files are ``0444`` and directories ``0555`` less the ``umask``,
owned by ``uid``/``gid`` (default: the user who mounted). An open file pins the version (ETag) it opened; the kernel page
cache is kept across opens while the version does not change.

Listings carry every entry's attributes (readdirplus, see
:mod:`cottoncandy.fuse.binding`), and the kernel keeps names and attributes
for the TTL, so ``ls -l`` costs no request per entry. ``open`` checks the
version on the server: when the object changed since it was listed, the new
version is opened and the kernel is told to forget the size it cached, so the
read is neither cut short nor padded. ACL and security-label queries answer
``ENOTSUP``: tools such as ``ls`` then stop asking for the rest of the mount.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from ..format.metadata import stored_shape
from .binding import invalidate_path, operations_base, want_readdirplus_always
from .entries import Entry, Kind
from .tree import Tree

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

XATTR_PREFIX = "user.cottoncandy."
XATTR_NAMES = ("key", "dtype", "shape", "compression")

DIR_MODE = stat.S_IFDIR | 0o555
FILE_MODE = stat.S_IFREG | 0o444


def fuse_errno(exc: BaseException) -> int:
    """The errno a FUSE callback answers for ``exc`` (the one error table)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in PASSTHROUGH_ERRNOS:
        return code
    return errno.EIO


def fs_error(code: int, what: str = "") -> OSError:
    """An ``OSError`` carrying ``code`` (what mfusepy turns into ``-code``)."""
    return OSError(code, os.strerror(code), what or None)


def _translated(method: Callable) -> Callable:
    """Run a callback through the error table, logging one line per failure."""

    @functools.wraps(method)
    def wrapper(self: CottonCandyOperations, path: Any, *args: Any) -> Any:
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

    return wrapper


def _read_only(method: Callable) -> Callable:
    """Replace a mutating callback by one that answers ``EROFS``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> int:
        raise fs_error(errno.EROFS)

    return wrapper


@dataclass
class _Handle:
    open_file: Any  # cottoncandy.fuse.reader.OpenFile
    entry: Entry
    size: int
    path: str = ""
    identity: tuple = ()
    direct: bool = False  # reads bypass the page cache (another version is cached)


Operations = operations_base()


class CottonCandyOperations(Operations):  # type: ignore[misc, valid-type]
    """Read-only FUSE operations over a bucket.

    Parameters
    ----------
    tree : Tree
        Path -> entry mapping with its caches.
    read_path : cottoncandy.fuse.reader.ReadPath
        Opens sources and serves reads from the block cache.
    uid, gid : int, optional
        Owner of every file (default: the mounting process's).
    umask : int
        Permission bits removed from :data:`FILE_MODE` and :data:`DIR_MODE`.
    kernel_timeout : float
        Seconds the kernel may cache names and attributes.
    block_size : int
        Reported as the preferred I/O size (``st_blksize``).
    max_read : int
        The ``max_read`` mount option given to libfuse 3 (0: none); ``init``
        must request the same value.
    on_init : callable, optional
        Called once the kernel has sent ``INIT`` (the mount is live).
    """

    use_ns = True

    def __init__(
        self,
        tree: Tree,
        read_path: Any,
        uid: int | None = None,
        gid: int | None = None,
        umask: int = 0,
        kernel_timeout: float = 1.0,
        block_size: int = 8 << 20,
        max_read: int = 0,
        on_init: Callable[[], None] | None = None,
    ):
        self.tree = tree
        self.read_path = read_path
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.file_mode = FILE_MODE & ~umask
        self.dir_mode = DIR_MODE & ~umask
        self.kernel_timeout = kernel_timeout
        self.block_size = block_size
        self.max_read = max_read
        self._on_init = on_init
        self.initialized = False  # set once the kernel sent INIT
        self._lock = threading.Lock()
        self._handles: dict[int, _Handle] = {}
        self._listings: dict[int, list] = {}  # open directory -> the listing it reads (stable offsets)
        self._counter = itertools.count(1)
        # path -> identity of the version whose pages the kernel may hold for that path
        self._cached_versions: LRUCache = LRUCache(maxsize=1 << 16)

    # -- life cycle ---------------------------------------------------------
    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        """Set kernel cache timeouts (libfuse 3) and report that the mount is live."""
        want_readdirplus_always(conn_info)
        if self.max_read and conn_info is not None and hasattr(conn_info, "max_read"):
            conn_info.max_read = self.max_read
            conn_info.max_readahead = max(conn_info.max_readahead, self.max_read)
        if config_3 is not None:
            config_3.entry_timeout = self.kernel_timeout
            config_3.attr_timeout = self.kernel_timeout
            config_3.negative_timeout = self.kernel_timeout
        self.initialized = True
        if self._on_init is not None:
            try:
                self._on_init()
            except OSError as exc:  # the waiting parent went away: nothing to tell
                logger.warning("could not report that the mount is live: %s", exc)

    def destroy(self, path: str) -> None:
        """Release every file still open at unmount."""
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.open_file.release()

    # -- attributes ---------------------------------------------------------
    def _stat(self, entry: Entry, size: int | None = None, build: bool = True) -> dict[str, int]:
        """``stat`` fields of an entry; without ``build``, a file whose size needs building has no size."""
        mtime = int(entry.mtime * 1e9)
        common = {"st_uid": self.uid, "st_gid": self.gid, "st_mtime": mtime, "st_ctime": mtime, "st_atime": mtime}
        if entry.is_dir:
            return {"st_mode": self.dir_mode, "st_nlink": 2, "st_size": 0, **common}
        if size is None:
            size = entry.size
        if size is None:
            if not build:
                return {"st_mode": self.file_mode}
            size = self.tree.size(entry)
        return {
            "st_mode": self.file_mode,
            "st_nlink": 1,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_blksize": min(self.block_size, 1 << 20),
            **common,
        }

    @_translated
    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        """``stat``: the open file's pinned size when called on a handle."""
        handle = self._handles.get(_fh_number(fh)) if fh is not None else None
        if handle is not None:
            return self._stat(handle.entry, handle.size)
        return self._stat(self.tree.lookup(path))

    @_translated
    def access(self, path: str, amode: int) -> int:
        """Existence and permission check; writing is never allowed."""
        if amode & os.W_OK:
            raise fs_error(errno.EROFS)
        self.tree.lookup(path)
        return 0

    def _listing(self, path: str) -> list:
        out: list = [(".", {"st_mode": self.dir_mode}, 0), ("..", {"st_mode": self.dir_mode}, 0)]
        out.extend((entry.name, self._stat(entry, build=False), 0) for entry in self.tree.readdir(path))
        return out

    @_translated
    def opendir(self, path: str, fi: Any = None) -> int:
        """Take the listing an open directory reads, so that offsets stay valid between calls.

        ``fi`` is libfuse's ``fuse_file_info`` (its ``fh`` is set); for direct
        calls the handle is returned.
        """
        listing = self._listing(path)
        with self._lock:
            number = next(self._counter)
            self._listings[number] = listing
        if fi is not None and not isinstance(fi, int):
            fi.fh = number
            return 0
        return number

    @_translated
    def readdir(self, path: str, fh: Any) -> list:
        """Entries with their full attributes (``ls -l`` and ``find`` need no ``stat`` per entry).

        Entries whose size only building them tells (sparse ``.npz``) come
        with their file type only.
        """
        listing = self._listings.get(_fh_number(fh)) if fh is not None else None
        return listing if listing is not None else self._listing(path)

    def releasedir(self, path: str, fh: Any) -> int:
        """Forget an open directory's listing."""
        with self._lock:
            self._listings.pop(_fh_number(fh), None)
        return 0

    @_translated
    def statfs(self, path: str) -> dict[str, int]:
        """An object store has no meaningful capacity: report zeros and the name limit."""
        return {"f_bsize": 1 << 20, "f_frsize": 4096, "f_blocks": 0, "f_bfree": 0, "f_bavail": 0,
                "f_files": 0, "f_ffree": 0, "f_favail": 0, "f_namemax": 255}

    # -- extended attributes --------------------------------------------------
    def _xattrs(self, entry: Entry) -> dict[str, str]:
        out = {"key": entry.key + "/" if entry.is_dir and entry.key else entry.key}
        md = entry.metadata
        if entry.kind in (Kind.RAW, Kind.BROKEN) and md:
            if "dtype" in md:
                out["dtype"] = md["dtype"]
            shape = stored_shape(md)  # a 0-d array's empty shape, even where the server dropped it
            if shape is not None:
                out["shape"] = shape
            if "gzip" in md:  # legacy flag wins, as when reading
                out["compression"] = "gzip" if md["gzip"].strip().lower() in ("true", "1") else "False"
            else:
                out["compression"] = md.get("compression", "False")
        elif entry.kind is Kind.DASK:
            out["dtype"] = entry.manifest.dtype.str  # type: ignore[union-attr]
            out["shape"] = ",".join(map(str, entry.manifest.shape))  # type: ignore[union-attr]
        elif entry.kind is Kind.SPARSE:
            out["shape"] = ",".join(map(str, entry.manifest.shape))  # type: ignore[union-attr]
        # values are shown as stored: a 0-d array's shape is empty, like its metadata;
        # only the bucket root has no key
        return {XATTR_PREFIX + k: v for k, v in out.items() if v or k != "key"}

    @_translated
    def listxattr(self, path: str) -> list[str]:
        """The ``user.cottoncandy.*`` attributes the entry has."""
        return list(self._xattrs(self.tree.lookup(path)))

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        """Value of one ``user.cottoncandy.*`` attribute; ``ENODATA`` for other ``user.`` names.

        Other namespaces (ACLs, security labels) answer ``ENOTSUP``: the kernel
        caches no xattr answer, and ``ls -l`` would otherwise ask two of them per
        file; told "not supported", it stops asking for the whole mount.
        """
        if not name.startswith(XATTR_PREFIX):
            raise fs_error(errno.ENODATA if name.startswith("user.") else errno.ENOTSUP)
        return self._getxattr(path, name)

    @_translated
    def _getxattr(self, path: str, name: str) -> bytes:
        value = self._xattrs(self.tree.lookup(path)).get(name)
        if value is None:
            raise fs_error(errno.ENODATA)
        return value.encode("utf-8")

    # -- files --------------------------------------------------------------
    @_translated
    def open(self, path: str, fi: Any) -> int:
        """Open for reading, pinning the current version.

        ``fi`` is libfuse's ``fuse_file_info`` (``fh`` and ``keep_cache`` are
        set on it) or, for direct calls, the open flags (the handle is
        returned).
        """
        flags = fi if isinstance(fi, int) else fi.flags
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_CREAT | os.O_APPEND):
            raise fs_error(errno.EROFS)
        listed = self.tree.lookup(path)
        if listed.is_dir:
            raise fs_error(errno.EISDIR)
        entry = self.tree.refresh(path, listed)
        if entry is not listed:  # the kernel may hold the old version's size: make it ask again
            invalidate_path(path)
        open_file = self.read_path.open(self.tree.source(entry))
        identity = self.tree.identity(entry)
        with self._lock:
            number = next(self._counter)
            keep_cache, direct = self._cache_mode(path, identity)
            self._handles[number] = _Handle(open_file, entry, open_file.size, path, identity, direct)
        if isinstance(fi, int):
            return number
        fi.fh = number
        fi.keep_cache = 1 if keep_cache else 0
        fi.direct_io = 1 if direct else 0
        return 0

    def _cache_mode(self, path: str, identity: tuple) -> tuple[bool, bool]:
        """``(keep_cache, direct_io)`` for a new open of ``path`` at version ``identity``.

        The kernel keeps one page cache per path. It is kept while the version
        does not change and dropped when it does; but while a file opened at an
        older version is still open, the new open bypasses the page cache
        instead, so that each open file keeps reading its own version.
        Called with the lock held.
        """
        cached = self._cached_versions.get(path)
        if cached == identity:
            return True, False
        if any(h.path == path and not h.direct and h.identity != identity for h in self._handles.values()):
            return False, True
        self._cached_versions[path] = identity
        return False, False

    @_translated
    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        """Bytes ``[offset, offset + size)`` of the open version."""
        handle = self._handles.get(_fh_number(fh))
        if handle is None:
            raise fs_error(errno.EBADF)
        data = handle.open_file.read(offset, size)
        return data if isinstance(data, bytes) else bytes(data)

    @_translated
    def release(self, path: str, fh: Any) -> int:
        """Forget an open file."""
        with self._lock:
            handle = self._handles.pop(_fh_number(fh), None)
        if handle is not None:
            handle.open_file.release()
        return 0

    # -- everything that would write ---------------------------------------
    @_read_only
    def write(self, path: str, data: bytes, offset: int, fh: Any) -> int: ...

    @_read_only
    def create(self, path: str, mode: int, fi: Any = None) -> int: ...

    @_read_only
    def mkdir(self, path: str, mode: int) -> int: ...

    @_read_only
    def mknod(self, path: str, mode: int, dev: int) -> int: ...

    @_read_only
    def unlink(self, path: str) -> int: ...

    @_read_only
    def rmdir(self, path: str) -> int: ...

    @_read_only
    def rename(self, old: str, new: str) -> int: ...

    @_read_only
    def link(self, target: str, source: str) -> int: ...

    @_read_only
    def symlink(self, target: str, source: str) -> int: ...

    @_read_only
    def truncate(self, path: str, length: int, fh: Any = None) -> int: ...

    @_read_only
    def chmod(self, path: str, mode: int) -> int: ...

    @_read_only
    def chown(self, path: str, uid: int, gid: int) -> int: ...

    @_read_only
    def utimens(self, path: str, times: Any = None) -> int: ...

    @_read_only
    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> int: ...

    @_read_only
    def removexattr(self, path: str, name: str) -> int: ...

    @_read_only
    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: Any) -> int: ...


def _fh_number(fh: Any) -> int:
    """The handle number in an ``fh`` argument (an int, or a ``fuse_file_info`` with raw_fi)."""
    return fh if isinstance(fh, int) else int(fh.fh)
