"""``cottoncandy-mount``: mount a bucket read-only, arrays shown as ``.npy`` files.

Everything that can be checked before mounting is checked first (mountpoint,
``/dev/fuse``, libfuse, bucket, credentials, endpoint); each failure prints
one line to stderr and exits non-zero. Credentials are never arguments: they
come from the environment or the config files (see :mod:`cottoncandy.config`).

Without ``--foreground`` the command returns once the mount is live: it
starts ``python -m cottoncandy.fuse.cli ... --foreground`` in a new session
and waits until that process reports, from FUSE's ``init`` callback through
an inherited pipe, that the kernel talks to it (or that it failed).
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

from ..errors import AccessDeniedError, BucketNotFoundError, CottonCandyError

logger = logging.getLogger("cottoncandy.fuse")

PROG = "cottoncandy-mount"
READY_FD_ENV = "CC_MOUNT_READY_FD"  # set for the background child: where to report
READY, FAILED = b"ready", b"error"
#: How long the parent waits for the background child to mount.
MOUNT_DEADLINE = 120.0

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class MountError(Exception):
    """A check failed; the message is the one line shown to the user."""


def parse_size(text: str) -> int:
    """Parse ``1GiB``, ``8MiB``, ``512k``, ``1048576`` (binary units) to bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (use e.g. 512MiB, 1GiB)")
    value = int(float(match.group(1)) * _UNITS[match.group(2)])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, not {text!r}")
    return value


def bounded(convert: Callable[[str], float], what: str, minimum: float, strict: bool) -> Callable[[str], float]:
    """An argparse type: ``convert(text)``, refused unless ``> minimum`` (strict) or ``>= minimum``."""
    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}") from None
        if value < minimum or (strict and value == minimum):
            bound = f"> {minimum}" if strict else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, not {text!r}")
        return value

    return parse


positive_seconds = bounded(float, "number of seconds", 0, strict=True)
non_negative_seconds = bounded(float, "number of seconds", 0, strict=False)
non_negative_int = bounded(int, "count", 0, strict=False)
positive_int = bounded(int, "count", 0, strict=True)


