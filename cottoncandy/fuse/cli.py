"""``cottoncandy-mount``: mount a bucket read-only, arrays shown as ``.npy`` files.

Options are parsed and checked by :mod:`.options` (including ``-o`` as given
by ``/etc/fstab`` through ``mount.fuse3``). Everything else that can be
checked before mounting is checked next (mountpoint, ``/dev/fuse``, libfuse,
then one listing of the bucket under ``--prefix``, which also proves the
credentials); each failure prints one line to stderr and exits with status 2
for a mistake of the user's (see :class:`MountError`) or 1 for a failure of
the system or the server. Credentials are never arguments: they come from the
environment, the config files or a profile (see :mod:`cottoncandy.config`).

Without ``--foreground`` the command returns once the mount is live: it
starts ``python -m cottoncandy.fuse.cli ... --foreground`` in a new session
and waits until that process reports, from FUSE's ``init`` callback through
an inherited pipe, that the kernel talks to it (or that it failed). That
process logs to a rotated file (:mod:`.mountlog`) whose path is printed.
``fusermount3 -u MOUNTPOINT``, ``umount`` and SIGINT/SIGTERM to the mount
process unmount cleanly and end it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO

from ..backends.base import Listing, StorageBackend
from ..errors import (
    AccessDeniedError,
    BucketNotFoundError,
    CottonCandyError,
    CredentialsMissingError,
)
from .mountlog import default_log_path, open_for_child, setup_logging
from .options import PROG, USAGE_ERROR, build_parser, parse_size, s3_settings  # noqa: F401 - public names

if TYPE_CHECKING:  # the index module is imported when a mount is served
    from .metaindex import MetadataIndex

logger = logging.getLogger("cottoncandy.fuse")

READY_FD_ENV = "CC_MOUNT_READY_FD"  # set for the background child: where to report
READY, FAILED = b"ready", b"error"
#: How long the parent waits for the background child to mount.
MOUNT_DEADLINE = 120.0
#: Exit status of a failure that is not the user's mistake (server unreachable, mount failed).
FAILURE = 1


class MountError(Exception):
    """A check failed; the message is the one line shown to the user.

    Attributes
    ----------
    status : int
        Exit status: :data:`~cottoncandy.fuse.options.USAGE_ERROR` (2) for a
        mistake in the arguments or the configuration, :data:`FAILURE` (1)
        otherwise.
    """

    def __init__(self, message: str, status: int = USAGE_ERROR):
        super().__init__(message)
        self.status = status


# -- checks -------------------------------------------------------------------


def check_mountpoint(path: str) -> str:
    """Return the absolute mountpoint, or raise :class:`MountError`."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise MountError(f"mountpoint {path} does not exist")
    if not os.path.isdir(path):
        raise MountError(f"mountpoint {path} is not a directory")
    if os.path.ismount(path):
        raise MountError(f"mountpoint {path} is already a mount point")
    try:
        if os.listdir(path):
            raise MountError(f"mountpoint {path} is not empty")
    except PermissionError:
        raise MountError(f"mountpoint {path} cannot be read (permission denied)") from None
    return path


def check_fuse() -> None:
    """Check ``/dev/fuse``, libfuse/mfusepy and (non-root) the fusermount helper."""
    if not os.path.exists("/dev/fuse"):
        raise MountError("/dev/fuse is missing: load the fuse module (modprobe fuse) or give the "
                         "container --device /dev/fuse", FAILURE)
    from .binding import FuseUnavailableError, load_mfusepy

    try:
        load_mfusepy()
    except FuseUnavailableError as exc:
        raise MountError(str(exc), FAILURE) from None
    if os.geteuid() != 0 and not (shutil.which("fusermount3") or shutil.which("fusermount")):
        raise MountError("fusermount3 is missing: install fuse3 (apt-get install fuse3)", FAILURE)


def _list_prefix(args: argparse.Namespace) -> str:
    prefix = args.prefix.strip("/")
    return prefix + "/" if prefix else ""


