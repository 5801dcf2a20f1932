"""Fault injection against real servers: a loopback ``rclone serve s3`` behind :class:`FaultProxy`.

The Python API and real mounts talk to the proxy, which resets connections,
answers 503/500, cuts bodies short, stalls requests, or finds the server gone.
Every read must give the right bytes or a clear error within a bound derived
from the timeout/retry settings; never wrong bytes, never a hang. Uploads that
fail leave the previous version intact and no multipart upload behind.

``CC_FAULT_DOWN_SECONDS`` sets how long the server stays down in the mount
test (default 2 s; ``scripts/reliability_report.py`` uses longer windows).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cottoncandy as cc
from cottoncandy.config import S3Settings
from cottoncandy.errors import StorageError
from cottoncandy.fuse.cli import build_parser, s3_settings
from tests.conftest import new_bucket
from tests.faultproxy import TRANSIENT, FaultProxy, part_number
from tests.helpers import sha256 as digest
from tests.helpers import wait_until
from tests.mountutil import mount_env, mounted, processes_using, reap
from tests.servers import free_port, make_client, start_rclone

MiB = 1 << 20
DOWN_SECONDS = float(os.environ.get("CC_FAULT_DOWN_SECONDS", "2"))
#: Short timeouts so that failures surface in seconds.
FAST = {"connect_timeout": 1.0, "read_timeout": 1.5, "max_attempts": 3}
#: Enough attempts that 10 % transient faults are always absorbed.
PATIENT = {"connect_timeout": 2.0, "read_timeout": 5.0, "max_attempts": 6}
SMALL_PARTS = {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "max_concurrency": 4}
SLACK = 3.0  # scheduling and process start-up on a busy 2-core machine


def worst_case_seconds(settings: dict, requests: int = 1) -> float:
    """Upper bound on the time ``requests`` sequential requests may take to fail with ``settings``.

    Each attempt waits at most the larger timeout; botocore's standard mode
    sleeps at most ``min(2**i, 20)`` s before retry ``i`` (throttling scale).
    """
    s = S3Settings(**settings)
    backoff = sum(min(2**i, 20) for i in range(s.max_attempts - 1))
    return requests * (s.max_attempts * max(s.connect_timeout, s.read_timeout) + backoff) + SLACK


def inject_one_of_each(proxy: FaultProxy) -> None:
    """Make sure every transient kind happens at least once (``cut`` needs a GET with a body)."""
    for kind in TRANSIENT:
        proxy.inject(kind, match=(lambda r: r.method == "GET") if kind == "cut" else None)




def direct(server, bucket: str, **settings):
    """An interface that bypasses the proxy (to set up and check the truth)."""
    return cc.get_interface(bucket, ACCESS_KEY=server.access_key, SECRET_KEY=server.secret_key,
                            endpoint_url=server.endpoint_url, verbose=False, **settings)


def proxied(server, proxy: FaultProxy, bucket: str, **settings):
    """An interface whose every request goes through ``proxy``."""
    return cc.get_interface(bucket, ACCESS_KEY=server.access_key, SECRET_KEY=server.secret_key,
                            endpoint_url=proxy.url, verbose=False, **settings)


@pytest.fixture
def proxy(rclone_server):
    with FaultProxy(rclone_server.endpoint_url, seed=5, stall_bound=30.0) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def bucket(rclone_server, buckets):
    return buckets(rclone_server)


# -- the proxy itself ------------------------------------------------------------


def test_proxy_faults_are_deterministic_per_seed(rclone_server, bucket):
    rclone_server.client().put_object(Bucket=bucket, Key="k", Body=b"x" * 1000)

    def outcomes(seed: int) -> list[str]:
        with FaultProxy(rclone_server.endpoint_url, seed=seed) as p:
            p.set_rate(0.3, ("503", "500"))
            client = make_client(p.url, rclone_server.access_key, rclone_server.secret_key,
                                 retries={"mode": "standard", "total_max_attempts": 1})
            seen = []
            for _ in range(30):
                try:
                    seen.append(client.get_object(Bucket=bucket, Key="k")["Body"].read().decode()[:1])
                except client.exceptions.ClientError as exc:
                    seen.append(exc.response["Error"]["Code"])
            assert p.snapshot()["requests"] == 30
            return seen

    first = outcomes(11)
    assert first == outcomes(11)
    assert {"x", "SlowDown", "InternalError"} <= set(first)


# -- Python API --------------------------------------------------------------------


def test_transient_faults_uploads_and_downloads_verified(rclone_server, proxy, bucket):
    rng = np.random.default_rng(0)
    arrays = {f"arr/{i:02d}": rng.standard_normal(n) for i, n in enumerate([10, 1000, 100_000, 300_000] * 3)}
    arrays["arr/big"] = rng.standard_normal(12 * MiB // 8)  # multipart: 3 parts up, 3 ranged GETs down
    cci = proxied(rclone_server, proxy, bucket, **PATIENT, **SMALL_PARTS)
    inject_one_of_each(proxy)
    proxy.set_rate(0.10)
    for key, arr in arrays.items():
        cci.upload_raw_array(key, arr, compression=False if arr.size > 1000 else "gzip")
    for key, arr in arrays.items():
        assert digest(cci.download_raw_array(key)) == digest(arr), key
    injected = proxy.snapshot()
    assert all(injected.get(kind, 0) >= 1 for kind in TRANSIENT), injected
    proxy.clear()
    truth = direct(rclone_server, bucket)
    for key, arr in arrays.items():  # what the server holds, read without the proxy
        assert digest(truth.download_raw_array(key)) == digest(arr), key
    uploads = rclone_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []


def test_cut_bodies_are_resumed_not_returned_short(rclone_server, proxy, bucket):
    arr = np.arange(3 * MiB, dtype="<i8")  # 24 MiB: 5 ranged GETs of 5 MiB
    direct(rclone_server, bucket).upload_raw_array("cut", arr, compression=False)
    cci = proxied(rclone_server, proxy, bucket, **FAST, **SMALL_PARTS)
    proxy.inject("cut", count=4, match=lambda r: r.method == "GET")
    assert digest(cci.download_raw_array("cut")) == digest(arr)
    assert proxy.faults["cut"] == 4
    # the mount's read path: one ranged GET per block
    assert cci.backend.read_range("cut", 10, 10 + 6 * MiB) == arr.tobytes()[10 : 10 + 6 * MiB]


def test_body_always_cut_raises_instead_of_wrong_bytes(rclone_server, proxy, bucket):
    arr = np.arange(MiB // 2, dtype="<i8")  # 4 MiB: one ranged GET
    direct(rclone_server, bucket).upload_raw_array("always-cut", arr, compression=False)
    cci = proxied(rclone_server, proxy, bucket, **FAST, **SMALL_PARTS)
    proxy.inject("cut", count=None, match=lambda r: r.method == "GET")
    started = time.monotonic()
    with pytest.raises(StorageError, match="always-cut"):
        cci.download_raw_array("always-cut")
    assert time.monotonic() - started < worst_case_seconds(FAST)
    assert proxy.faults["cut"] == FAST["max_attempts"]  # one GET, resumed until attempts run out


@pytest.mark.parametrize("settings", [FAST, {**FAST, "max_attempts": 1}], ids=["3-attempts", "1-attempt"])
def test_stalled_server_raises_within_bound(rclone_server, proxy, bucket, settings):
    direct(rclone_server, bucket).upload_raw_array("stalled", np.arange(100), compression=False)
    cci = proxied(rclone_server, proxy, bucket, **settings)
    before = proxy.snapshot()["requests"]  # get_interface's bucket check went through the proxy
    proxy.inject("stall", count=None)
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"s3://.*/stalled"):
        cci.download_raw_array("stalled")
    elapsed = time.monotonic() - started
    assert settings["read_timeout"] * settings["max_attempts"] <= elapsed < worst_case_seconds(settings)
    assert proxy.snapshot()["requests"] - before == settings["max_attempts"]


def test_server_down_raises_clear_error_within_bound(rclone_server, proxy, bucket):
    direct(rclone_server, bucket).upload_raw_array("down", np.arange(100), compression=False)
    cci = proxied(rclone_server, proxy, bucket, **FAST)
    proxy.retarget(f"http://127.0.0.1:{free_port()}")  # nothing listens there: the server is gone
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        cci.download_raw_array("down")
    assert time.monotonic() - started < worst_case_seconds(FAST)
    assert isinstance(info.value, OSError) and info.value.errno == errno.EIO
    assert "s3://" in str(info.value) and rclone_server.secret_key not in str(info.value)
    assert proxy.faults["upstream_down"] == FAST["max_attempts"]


# -- uploads -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "reset"])
def test_failed_part_keeps_previous_version_and_aborts_upload(rclone_server, proxy, bucket, kind):
    old = np.arange(1000, dtype="<f4")
    direct(rclone_server, bucket).upload_raw_array("obj", old, compression=False)
    cci = proxied(rclone_server, proxy, bucket, **FAST, **SMALL_PARTS)
    proxy.inject(kind, count=None, match=lambda r: part_number(r) == 2)
    with pytest.raises(StorageError, match="part 2"):
        cci.upload_raw_array("obj", np.ones(3 * MiB, dtype="<f8"), compression=False)
    assert proxy.faults[kind] == FAST["max_attempts"]
    proxy.clear()
    truth = direct(rclone_server, bucket)
    assert digest(truth.download_raw_array("obj")) == digest(old)
    assert truth.glob("*") == ["obj"]
    assert rclone_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


UPLOADER = """
import sys, numpy as np, cottoncandy as cc
cci = cc.get_interface(sys.argv[1], verbose=False, part_size=5 << 20, multipart_threshold=5 << 20,
                       max_concurrency=2, read_timeout=60)