def s3_settings(args: argparse.Namespace, quick: bool = False) -> dict[str, object]:
    """:class:`~cottoncandy.config.S3Settings` fields from ``--timeout`` and ``--retries``.

    ``quick`` (the checks before mounting) caps retries and the connect timeout
    so that a wrong endpoint is reported in seconds.
    """
    settings: dict[str, object] = {"read_timeout": args.timeout, "connect_timeout": min(args.timeout, 10.0),
                                   "max_attempts": args.retries + 1}
    if quick:
        settings["max_attempts"] = min(2, args.retries + 1)
        settings["connect_timeout"] = min(5.0, args.timeout)
    return settings


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (``--help`` documents every option and default)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Mount an S3 bucket (or a local cottoncandy store) read-only. Arrays appear as "
        ".npy files decoded on the fly, prefixes as directories, dask arrays as one .npy and sparse "
        "matrices as .npz. Credentials come from CC_ACCESS_KEY/CC_SECRET_KEY, "
        "~/.config/cottoncandy/options.cfg or boto3's own chain (AWS_* variables, profiles), never "
        "from the command line. Unmount with 'fusermount3 -u MOUNTPOINT'.",
    )
    parser.add_argument("bucket", metavar="BUCKET", help="bucket name (a directory with --backend local)")
    parser.add_argument("mountpoint", metavar="MOUNTPOINT", help="existing empty directory to mount on")
    parser.add_argument("--endpoint-url", default=None,
                        help="S3 endpoint URL (default: CC_ENDPOINT_URL, the config file, or AWS)")
    parser.add_argument("--prefix", default="", help="show only keys under this prefix (default: the whole bucket)")
    parser.add_argument("--backend", choices=("s3", "local"), default="s3", help="storage backend (default: %(default)s)")
    parser.add_argument("--cache-size", type=parse_size, default="1GiB", metavar="SIZE",
                        help="memory for cached decoded blocks and gzip checkpoints (these get a "
                        "quarter, at most 64 MiB) (default: %(default)s)")
    parser.add_argument("--block-size", type=parse_size, default="8MiB", metavar="SIZE",
                        help="size of a cached block and of one ranged GET (default: %(default)s)")
    parser.add_argument("--ttl", type=non_negative_seconds, default=30.0, metavar="SECONDS",
                        help="seconds listings and object metadata are trusted before being fetched "
                        "again (default: %(default)s)")
    parser.add_argument("--timeout", type=positive_seconds, default=60.0, metavar="SECONDS",
                        help="seconds to wait for the server to accept a connection (at most 10) or to send "
                        "the next bytes of an answer; a request that times out is retried (default: %(default)s)")
    parser.add_argument("--retries", type=non_negative_int, default=4, metavar="N",
                        help="retries of a failed request (connection refused or reset, timeout, HTTP 5xx, "
                        "throttling), with exponential backoff, before the read fails with EIO; a read "
                        "fails within about (N+1) x SECONDS plus the backoff (default: %(default)s)")
    parser.add_argument("--workers", type=positive_int, default=8, metavar="N", help="parallel GETs of the read path (default: %(default)s)")
    parser.add_argument("--foreground", "-f", action="store_true",
                        help="stay in the foreground (default: return once the mount is live)")
    parser.add_argument("--allow-other", action="store_true",
                        help="let other users read the mount (default: only you; needs user_allow_other "
                        "in /etc/fuse.conf unless root)")
    parser.add_argument("--log-file", default=None, metavar="PATH",
                        help="append logs here (default: stderr in the foreground, discarded in the background)")
    parser.add_argument("--debug", action="store_true", help="log every FUSE request and cache decision (default: off)")
    return parser


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
                         "container --device /dev/fuse")
    from .binding import FuseUnavailableError, load_mfusepy

    try:
        load_mfusepy()
    except FuseUnavailableError as exc:
        raise MountError(str(exc)) from None
    if os.geteuid() != 0 and not (shutil.which("fusermount3") or shutil.which("fusermount")):
        raise MountError("fusermount3 is missing: install fuse3 (apt-get install fuse3)")


def open_backend(args: argparse.Namespace, quick: bool = False):
    """Connect to the bucket and prove it can be listed, or raise :class:`MountError`."""
    from ..interface import make_backend

    where = args.endpoint_url or os.environ.get("CC_ENDPOINT_URL") or "the default endpoint"
    settings = s3_settings(args, quick) if args.backend == "s3" else {}
    try:
        backend = make_backend(args.bucket, args.backend, endpoint_url=args.endpoint_url, **settings)
        if not backend.exists_bucket():
            raise BucketNotFoundError(args.bucket)
        backend.list_dir(args.prefix.strip("/") + "/" if args.prefix.strip("/") else "")
    except BucketNotFoundError:
        raise MountError(f"no such bucket: {args.bucket} at {where}") from None
    except AccessDeniedError as exc:
        raise MountError(f"access to bucket {args.bucket} refused by {where} (check the credentials): "
                         f"{exc}") from None
    except (CottonCandyError, OSError, ValueError) as exc:
        raise MountError(f"cannot reach {where} for bucket {args.bucket}: {exc}") from None
    return backend


# -- serving ------------------------------------------------------------------


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