def open_backend(args: argparse.Namespace, quick: bool = False) -> tuple[StorageBackend, Listing]:
    """Connect, check the bucket and list it under ``--prefix``; return ``(backend, listing)``.

    Connecting checks the bucket as ``get_interface`` does (a bucket whose
    HEAD is refused but whose objects may be listed is fine; refused
    credentials fail at once). The listing proves that the mounted prefix can
    be read. Raises :class:`MountError`.
    """
    from ..backends.connect import make_backend

    settings = s3_settings(args, quick) if args.backend == "s3" else {}
    where = "the local store" if args.backend == "local" else \
        (args.endpoint_url or os.environ.get("CC_ENDPOINT_URL") or "the configured endpoint")
    backend = None
    try:
        backend = make_backend(args.bucket, args.backend, endpoint_url=args.endpoint_url, profile=args.profile,
                               region=args.region, force_bucket_creation=False, **settings)
        if args.backend == "s3":
            from ..backends.s3 import S3Backend  # make_backend loaded it

            if isinstance(backend, S3Backend):
                where = backend.credentials.endpoint_url or "AWS S3"
        listing = backend.check_access(args.prefix)
    except BucketNotFoundError as exc:
        if args.backend != "local":
            failure = MountError(f"no such bucket: {args.bucket} at {where}")
        elif not os.path.exists(args.bucket):
            failure = MountError(f"no such directory: {args.bucket}")
        else:
            failure = MountError(str(exc))  # not a directory
    except CredentialsMissingError as exc:
        failure = MountError(str(exc) if args.profile else
                             f"no credentials found, nothing was sent to {where}: set CC_ACCESS_KEY and "
                             "CC_SECRET_KEY, fill in ~/.config/cottoncandy/options.cfg, ~/.passwd-s3fs or "
                             "~/.aws/credentials, or give --profile")
    except AccessDeniedError as exc:  # refused keys and missing permissions: the message says which
        failure = MountError(str(exc))
    except ValueError as exc:  # an endpoint URL that is not http(s)://, from the environment or config file
        failure = MountError(f"{exc} (from CC_ENDPOINT_URL or the config file)" if backend is None else str(exc))
    except (CottonCandyError, OSError) as exc:
        failure = MountError(f"cannot reach {where} for bucket {args.bucket}: {exc}", FAILURE)
    else:
        return backend, listing
    if backend is not None:
        backend.close()
    raise failure


def warn_if_empty(args: argparse.Namespace, listing: Listing) -> None:
    """A ``--prefix`` with nothing under it is allowed (it may fill later), but probably a typo."""
    if args.prefix.strip("/") and not listing.objects and not listing.prefixes:
        print(f"{PROG}: warning: nothing under prefix {_list_prefix(args)!r} in {args.bucket}; "
              "the mount is empty until keys appear there", file=sys.stderr)


# -- serving ------------------------------------------------------------------


def open_index(setting: str | None, location: str) -> MetadataIndex | None:
    """The persistent metadata index for ``--metadata-cache`` (``None`` when ``off``)."""
    from .metaindex import MetadataIndex, default_directory

    if setting is not None and setting.strip().lower() == "off":
        return None
    directory = default_directory() if setting is None else os.path.abspath(os.path.expanduser(setting))
    index = MetadataIndex(directory, location)
    logger.debug("metadata index %s (%s)", index.path, "in use" if index.enabled else "unusable")
    return index if index.enabled else None