cci.upload_raw_array(sys.argv[2], np.ones(int(sys.argv[3]), dtype='<f8'), compression=False)
"""


def test_sigkill_mid_upload_keeps_previous_version(rclone_server, proxy, bucket):
    old = np.arange(1000, dtype="<f4")
    direct(rclone_server, bucket).upload_raw_array("obj", old, compression=False)
    proxy.inject("stall", count=None, match=lambda r: (part_number(r) or 1) > 1)
    env = mount_env(proxy.url, rclone_server.access_key, rclone_server.secret_key)
    uploader = subprocess.Popen([sys.executable, "-c", UPLOADER, bucket, "obj", str(4 * MiB)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proxy.wait_for(lambda p: p.stalled >= 1, timeout=30), uploader.communicate(timeout=30)[0]
        uploader.send_signal(signal.SIGKILL)
        assert uploader.wait(timeout=10) == -signal.SIGKILL
    finally:
        if uploader.poll() is None:
            uploader.kill()
            uploader.wait()
    client = rclone_server.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == ["obj"]
    assert digest(direct(rclone_server, bucket).download_raw_array("obj")) == digest(old)
    proxy.clear()  # the held parts may now reach the server: they never complete an upload
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


# -- mounts ---------------------------------------------------------------------------


def test_mount_timeout_and_retries_options():
    args = build_parser().parse_args(["b", "m", "--timeout", "2.5", "--retries", "1"])
    assert s3_settings(args) == {"read_timeout": 2.5, "connect_timeout": 2.5, "max_attempts": 2, "max_inflight": 64}
    defaults = s3_settings(build_parser().parse_args(["b", "m"]))
    assert defaults == {"read_timeout": 60.0, "connect_timeout": 10.0, "max_attempts": 5, "max_inflight": 64}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["b", "m", "--timeout", "0"])


def _mount_args(timeout: float, retries: int) -> list[str]:
    return ["--timeout", str(timeout), "--retries", str(retries), "--block-size", "1MiB", "--ttl", "1"]


def _fresh_mountpoint(tmp_path: Path) -> Path:
    path = tmp_path / "mnt"
    path.mkdir()
    return path


def test_mount_reads_verified_under_transient_faults(rclone_server, proxy, bucket, tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"small": rng.standard_normal(MiB // 16), "plain": rng.standard_normal(2 * MiB),
              "gz": rng.integers(0, 9, MiB, dtype="<i4"), "blosc": rng.standard_normal(MiB // 2)}
    setup = direct(rclone_server, bucket)
    for (key, arr), compression in zip(arrays.items(), [False, False, "gzip", "Blosc"], strict=True):
        setup.upload_raw_array(key, arr, compression=compression)
    env = mount_env(proxy.url, rclone_server.access_key, rclone_server.secret_key)
    with mounted(bucket, _fresh_mountpoint(tmp_path), _mount_args(5, 6), env) as mount:
        for key in arrays:  # cut each body twice: the kernel retries a failed page once by itself, so only
            # resuming the GET makes a one-block file ("small", only ever read by the reader) load
            proxy.inject("cut", count=2, match=lambda r, k=key: r.method == "GET" and r.path.endswith("/" + k))
        inject_one_of_each(proxy)
        proxy.set_rate(0.10)
        for key, arr in arrays.items():
            assert digest(np.load(mount / f"{key}.npy")) == digest(arr), key
        assert proxy.faults["cut"] >= 2 * len(arrays) + 1, proxy.snapshot()
        assert all(proxy.faults[kind] >= 1 for kind in TRANSIENT), proxy.snapshot()
        assert mount.process.poll() is None


def test_mount_server_down_gives_eio_then_recovers(tmp_path):
    server = start_rclone(tmp_path / "data", tmp_path / "rclone.log")
    servers = [server]
    try:
        bucket = new_bucket(server)
        arrays = {name: np.full(MiB // 4, i, dtype="<f8") for i, name in enumerate(["before", "during", "after"])}
        setup = direct(server, bucket)
        for key, arr in arrays.items():  # .npy bodies: rclone keeps user metadata in memory only
            setup.upload_npy_array(f"{key}.npy", arr)
        setup.backend.close()
        with FaultProxy(server.endpoint_url) as proxy:
            env = mount_env(proxy.url, server.access_key, server.secret_key)
            timeout, retries = 1.0, 1
            bound = worst_case_seconds({"connect_timeout": timeout, "read_timeout": timeout,
                                        "max_attempts": retries + 1}, requests=2)
            with mounted(bucket, _fresh_mountpoint(tmp_path), _mount_args(timeout, retries), env) as mount:
                assert digest(np.load(mount / "before.npy")) == digest(arrays["before"])
                server.stop()
                window_end = time.monotonic() + DOWN_SECONDS
                failures = 0
                while failures == 0 or time.monotonic() < window_end:  # reads during the whole window fail
                    started = time.monotonic()
                    with pytest.raises(OSError) as info:
                        (mount / "during.npy").read_bytes()
                    assert info.value.errno == errno.EIO
                    assert time.monotonic() - started < bound
                    failures += 1
                assert os.path.ismount(mount.path) and mount.process.poll() is None
                assert proxy.faults["upstream_down"] >= failures
                restarted = start_rclone(server.data_dir, tmp_path / "rclone2.log",
                                         credentials=(server.access_key, server.secret_key))
                servers.append(restarted)
                proxy.retarget(restarted.endpoint_url)
                for key in ("during", "after"):
                    data = wait_until(lambda k=key: _read_or_none(mount / f"{k}.npy"), 20, f"{key} readable")
                    assert digest(np.load(_bytes_file(tmp_path, data))) == digest(arrays[key])
    finally:
        for running in servers:
            running.stop()


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return None


def _bytes_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "copy.npy"
    path.write_bytes(data)
    return path


READER = "import sys\nwith open(sys.argv[1], 'rb') as f:\n    f.read()\n"


def test_unmount_while_reader_blocked_on_stalled_request(rclone_server, proxy, bucket, tmp_path):
    direct(rclone_server, bucket).upload_raw_array("slow", np.arange(MiB, dtype="<f8"), compression=False)
    timeout = 2.0
    mountpoint = _fresh_mountpoint(tmp_path)
    env = mount_env(proxy.url, rclone_server.access_key, rclone_server.secret_key)
    with mounted(bucket, mountpoint, _mount_args(timeout, 0), env) as mount:
        proxy.inject("stall", count=None)
        reader = subprocess.Popen([sys.executable, "-c", READER, str(mount / "slow.npy")],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert proxy.wait_for(lambda p: p.stalled >= 1, timeout=20), "the reader never reached the server"
            tool = shutil.which("fusermount3") or shutil.which("fusermount")
            plain = subprocess.run([tool, "-u", str(mountpoint)], capture_output=True, text=True, timeout=30)
            if plain.returncode != 0:  # the blocked reader keeps the mount busy: detach it lazily
                assert "busy" in plain.stderr.lower(), plain.stderr
                subprocess.run([tool, "-uz", str(mountpoint)], check=True, capture_output=True, timeout=30)
            assert not os.path.ismount(mountpoint)
            # the stalled request times out (--timeout, no retry): the reader gets EIO and exits
            output = reader.communicate(timeout=worst_case_seconds(
                {"connect_timeout": timeout, "read_timeout": timeout, "max_attempts": 1}, requests=2))[0]
            assert reader.returncode != 0 and b"Input/output error" in output, output
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
        assert mount.process.wait(timeout=30) == 0, mount.log()
        assert reap(mountpoint, None, timeout=10) == []
        assert processes_using(mountpoint) == []
