"""The SeaweedFS launcher: loopback only, ports of our choosing, secrets off the command line, data kept."""

from __future__ import annotations

import contextlib
import os
import re
import stat

import numpy as np
import psutil

from cottoncandy.interface import Interface

from .conftest import make_s3_backend, new_bucket
from .helpers import wait_until
from .seaweedfs import IDENTITIES_FILE, start_seaweedfs

DEADLINE = 20.0


def _ports_on_command_line(cmdline: list[str]) -> set[int]:
    """Every ``-<name>.port[.grpc]=N`` given to ``weed`` (0 turns an endpoint off)."""
    ports = set()
    for arg in cmdline:
        match = re.fullmatch(r"-[\w.]*port[\w.]*=(\d+)", arg)
        if match and int(match.group(1)):
            ports.add(int(match.group(1)))
    return ports


def _listening(pid: int) -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN}


def test_listens_on_loopback_only_on_the_ports_it_was_given(seaweedfs_server):
    server = seaweedfs_server
    cmdline = psutil.Process(server.process.pid).cmdline()
    given = _ports_on_command_line(cmdline)
    assert len(given) == 10  # master, volume, filer, S3, admin: HTTP and gRPC each
    # the admin server comes up after the S3 gateway answers: wait until all ten listen
    with contextlib.suppress(AssertionError):  # the assertions below say what is wrong
        wait_until(lambda: {port for _, port in _listening(server.process.pid)} == given, DEADLINE)
    listening = _listening(server.process.pid)
    assert {port for _, port in listening} == given, "a port it was not given, or one missing"
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    assert int(server.endpoint_url.rsplit(":", 1)[1]) in given


def test_credentials_only_in_a_private_identities_file(seaweedfs_server):
    server = seaweedfs_server
    process = psutil.Process(server.process.pid)
    visible = " ".join(process.cmdline()) + repr(process.environ())
    assert server.access_key not in visible and server.secret_key not in visible
    config = next(arg.split("=", 1)[1] for arg in process.cmdline() if arg.startswith("-s3.config="))
    assert config.endswith(IDENTITIES_FILE)
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(config)).st_mode) == 0o700  # the data directory
    log = server.log_path.read_text(errors="replace")
    assert server.secret_key not in log and server.access_key not in log


def test_restart_on_the_same_directory_keeps_every_array(tmp_path):
    """Arrays keep dtype, shape and codec across a restart (rclone forgets metadata); ranged GETs give 206."""
    data = tmp_path / "data"
    arrays = {
        "keep/plain": np.arange(12, dtype=">i2").reshape(3, 4),
        "keep/gzip": np.linspace(0, 1, 1000, dtype="<f4"),
        "keep/scalar": np.array(2.5),  # shape '' is dropped by the server: read as 0-d
    }
    with start_seaweedfs(data, tmp_path / "first.log") as first:
        bucket = new_bucket(first)
        cci = Interface(make_s3_backend(first, bucket))
        for key, arr in arrays.items():
            cci.upload_raw_array(key, arr, compression="gzip" if key.endswith("gzip") else False)
        cci.upload_dask_array("keep/volume", np.arange(600.0).reshape(10, 60), axis=-1)
        cci.backend.close()
    with start_seaweedfs(data, tmp_path / "second.log") as second:
        assert (second.access_key, second.secret_key) == (first.access_key, first.secret_key)
        cci = Interface(make_s3_backend(second, bucket))
        try:
            for key, arr in arrays.items():
                back = cci.download_raw_array(key)
                assert back.dtype == arr.dtype and back.shape == arr.shape, key
                np.testing.assert_array_equal(back, arr)
            np.testing.assert_array_equal(cci.download_dask_array("keep/volume").compute(),
                                          np.arange(600.0).reshape(10, 60))
        finally:
            cci.backend.close()
        answer = second.client().get_object(Bucket=bucket, Key="keep/plain", Range="bytes=2-5")
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert answer["Body"].read() == arrays["keep/plain"].tobytes()[2:6]
