"""Run ``cottoncandy-mount`` in a subprocess for a test, and always clean up.

:func:`mounted` starts the mount (``--foreground`` in a child process, or the
default background mode), waits for it to be live by polling
``os.path.ismount`` until a deadline, and in ``finally`` unmounts it and
reaps every process it started, even when the test failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
MOUNT_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0


class MountFailed(RuntimeError):
    """The mount did not come up (the message holds the mount's output)."""


@dataclass
class Mount:
    """A live mount.

    Attributes
    ----------
    path : Path
        The mountpoint.
    process : subprocess.Popen or None
        The foreground mount process (``None`` in background mode).
    log_path : Path
        Where the mount's stderr goes.
    """

    path: Path
    process: subprocess.Popen | None
    log_path: Path
    command: list[str] = field(default_factory=list)

    def log(self) -> str:
        """The mount's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __truediv__(self, other: str) -> Path:
        return self.path / other


def mount_command(bucket: str, mountpoint: Path, *args: str) -> list[str]:
    """The command line of a mount (run with this interpreter)."""
    return [sys.executable, "-m", "cottoncandy.fuse.cli", str(bucket), str(mountpoint), *args]


def installed_command() -> Path:
    """The ``cottoncandy-mount`` console script of the environment running the tests."""
    path = Path(sys.executable).parent / "cottoncandy-mount"
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: install the package (pip install -e .)")
    return path


def mount_env(endpoint_url: str | None = None, access_key: str | None = None,
              secret_key: str | None = None, state_home: Path | None = None) -> dict[str, str]:
    """Environment for a mount: credentials in ``CC_*`` variables, nothing from the user's config.

    boto3 never asks the EC2 metadata service for credentials (no network beyond
    loopback). ``state_home`` is the ``XDG_STATE_HOME`` where a background mount
    without ``--log-file`` writes its log.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CC_"))}
    env["CC_CONFIG_FILE"] = os.devnull
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    if state_home is not None:
        env["XDG_STATE_HOME"] = str(state_home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if endpoint_url:
        env["CC_ENDPOINT_URL"] = endpoint_url
    if access_key:
        env["CC_ACCESS_KEY"] = access_key
    if secret_key:
        env["CC_SECRET_KEY"] = secret_key
    return env


def processes_using(mountpoint: Path) -> list[psutil.Process]:
    """Live processes whose command line names ``mountpoint`` (mount process, fusermount helper)."""
    target = str(mountpoint)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and any(target == arg or arg.endswith(" " + target)
                                               for arg in proc.info["cmdline"] or []):
                found.append(proc)
    return found


def unmount(mountpoint: Path) -> None:
    """Unmount if mounted (``fusermount3 -u``, lazily as a last resort)."""
    if not os.path.ismount(mountpoint):
        return
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    result = subprocess.run([tool, "-u", str(mountpoint)], check=False, capture_output=True, timeout=EXIT_TIMEOUT)
    if result.returncode != 0 and os.path.ismount(mountpoint):
        subprocess.run([tool, "-uz", str(mountpoint)], check=False, capture_output=True, timeout=EXIT_TIMEOUT)


def reap(mountpoint: Path, process: subprocess.Popen | None, timeout: float = EXIT_TIMEOUT) -> list[str]:
    """Wait for every process of the mount to end; kill stragglers. Returns what had to be killed."""
    killed = []
    if process is not None:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            killed.append(f"mount process {process.pid}")
    leftovers = processes_using(mountpoint)
    _gone, alive = psutil.wait_procs(leftovers, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            killed.append(" ".join(proc.cmdline()))
            proc.kill()
    return killed


def wait_mounted(mountpoint: Path, process: subprocess.Popen | None, log_path: Path,
                 timeout: float = MOUNT_TIMEOUT) -> None:
    """Poll until ``mountpoint`` is a mount point; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mountpoint):
        if process is not None and process.poll() is not None:
            raise MountFailed(f"mount exited with {process.returncode}: {log_path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise MountFailed(f"{mountpoint} not mounted after {timeout} s: {log_path.read_text(errors='replace')}")
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.02)  # returns at once if the mount process dies
        else:
            time.sleep(0.02)  # polling interval, bounded by the deadline above


@contextlib.contextmanager
def mounted(bucket: str, mountpoint: Path, args: Sequence[str] = (), env: dict[str, str] | None = None,
            foreground: bool = True, log_path: Path | None = None) -> Iterator[Mount]:
    """Mount ``bucket`` on ``mountpoint`` for the duration of the ``with`` block.

    Parameters
    ----------
    bucket : str
        Bucket name, or directory with ``--backend local`` in ``args``.
    mountpoint : Path
        Empty directory.
    args : sequence of str
        Extra ``cottoncandy-mount`` options.
    env : dict, optional
        Environment (see :func:`mount_env`).
    foreground : bool
        Run ``--foreground`` in a child process (else use the background mode
        and wait for the command to return).
    log_path : Path, optional
        Where to write the mount's stderr (default: beside the mountpoint).
    """
    mountpoint = Path(mountpoint)
    log_path = log_path or mountpoint.with_name(mountpoint.name + ".log")
    command = mount_command(bucket, mountpoint, *args)
    env = env if env is not None else mount_env()
    process = None
    try:
        if foreground:
            with open(log_path, "wb") as log:
                process = subprocess.Popen(command + ["--foreground"], env=env, stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT)
        else:
            result = subprocess.run(command + ["--log-file", str(log_path)], env=env, check=False, capture_output=True,
                                    timeout=MOUNT_TIMEOUT)
            if result.returncode != 0:
                raise MountFailed(f"cottoncandy-mount exited with {result.returncode}: {result.stderr!r}")
        wait_mounted(mountpoint, process, log_path)
        yield Mount(mountpoint, process, log_path, command)
    finally:
        unmount(mountpoint)
        reap(mountpoint, process)