def tune_readahead(mountpoint: str, nbytes: int) -> None:
    """Let the kernel read ahead ``nbytes`` on the mount (``/sys/class/bdi``; root only).

    The kernel caps FUSE read-ahead at the device's ``read_ahead_kb`` (128 KiB
    by default); larger sequential requests cut the per-request overhead.
    Call it from outside the FUSE loop: it stats the mountpoint.
    """
    try:
        dev = os.stat(mountpoint).st_dev
        path = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
        with open(path, "w") as fh:
            fh.write(str(nbytes // 1024))
        logger.debug("read-ahead of %s set to %d KiB", mountpoint, nbytes // 1024)
    except OSError as exc:
        logger.debug("read-ahead of %s left as is: %s", mountpoint, exc)


def fuse_options(args: argparse.Namespace, max_read: int, libfuse3: bool) -> dict[str, object]:
    """The options given to libfuse.

    ``/proc/mounts`` shows the bucket as the source and
    ``fuse.cottoncandy-mount`` as the type, the program ``mount`` runs for
    such an fstab line.
    """
    options: dict[str, object] = {
        "foreground": True,
        "nothreads": False,
        "ro": True,
        "default_permissions": True,
        "fsname": re.sub(r"[^\w./:@-]", "_", args.bucket),
        "subtype": PROG,
    }
    if max_read:  # libfuse 3
        options["max_read"] = max_read
    if libfuse3 and shutil.which("fusermount3"):
        options["auto_unmount"] = True  # no stale mount even if this process is killed
    if args.allow_other:
        options["allow_other"] = True
    options.update(dict.fromkeys(args.fuse_options, True))  # allow_root, nodev, nosuid, noexec
    if args.debug_wire:
        options["debug"] = True  # libfuse prints every request
    return options


def serve(args: argparse.Namespace, mountpoint: str, on_init: Callable[[], None] | None = None) -> None:
    """Mount and run the file system until it is unmounted (foreground)."""
    from .binding import fuse_major_version, run_fuse
    from .operations import CottonCandyOperations
    from .reader import ReadPath
    from .sparsefile import scipy_available
    from .tree import Tree

    backend, _listing = open_backend(args)
    read_path = ReadPath(backend, cache_bytes=args.cache_size, block_size=args.block_size,
                         max_workers=args.workers)
    index = open_index(args.metadata_cache, backend.location)
    tree = Tree(backend, prefix=args.prefix, ttl=args.ttl, index=index, sparse_files=scipy_available())
    libfuse3 = fuse_major_version() >= 3
    max_read = min(args.block_size, 1 << 20) if libfuse3 else 0
    def live() -> None:
        if max_read:
            threading.Thread(target=tune_readahead, args=(mountpoint, max(max_read, 4 << 20)),
                             name="cc-readahead", daemon=True).start()
        if on_init is not None:
            on_init()

    operations = CottonCandyOperations(tree, read_path, uid=args.uid, gid=args.gid, umask=args.umask or 0,
                                       kernel_timeout=args.ttl, block_size=args.block_size, max_read=max_read,
                                       on_init=live)
    if args.ignored_options:
        logger.debug("mount options ignored (the mount is read-only): %s", ",".join(args.ignored_options))
    logger.info("mounting %s on %s", backend, mountpoint)
    try:
        run_fuse(operations, mountpoint, **fuse_options(args, max_read, libfuse3))
    except RuntimeError as exc:
        # libfuse 3 ends its loop with status 8 when SIGINT/SIGTERM/SIGHUP stopped a live mount
        if not (operations.initialized and exc.args == (8,)):
            raise
        logger.info("stopped by a signal")
    finally:
        tree.close()
        read_path.close()
        if index is not None:
            index.close()
        backend.close()
    logger.info("unmounted %s", mountpoint)


# -- the background mode ------------------------------------------------------


def _report(fd: int, status: bytes, code: int = 0, message: str = "") -> None:
    """Tell the waiting parent how the mount went (once), then close the pipe."""
    try:
        text = f" {code} {message}".encode("utf-8", "replace").replace(b"\n", b" ")
        os.write(fd, status + text + b"\n")
        os.close(fd)
    except OSError:
        pass  # parent gone or already told


def _child_main(args: argparse.Namespace, fd: int) -> int:
    """The background mount process: the parent already checked the bucket."""
    try:
        mountpoint = check_mountpoint(args.mountpoint)
        check_fuse()
        serve(args, mountpoint, on_init=lambda: _report(fd, READY))
    except MountError as exc:
        _report(fd, FAILED, exc.status, str(exc))
        logger.error("%s", exc)
        return exc.status
    except (RuntimeError, OSError) as exc:
        _report(fd, FAILED, FAILURE, f"mount failed: {exc}")
        logger.error("mount failed: %s", exc)
        return FAILURE
    return 0


def _spawn_background(argv: Sequence[str], args: argparse.Namespace) -> int:
    """Start the mount process, wait until it is live (or failed) and return the exit code."""
    log_path = args.log_file or str(default_log_path(args.mountpoint))
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, **{READY_FD_ENV: str(write_fd)})
    command = [sys.executable, "-m", "cottoncandy.fuse.cli", *argv, "--foreground"]
    try:
        with contextlib.ExitStack() as stack:
            log: BinaryIO | int
            try:
                log = stack.enter_context(open_for_child(log_path))
            except OSError as exc:
                print(f"{PROG}: warning: cannot write the log to {log_path}: {exc.strerror}", file=sys.stderr)
                log = subprocess.DEVNULL
            child = subprocess.Popen(command, env=env, pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True, close_fds=True)
    finally:
        os.close(write_fd)
    deadline = time.monotonic() + MOUNT_DEADLINE
    data = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                child.kill()
                child.wait()
                print(f"{PROG}: the mount did not come up within {MOUNT_DEADLINE:.0f} s (log: {log_path})",
                      file=sys.stderr)
                return FAILURE
            ready, _, _ = select.select([pipe], [], [], remaining)
            if ready:
                chunk = pipe.read(4096)
                if not chunk:
                    break
                data += chunk
    status, _, rest = data.partition(b" ")
    if status == READY and os.path.ismount(args.mountpoint):
        if not args.log_file:
            print(f"{PROG}: logging to {log_path}", file=sys.stderr)
        return 0
    try:
        code = child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        code = child.wait()
    reported, _, message = rest.partition(b" ")
    text = message.decode("utf-8", "replace").strip() or f"the mount process exited with status {code}"
    print(f"{PROG}: {text} (log: {log_path})", file=sys.stderr)
    return int(reported) if reported.isdigit() and int(reported) else FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cottoncandy-mount``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    ready_fd = os.environ.pop(READY_FD_ENV, None)
    background_file = default_log_path(args.mountpoint) if ready_fd is not None else None
    setup_logging(PROG, args.debug, args.debug_wire, args.log_file, background_file)
    if ready_fd is not None:
        return _child_main(args, int(ready_fd))
    try:
        mountpoint = check_mountpoint(args.mountpoint)
        check_fuse()
        backend, listing = open_backend(args, quick=True)
        backend.close()
        warn_if_empty(args, listing)
        if not args.foreground:
            return _spawn_background(argv, args)
        serve(args, mountpoint)
    except MountError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.status
    except (RuntimeError, OSError) as exc:
        print(f"{PROG}: mount failed: {exc}", file=sys.stderr)
        return FAILURE
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
