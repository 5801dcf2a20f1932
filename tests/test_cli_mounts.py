"""``cottoncandy-mount`` as the mount tools people know it, through real mounts.

fstab lines through ``mount(8)`` and ``mount.fuse3``, ownership seen by
``stat``, the background mount's own log file, the debug levels, and the
warning for an empty ``--prefix``. Option parsing and the one-line mistakes
are in ``tests/test_cli.py``.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.helpers import GOLDEN_DIR, MANIFEST
from tests.mountutil import installed_command, mount_command, mount_env, mounted, processes_using, reap, unmount

ARRAY = np.arange(1000, dtype="<f8")
ARRAY_META = {"dtype": "<f8", "shape": "1000", "compression": "False", "order": "C"}
#: What libfuse 3.12-3.14.0 printed at every mount before binding.py set max_idle_threads.
LIBFUSE_THREADS_WARNING = "max threads"


def _bucket_with_objects(server, corrupt: bool = False) -> str:
    bucket = f"cc-cli-{secrets.token_hex(4)}"
    client = server.client()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="data/good", Body=ARRAY.tobytes(), Metadata=ARRAY_META)
    if corrupt:  # metadata promises 1000 doubles, the body holds 10
        client.put_object(Bucket=bucket, Key="data/too_short", Body=ARRAY[:10].tobytes(), Metadata=ARRAY_META)
    return bucket


def _mount_entry(mountpoint: Path) -> tuple[str, str, set[str]]:
    """``(source, type, options)`` of ``mountpoint`` in ``/proc/mounts``."""
    for line in Path("/proc/mounts").read_text().splitlines():
        source, target, fstype, options = line.split()[:4]
        if target == str(mountpoint):
            return source, fstype, set(options.split(","))
    raise AssertionError(f"{mountpoint} is not in /proc/mounts")


def _assert_unmounts(mountpoint: Path, command: list[str]) -> None:
    """``command`` (umount) ends the mount and its process, nothing left to kill."""
    daemons = [p for p in processes_using(mountpoint) if "cottoncandy.fuse.cli" in " ".join(p.cmdline())]
    assert daemons, "no mount process found"
    subprocess.run(command, check=True, timeout=60)
    _gone, alive = psutil.wait_procs(daemons, timeout=30)
    assert not alive and not os.path.ismount(mountpoint)


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


# -- fstab ---------------------------------------------------------------------


def test_fstab_line_mounts_with_mount(rclone_server, tmp_path):
    """``mount MOUNTPOINT`` from an fstab line; type ``fuse`` and the ``/path/to/cottoncandy-mount#bucket`` form.

    ``mount(8)`` drops ``PATH`` from the helper's environment, so this is the form
    for an installation outside the system ``PATH``; mount.fuse3 adds ``rw``, ``dev``
    and ``suid`` to the options, which must be accepted.
    """
    if os.geteuid() != 0:
        pytest.fail("mount(8) with an fstab file needs root")
    bucket = _bucket_with_objects(rclone_server)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{installed_command()}#{bucket} {mountpoint} fuse _netdev,noauto,"
                     f"endpoint_url={rclone_server.endpoint_url},allow_other,uid=1234,gid=2345,umask=027,ttl=5 0 0\n")
    env = mount_env(None, rclone_server.access_key, rclone_server.secret_key, state_home=tmp_path / "state")
    try:
        result = _run([shutil.which("mount"), "--fstab", str(fstab), str(mountpoint)], env)
        assert os.path.ismount(mountpoint)
        source, fstype, options = _mount_entry(mountpoint)
        assert (source, fstype) == (bucket, "fuse.cottoncandy-mount")
        assert {"ro", "allow_other", "default_permissions"} <= options
        np.testing.assert_array_equal(np.load(mountpoint / "data" / "good.npy"), ARRAY)
        info = os.stat(mountpoint / "data" / "good.npy")
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1234, 2345, 0o440)
        assert "logging to" in result.stderr and str(tmp_path / "state" / "cottoncandy") in result.stderr
        _assert_unmounts(mountpoint, [shutil.which("umount"), str(mountpoint)])
    finally:
        unmount(mountpoint)
        reap(mountpoint, None)


def test_mount_fuse3_runs_the_program_named_by_the_subtype(rclone_server, tmp_path):
    """``-t fuse.cottoncandy-mount``: mount.fuse3 runs ``cottoncandy-mount`` from ``PATH``, and
    ``/proc/mounts`` names that program, so the same line works in fstab once it is on the system PATH."""
    helper = shutil.which("mount.fuse3", path="/usr/sbin:/sbin:/usr/bin:/bin")
    assert helper, "mount.fuse3 is missing: install fuse3"
    bucket = _bucket_with_objects(rclone_server)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "cottoncandy-mount").symlink_to(installed_command())
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    env = mount_env(None, rclone_server.access_key, rclone_server.secret_key, state_home=tmp_path / "state")
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    try:
        _run([helper, bucket, str(mountpoint), "-t", "fuse.cottoncandy-mount", "-o",
              f"rw,_netdev,endpoint_url={rclone_server.endpoint_url},nodev,nosuid"], env)
        source, fstype, options = _mount_entry(mountpoint)
        assert source == bucket and {"ro", "nodev", "nosuid"} <= options
        program = fstype.removeprefix("fuse.")
        assert Path(shutil.which(program, path=env["PATH"])).resolve() == installed_command().resolve()
        assert sorted(os.listdir(mountpoint / "data")) == ["good.npy"]
        _assert_unmounts(mountpoint, [shutil.which("fusermount3"), "-u", str(mountpoint)])
    finally:
        unmount(mountpoint)
        reap(mountpoint, None)


# -- ownership -------------------------------------------------------------------


def test_uid_gid_umask_seen_by_stat(tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    args = ["--backend", "local", "--uid", "4321", "--gid", "8765", "--umask", "077"]
    with mounted(str(GOLDEN_DIR), mountpoint, args) as mount:
        for path, mode in ((mount.path / "raw" / "false" / "f8_3d.npy", 0o400), (mount.path / "raw", 0o500),
                           (mount.path, 0o500)):
            info = os.stat(path)
            assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (4321, 8765, mode), path
        arr = np.load(mount.path / "raw" / "false" / "f8_3d.npy")  # root still reads a 0400 file
        assert arr.shape == tuple(MANIFEST["raw/false/f8_3d"]["shape"])
        assert LIBFUSE_THREADS_WARNING not in mount.log()


# -- logs ------------------------------------------------------------------------


def test_background_mount_logs_the_eio_line_to_its_own_file(rclone_server, tmp_path):
    bucket = _bucket_with_objects(rclone_server, corrupt=True)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    state = tmp_path / "state"
    env = mount_env(rclone_server.endpoint_url, rclone_server.access_key, rclone_server.secret_key, state_home=state)
    try:
        result = _run(mount_command(bucket, mountpoint), env)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cottoncandy-mount: logging to "), result.stderr
        log_path = Path(lines[0].removeprefix("cottoncandy-mount: logging to "))
        assert log_path.parent == state / "cottoncandy" and log_path.is_file()
        with pytest.raises(OSError) as info:
            (mountpoint / "data" / "too_short.npy").read_bytes()
        assert info.value.errno == errno.EIO
        np.testing.assert_array_equal(np.load(mountpoint / "data" / "good.npy"), ARRAY)
        log = log_path.read_text()
        eio_lines = [line for line in log.splitlines() if "data/too_short" in line and " ERROR " in line]
        assert eio_lines, log
        assert LIBFUSE_THREADS_WARNING not in log and "Traceback" not in log
        assert rclone_server.secret_key not in log
    finally:
        unmount(mountpoint)
        reap(mountpoint, None)
    assert "unmounted" in log_path.read_text()  # the same file to the end


@pytest.mark.parametrize("level", ["--debug", "--debug-wire"])
def test_debug_logs_our_decisions_and_debug_wire_adds_the_wire(level, rclone_server, tmp_path):
    bucket = _bucket_with_objects(rclone_server, corrupt=True)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    log_file = tmp_path / "debug.log"
    env = mount_env(rclone_server.endpoint_url, rclone_server.access_key, rclone_server.secret_key)
    with mounted(bucket, mountpoint, [level, "--log-file", str(log_file)], env) as mount:
        np.testing.assert_array_equal(np.load(mount.path / "data" / "good.npy"), ARRAY)
        with pytest.raises(OSError):
            (mount.path / "data" / "too_short.npy").read_bytes()
    log = log_file.read_text() + mount.log()
    assert " DEBUG cottoncandy." in log
    wire = [line for line in log.splitlines() if " DEBUG botocore" in line or " DEBUG urllib3" in line]
    if level == "--debug":
        assert not wire, wire[:3]
    else:
        assert len(wire) > 50 and "unique: " in log  # botocore's requests and libfuse's own trace
    assert rclone_server.access_key not in log and rclone_server.secret_key not in log


# -- a prefix with nothing under it ------------------------------------------------


def test_prefix_matching_nothing_warns_and_mounts(tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    env = mount_env(state_home=tmp_path / "state")
    try:
        result = _run(mount_command(str(GOLDEN_DIR), mountpoint, "--backend", "local", "--prefix", "no/such/"), env)
        assert "warning: nothing under prefix 'no/such/'" in result.stderr
        assert os.path.ismount(mountpoint) and os.listdir(mountpoint) == []
    finally:
        unmount(mountpoint)
        reap(mountpoint, None)
