"""The FUSE file system: thin callbacks over the tree and the read path.

Every callback goes through one error table
(:mod:`cottoncandy.fuse.errortable`): a bad object never takes the mount
down; only that file answers ``EIO``.

The mount is read-only: every call that would change something answers
``EROFS``. Files are ``0444`` and directories ``0555`` less the ``umask``,
owned by ``uid``/``gid`` (default: the user who mounted). An open file pins
the version (ETag) it opened; the kernel page cache is kept across opens while
the version does not change (:mod:`cottoncandy.fuse.handles`).

Listings carry every entry's attributes (readdirplus, see
:mod:`cottoncandy.fuse.binding`), and the kernel keeps names and attributes
for the TTL, so ``ls -l`` costs no request per entry. ``open`` checks the
version on the server: when the object changed since it was listed, the new
version is opened and the kernel is told to forget the size it cached, so the
read is neither cut short nor padded. ACL and security-label queries answer
``ENOTSUP``: tools such as ``ls`` then stop asking for the rest of the mount.

:class:`CottonCandyOperations` needs no base class: mfusepy's ``FUSE`` looks
callbacks up by name, so importing this module loads no libfuse. Each
callback is marked (see :func:`~cottoncandy.fuse.errortable.callback`) and
the tests check the marked names against mfusepy's.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from typing import Any

from .binding import invalidate_path, want_readdirplus_always
from .entries import Entry, FileEntry
from .errortable import callback, fs_error, fuse_errno, read_only, translated
from .handles import DirEntry, Handles
from .reader import ReadPath
from .tree import Tree

__all__ = ["CottonCandyOperations", "XATTR_PREFIX", "fuse_errno"]

logger = logging.getLogger(__name__)

XATTR_PREFIX = "user.cottoncandy."

DIR_MODE = stat.S_IFDIR | 0o555
FILE_MODE = stat.S_IFREG | 0o444


class CottonCandyOperations:
    """Read-only FUSE operations over a bucket.

    Parameters
    ----------
    tree : Tree
        Path -> entry mapping with its caches.
    read_path : ReadPath
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

    #: mfusepy passes times as nanoseconds.
    use_ns = True

    def __init__(
        self,
        tree: Tree,
        read_path: ReadPath,
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
        self._handles = Handles()

    # -- life cycle ---------------------------------------------------------
    @callback
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

    @callback
    def destroy(self, path: str) -> None:
        """Release every file still open at unmount."""
        self._handles.release_all()

    # -- attributes ---------------------------------------------------------
    def _stat(self, entry: Entry, size: int | None = None, build: bool = True) -> dict[str, int]:
        """``stat`` fields of an entry; without ``build``, a file whose size needs building has no size."""
        mtime = int(entry.mtime * 1e9)
        common = {"st_uid": self.uid, "st_gid": self.gid, "st_mtime": mtime, "st_ctime": mtime, "st_atime": mtime}
        if not isinstance(entry, FileEntry):
            return {"st_mode": self.dir_mode, "st_nlink": 2, "st_size": 0, **common}
        if size is None:
            size = entry.size
        if size is None:
            if not build:
                return {"st_mode": self.file_mode}
            size = self.read_path.size(self.tree.source(entry, fresh=False))
        return {
            "st_mode": self.file_mode,
            "st_nlink": 1,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_blksize": min(self.block_size, 1 << 20),
            **common,
        }

    @translated
    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        """``stat``: the open file's pinned size when called on a handle."""
        handle = self._handles.file(fh) if fh is not None else None
        if handle is not None:
            return self._stat(handle.entry, handle.size)
        return self._stat(self.tree.lookup(path))

    @translated
    def access(self, path: str, amode: int) -> int:
        """Existence and permission check; writing is never allowed."""
        if amode & os.W_OK:
            raise fs_error(errno.EROFS)
        self.tree.lookup(path)
        return 0

    def _listing(self, path: str) -> list[DirEntry]:
        out: list[DirEntry] = [(".", {"st_mode": self.dir_mode}, 0), ("..", {"st_mode": self.dir_mode}, 0)]
        out.extend((entry.name, self._stat(entry, build=False), 0) for entry in self.tree.readdir(path))
        return out

    @translated
    def opendir(self, path: str, fi: Any = None) -> int:
        """Take the listing an open directory reads, so that offsets stay valid between calls.

        ``fi`` is libfuse's ``fuse_file_info`` (its ``fh`` is set); for direct
        calls the handle is returned.
        """
        number = self._handles.add_listing(self._listing(path))
        if fi is not None and not isinstance(fi, int):
            fi.fh = number
            return 0
        return number

    @translated
    def readdir(self, path: str, fh: Any) -> list[DirEntry]:
        """Entries with their full attributes (``ls -l`` and ``find`` need no ``stat`` per entry).

        Entries whose size only building them tells (sparse ``.npz``) come
        with their file type only.
        """
        listing = self._handles.listing(fh) if fh is not None else None
        return listing if listing is not None else self._listing(path)

    @callback
    def releasedir(self, path: str, fh: Any) -> int:
        """Forget an open directory's listing."""
        self._handles.release_listing(fh)
        return 0

    @translated
    def statfs(self, path: str) -> dict[str, int]:
        """An object store has no meaningful capacity: report zeros and the name limit."""
        return {"f_bsize": 1 << 20, "f_frsize": 4096, "f_blocks": 0, "f_bfree": 0, "f_bavail": 0,
                "f_files": 0, "f_ffree": 0, "f_favail": 0, "f_namemax": 255}

    # -- extended attributes --------------------------------------------------
    def _xattrs(self, path: str) -> dict[str, str]:
        return {XATTR_PREFIX + name: value for name, value in self.tree.lookup(path).xattrs().items()}

    @translated
    def listxattr(self, path: str) -> list[str]:
        """The ``user.cottoncandy.*`` attributes the entry has."""
        return list(self._xattrs(path))

    @translated
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        """Value of one ``user.cottoncandy.*`` attribute; ``ENODATA`` for other ``user.`` names.

        Other namespaces (ACLs, security labels) answer ``ENOTSUP``: the kernel
        caches no xattr answer, and ``ls -l`` would otherwise ask two of them per
        file; told "not supported", it stops asking for the whole mount.
        """
        if not name.startswith(XATTR_PREFIX):
            raise fs_error(errno.ENODATA if name.startswith("user.") else errno.ENOTSUP)
        value = self._xattrs(path).get(name)
        if value is None:
            raise fs_error(errno.ENODATA)
        return value.encode("utf-8")

    # -- files --------------------------------------------------------------
    @translated
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
        source = self.tree.source(entry)
        open_file = self.read_path.open(source)
        number, keep_cache, direct = self._handles.add_file(path, open_file, entry, source.version)
        if isinstance(fi, int):
            return number
        fi.fh = number
        fi.keep_cache = 1 if keep_cache else 0
        fi.direct_io = 1 if direct else 0
        return 0

    @translated
    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        """Bytes ``[offset, offset + size)`` of the open version."""
        handle = self._handles.file(fh)
        if handle is None:
            raise fs_error(errno.EBADF)
        data = handle.open_file.read(offset, size)
        return data if isinstance(data, bytes) else bytes(data)

    @translated
    def release(self, path: str, fh: Any) -> int:
        """Forget an open file."""
        self._handles.release_file(fh)
        return 0

    # -- everything that would write ---------------------------------------
    write = read_only("write")
    create = read_only("create")
    mkdir = read_only("mkdir")
    mknod = read_only("mknod")
    unlink = read_only("unlink")
    rmdir = read_only("rmdir")
    rename = read_only("rename")
    link = read_only("link")
    symlink = read_only("symlink")
    truncate = read_only("truncate")
    chmod = read_only("chmod")
    chown = read_only("chown")
    utimens = read_only("utimens")
    setxattr = read_only("setxattr")
    removexattr = read_only("removexattr")
    fallocate = read_only("fallocate")