def serve(args: argparse.Namespace, mountpoint: str, on_init: Callable[[], None] | None = None) -> None:
    """Mount and run the file system until it is unmounted (foreground)."""
    from .binding import fuse_major_version, run_fuse
    from .operations import CottonCandyOperations
    from .reader import ReadPath
    from .sparsefile import make_builder, scipy_available
    from .tree import Tree

    backend = open_backend(args)
    read_path = ReadPath(backend, cache_bytes=args.cache_size, block_size=args.block_size,
                         max_workers=args.workers)
    tree = Tree(backend, prefix=args.prefix, ttl=args.ttl,
                build_sparse=make_builder(read_path) if scipy_available() else None)
    max_read = min(args.block_size, 1 << 20) if fuse_major_version() >= 3 else 0
    def live() -> None:
        if max_read:
            threading.Thread(target=tune_readahead, args=(mountpoint, max(max_read, 4 << 20)),
                             name="cc-readahead", daemon=True).start()
        if on_init is not None:
            on_init()

    operations = CottonCandyOperations(tree, read_path, kernel_timeout=args.ttl,
                                       block_size=args.block_size, max_read=max_read, on_init=live)
    options: dict[str, object] = {
        "foreground": True,
        "nothreads": False,
        "ro": True,
        "default_permissions": True,
        "fsname": "cottoncandy:" + re.sub(r"[^\w.-]", "_", os.path.basename(args.bucket.rstrip("/"))),
        "subtype": "cottoncandy",
    }
    if max_read:  # libfuse 3
        options["max_read"] = max_read
    if fuse_major_version() >= 3 and shutil.which("fusermount3"):
        options["auto_unmount"] = True  # no stale mount even if this process is killed
    if args.allow_other:
        options["allow_other"] = True
    if args.debug:
        options["debug"] = True
    logger.info("mounting %s on %s", backend, mountpoint)
    try:
        run_fuse(operations, mountpoint, **options)
    except RuntimeError as exc:
        # libfuse 3 ends its loop with status 8 when SIGINT/SIGTERM/SIGHUP stopped a live mount
        if not (operations.initialized and exc.args == (8,)):
            raise
        logger.info("stopped by a signal")
    finally:
        tree.close()
        read_path.close()
        backend.close()
    logger.info("unmounted %s", mountpoint)


def _report(fd: int, status: bytes, message: str = "") -> None:
    """Tell the waiting parent how the mount went (once), then close the pipe."""
    try:
        os.write(fd, status + b" " + message.encode("utf-8", "replace").replace(b"\n", b" ") + b"\n")
        os.close(fd)
    except OSError:
        pass  # parent gone or already told


def _child_main(args: argparse.Namespace, fd: int) -> int:
    try:
        mountpoint = check_mountpoint(args.mountpoint)
        check_fuse()
        open_backend(args, quick=True).close()
        serve(args, mountpoint, on_init=lambda: _report(fd, READY))
    except MountError as exc:
        _report(fd, FAILED, str(exc))
        logger.error("%s", exc)
        return 1
    except (RuntimeError, OSError) as exc:
        _report(fd, FAILED, f"mount failed: {exc}")
        logger.error("mount failed: %s", exc)
        return 1
    return 0


def _spawn_background(argv: Sequence[str], args: argparse.Namespace) -> int:
    """Start the mount process, wait until it is live (or failed) and return the exit code."""
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, **{READY_FD_ENV: str(write_fd)})
    command = [sys.executable, "-m", "cottoncandy.fuse.cli", *argv, "--foreground"]
    try:
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(open(args.log_file, "ab")) if args.log_file else subprocess.DEVNULL
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
                print(f"{PROG}: the mount did not come up within {MOUNT_DEADLINE:.0f} s", file=sys.stderr)
                return 1
            ready, _, _ = select.select([pipe], [], [], remaining)
            if ready:
                chunk = pipe.read(4096)
                if not chunk:
                    break
                data += chunk
    status, _, message = data.partition(b" ")
    if status == READY and os.path.ismount(args.mountpoint):
        return 0
    try:
        code = child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        code = child.wait()
    text = message.decode("utf-8", "replace").strip() or f"the mount process exited with status {code}"
    print(f"{PROG}: {text}", file=sys.stderr)
    return 1


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING
    handler: logging.Handler = (logging.FileHandler(args.log_file) if args.log_file and args.foreground
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter(f"{PROG}[%(process)d] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    if not args.debug:
        logging.getLogger("botocore").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cottoncandy-mount``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    ready_fd = os.environ.pop(READY_FD_ENV, None)
    if ready_fd is not None:
        return _child_main(args, int(ready_fd))
    try:
        mountpoint = check_mountpoint(args.mountpoint)
        check_fuse()
        open_backend(args, quick=True).close()
        if not args.foreground:
            return _spawn_background(argv, args)
        serve(args, mountpoint)
    except MountError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as exc:
        print(f"{PROG}: mount failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
