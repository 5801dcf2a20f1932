"""Start or stop the quickstart's S3 server: SeaweedFS on loopback, its data in a directory you keep.

Usage::

    python scripts/quickstart_server.py start DIR   # same data every time, fresh free ports
    python scripts/quickstart_server.py stop DIR

``start`` runs SeaweedFS (:func:`tests.seaweedfs.start_seaweedfs`: every port
on 127.0.0.1 and chosen free, credentials in ``DIR/s3-data/s3-identities.json``
with mode 0600, generated on the first start and kept), waits until it
answers, and writes ``DIR/env.sh`` (mode 0600) exporting ``CC_ENDPOINT_URL``,
``CC_ACCESS_KEY``, ``CC_SECRET_KEY`` and ``QUICKSTART_SERVER_PID``. The server
keeps running in its own session after this script exits; its log is
``DIR/seaweedfs.log``. ``stop`` ends it and waits until it has written
everything down. Buckets, objects and their metadata live in ``DIR/s3-data``
and survive any number of stops and starts.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.seaweedfs import start_seaweedfs  # noqa: E402
from tests.servers import ServerStartError, write_private_file  # noqa: E402

STOP_TIMEOUT = 30.0


def _paths(workdir: str) -> tuple[Path, Path, Path]:
    work = Path(workdir).resolve()
    return work / "s3-data", work / "env.sh", work / "seaweedfs.pid"


def _running_server(data: Path, pid_file: Path) -> psutil.Process | None:
    """The ``weed`` process serving ``data`` recorded in ``pid_file``, if it still runs (pids get reused)."""
    try:
        process = psutil.Process(int(pid_file.read_text()))
        cmdline = process.cmdline()
    except (OSError, ValueError, psutil.Error):
        return None
    if cmdline and Path(cmdline[0]).name == "weed" and f"-dir={data}" in cmdline:
        return process
    return None


def start(workdir: str) -> None:
    data, env_file, pid_file = _paths(workdir)
    running = _running_server(data, pid_file)
    if running is not None:
        sys.exit(f"quickstart: a server for {data} is already running (pid {running.pid}); "
                 f"stop it first: {sys.argv[0]} stop {shlex.quote(workdir)}")
    try:
        server = start_seaweedfs(data, data.parent / "seaweedfs.log")
    except ServerStartError as exc:
        sys.exit(f"quickstart: {exc}")
    pid_file.write_text(f"{server.process.pid}\n")
    exports = (("CC_ENDPOINT_URL", server.endpoint_url), ("CC_ACCESS_KEY", server.access_key),
               ("CC_SECRET_KEY", server.secret_key), ("QUICKSTART_SERVER_PID", str(server.process.pid)))
    write_private_file(env_file, "".join(f"export {name}={shlex.quote(value)}\n" for name, value in exports))
    print(f"SeaweedFS listening on {server.endpoint_url} (pid {server.process.pid}, data in {data})")


def stop(workdir: str) -> None:
    data, _, pid_file = _paths(workdir)
    process = _running_server(data, pid_file)
    if process is None:
        print(f"no server running for {data}")
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except psutil.TimeoutExpired:  # what it acknowledged is in its files (the page cache outlives a kill)
        process.kill()
        process.wait(STOP_TIMEOUT)
    pid_file.unlink(missing_ok=True)
    print(f"stopped the server for {data} (pid {process.pid})")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit(__doc__)
    {"start": start, "stop": stop}[sys.argv[1]](sys.argv[2])
