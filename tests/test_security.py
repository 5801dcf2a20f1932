"""Security: a mount is private, secrets never leak, no key reaches outside a store.

(a) A mount without ``--allow-other`` refuses every other user (tested as
``nobody`` through ``setpriv``); with it, that user can read.
(b) The access and secret keys never appear in the command lines of the mount
and its children, in its logs at any level (``--debug``), nor in the messages,
reprs or tracebacks of Python API errors.
(c) ``..`` keys are refused, and a symbolic link leading out of a local store
is neither listed, nor read, nor written through, by the API or the mount.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

import cottoncandy as cc
from cottoncandy.backends.local import LocalBackend
from cottoncandy.backends.s3 import S3Backend
from cottoncandy.config import Credentials, S3Settings
from cottoncandy.errors import (
    AccessDeniedError,
    CottonCandyError,
    CredentialsRefusedError,
    InvalidKeyError,
    ObjectNotFoundError,
)
from cottoncandy.interface import Interface
from tests.hostile import GOOD, GOOD_META, put_s3, write_local
from tests.mountutil import mount_command, mount_env, mounted, reap, unmount
from tests.servers import free_port

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@contextlib.contextmanager
def world_traversable_dir() -> Iterator[Path]:
    """A directory ``nobody`` can reach (pytest's tmp_path lives under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="cc-sec-", dir="/tmp"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*NOBODY, *argv], check=False, capture_output=True, text=True, timeout=60)


def _small_store(root: Path) -> None:
    write_local(root, "data/arr", GOOD.tobytes(), GOOD_META)
    write_local(root, "data/note.txt", b"private note", None)


# ------------------------------------------------------------ (a) privacy


def test_mount_is_private_without_allow_other():
    with world_traversable_dir() as base:
        _small_store(base / "store")
        mountpoint = base / "mnt"
        mountpoint.mkdir()
        mountpoint.chmod(0o755)
        with mounted(str(base / "store"), mountpoint, ["--backend", "local"], mount_env(),
                     log_path=base / "mount.log") as mount:
            assert (mount.path / "data" / "note.txt").read_bytes() == b"private note"  # root reads
            for argv in (["ls", str(mount.path)], ["ls", str(mount.path / "data")],
                         ["cat", str(mount.path / "data" / "note.txt")],
                         ["stat", str(mount.path / "data" / "arr.npy")]):
                result = as_nobody(*argv)
                assert result.returncode != 0, (argv, result.stdout)
                assert "Permission denied" in result.stderr, (argv, result.stderr)
                assert "private note" not in result.stdout


def test_allow_other_lets_another_user_read():
    with world_traversable_dir() as base:
        _small_store(base / "store")
        mountpoint = base / "mnt"
        mountpoint.mkdir()
        with mounted(str(base / "store"), mountpoint, ["--backend", "local", "--allow-other"], mount_env(),
                     log_path=base / "mount.log") as mount:
            listing = as_nobody("ls", str(mount.path / "data"))
            assert listing.returncode == 0, listing.stderr
            assert listing.stdout.split() == ["arr.npy", "note.txt"]
            note = as_nobody("cat", str(mount.path / "data" / "note.txt"))
            assert note.returncode == 0 and note.stdout == "private note", note.stderr
            array = subprocess.run([*NOBODY, "tail", "-c", str(GOOD.nbytes), str(mount.path / "data" / "arr.npy")],
                                   check=False, capture_output=True, timeout=60)
            assert array.returncode == 0 and array.stdout == GOOD.tobytes()
            denied = as_nobody("touch", str(mount.path / "data" / "new"))
            assert denied.returncode != 0  # still read-only for everyone


# ------------------------------------------------------------ (b) secrets


def _leaks(text: str, *needles: str) -> list[str]:
    return [n for n in needles if n and n in text]


def _mount_family_cmdlines(pid: int) -> str:
    proc = psutil.Process(pid)
    lines = []
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            lines.append(" ".join(p.cmdline()))
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{p.pid}/cmdline").read_bytes().decode("utf-8", "replace"))
    return "\n".join(lines)


def test_secrets_stay_out_of_cmdline_and_debug_logs(rclone_server, tmp_path, buckets):
    server = rclone_server
    client = server.client()
    bucket = buckets(server, "cc-sec")
    put_s3(client, bucket, "arr", GOOD.tobytes(), GOOD_META)
    put_s3(client, bucket, "broken", b"short", GOOD_META)
    keys = (server.access_key, server.secret_key)
    log_file = tmp_path / "debug.log"
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    env = mount_env(server.endpoint_url, *keys)
    with mounted(bucket, mountpoint, ["--debug", "--log-file", str(log_file)], env) as mount:
        np.testing.assert_array_equal(np.load(mount.path / "arr.npy"), GOOD)
        with pytest.raises(OSError) as info:
            (mount.path / "broken.npy").read_bytes()
        assert info.value.errno == errno.EIO
        assert not (mount.path / "missing.npy").exists()
        cmdlines = _mount_family_cmdlines(mount.process.pid)
        assert "cottoncandy.fuse.cli" in cmdlines
        assert not _leaks(cmdlines, *keys)
    debug_log = log_file.read_text(errors="replace") + mount.log()
    assert "DEBUG" in debug_log and "broken" in debug_log  # it did log, at debug level, the failure too
    assert not _leaks(debug_log, *keys), "credentials in the mount's debug log"

    # wrong credentials: the mount refuses to start; neither its log nor its message shows a key
    wrong_secret = "WrongSecret" + secrets.token_hex(12)
    bad_log = tmp_path / "bad.log"
    (tmp_path / "mnt2").mkdir()
    try:
        result = subprocess.run(
            mount_command(bucket, tmp_path / "mnt2", "--debug", "--log-file", str(bad_log), "--foreground"),
            env=mount_env(server.endpoint_url, server.access_key, wrong_secret),
            check=False, capture_output=True, text=True, timeout=120)
    finally:
        unmount(tmp_path / "mnt2")
        reap(tmp_path / "mnt2", None)
    assert result.returncode != 0
    text = bad_log.read_text(errors="replace") + result.stdout + result.stderr
    assert "refused" in text
    assert not _leaks(text, server.access_key, wrong_secret, server.secret_key)


def _error_texts(exc: BaseException) -> str:
    """Everything a user could print of an error: str, repr, and the chained traceback."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


def test_api_errors_and_debug_logs_never_show_secrets(rclone_server, caplog, buckets):
    """Errors (wrong secret, unreachable endpoint) and DEBUG logs of an application using the API."""
    server = rclone_server
    bucket = buckets(server, "cc-sec")  # the harness's own client: not under test
    caplog.set_level(logging.DEBUG)  # as an application debugging its own code would
    wrong_secret = "WrongSecret" + secrets.token_hex(12)
    down_url = f"http://127.0.0.1:{free_port()}"
    # get_interface checks the bucket at once: both fail there first
    for secret, url, expected in ((wrong_secret, server.endpoint_url, CredentialsRefusedError),
                                  (server.secret_key, down_url, CottonCandyError)):
        with pytest.raises(expected) as info:
            cc.get_interface(bucket, ACCESS_KEY=server.access_key, SECRET_KEY=secret, endpoint_url=url,
                             verbose=False, max_attempts=1, connect_timeout=2)
        assert not _leaks(_error_texts(info.value), secret)
        assert not _leaks(str(info.value) + repr(info.value), server.access_key)
    wrong = Interface(S3Backend(bucket, Credentials(server.access_key, wrong_secret, server.endpoint_url),
                                S3Settings(max_attempts=1)))
    down = Interface(S3Backend(bucket, Credentials(server.access_key, server.secret_key, down_url),
                               S3Settings(max_attempts=1, connect_timeout=2)))
    calls = {
        "download_raw_array": lambda i: i.download_raw_array("arr"),
        "upload_raw_array": lambda i: i.upload_raw_array("arr", GOOD),
        "glob": lambda i: i.glob("*"),
        "download_object": lambda i: i.download_object("x"),
    }
    for interface, expected, secret in ((wrong, AccessDeniedError, wrong_secret),
                                        (down, CottonCandyError, server.secret_key)):
        for name, call in calls.items():
            with pytest.raises(expected) as info:
                call(interface)
            assert not _leaks(_error_texts(info.value), secret), name
            assert not _leaks(str(info.value) + repr(info.value), server.access_key), name
        assert not _leaks(repr(interface) + repr(interface.backend) + repr(interface.backend.credentials),
                          secret)
    good = cc.get_interface(bucket, ACCESS_KEY=server.access_key, SECRET_KEY=server.secret_key,
                            endpoint_url=server.endpoint_url, verbose=True)
    good.upload_raw_array("arr", GOOD)
    np.testing.assert_array_equal(good.download_raw_array("arr"), GOOD)
    for interface in (wrong, down, good):
        interface.backend.close()
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "Sending http request" in logged  # botocore did dump its requests
    assert not _leaks(logged, server.access_key, server.secret_key, wrong_secret)


def test_obstore_reader_errors_reprs_and_logs_never_show_secrets(rclone_server, caplog, monkeypatch, buckets):
    """The same for the calls the S3 backend makes through obstore (HEADs, listings, ranged GETs)."""
    import obstore

    from cottoncandy.backends.s3 import S3Backend
    from cottoncandy.config import Credentials, S3Settings

    server = rclone_server
    bucket = buckets(server, "cc-sec")
    server.client().put_object(Bucket=bucket, Key="k", Body=b"data")
    used = []
    original_get = obstore.get
    monkeypatch.setattr(obstore, "get", lambda *a, **k: (used.append(1), original_get(*a, **k))[1])
    caplog.set_level(logging.DEBUG)
    wrong_secret = "WrongSecret" + secrets.token_hex(12)
    settings = S3Settings(max_attempts=1, connect_timeout=2)
    wrong = S3Backend(bucket, Credentials(server.access_key, wrong_secret, server.endpoint_url), settings)
    down = S3Backend(bucket, Credentials(server.access_key, server.secret_key, f"http://127.0.0.1:{free_port()}"),
                     settings)
    for store, secret in ((wrong, wrong_secret), (down, server.secret_key)):
        store.reader.ranged_gets = True  # as on a server that answers 206
        for call in (lambda: store.head("k"), lambda: store.list_dir(""), lambda: store.read_range("k", 0, 2),
                     lambda: store.read_into("k", memoryview(bytearray(4)))):
            with pytest.raises(CottonCandyError) as info:
                call()
            assert not _leaks(_error_texts(info.value), secret, server.access_key)
        error = store.heads(["k"])[0]
        assert isinstance(error, CottonCandyError) and not _leaks(_error_texts(error), secret, server.access_key)
        store.heads(["k"])
        assert not _leaks(repr(store) + repr(store.reader) + repr(store.reader._get_store()), secret)
        store.close()
    assert len(used) >= 6  # the calls above did go through obstore
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert not _leaks(logged, server.access_key, server.secret_key, wrong_secret)


# ------------------------------------------------------------ (c) no escape


@pytest.fixture
def store_with_escapes(tmp_path):
    """A local store with links leading out of it (and one staying inside), and a file outside."""
    outside = tmp_path / "outside"
    write_local(outside, "secret.txt", b"outside secret", None)
    write_local(outside, "secret_arr", GOOD.tobytes(), GOOD_META)
    root = tmp_path / "store"
    write_local(root, "inside/arr", GOOD.tobytes(), GOOD_META)
    write_local(root, "inside/note.txt", b"inside note", None)
    (root / "dir_out").symlink_to(outside, target_is_directory=True)
    (root / "file_out").symlink_to(outside / "secret.txt")
    (root / "inside" / "abs_out").symlink_to("/etc")
    (root / "up_out").symlink_to("../outside")
    (root / "dir_in").symlink_to("inside", target_is_directory=True)
    return root, outside


ESCAPING_KEYS = ["dir_out/secret.txt", "dir_out/secret_arr", "file_out", "inside/abs_out/passwd", "up_out/secret.txt"]


def test_api_never_reaches_outside_a_local_store(store_with_escapes):
    root, outside = store_with_escapes
    before = sorted(p.name for p in outside.iterdir())
    cci = Interface(LocalBackend(root))
    for key in ("../outside/secret.txt", "inside/../../outside/secret.txt", "/../outside/secret.txt"):
        with pytest.raises(InvalidKeyError):
            cci.download_object(key)
        with pytest.raises(InvalidKeyError):
            cci.upload_object(key, b"overwrite")
    for key in ESCAPING_KEYS:
        with pytest.raises(ObjectNotFoundError, match="outside the store"):
            cci.download_object(key)
        assert not cci.exists_object(key)
        with pytest.raises(InvalidKeyError, match="outside the store"):
            cci.upload_object(key, b"overwrite")
    with pytest.raises(ObjectNotFoundError):
        cci.download_raw_array("dir_out/secret_arr")
    with pytest.raises(InvalidKeyError):
        cci.upload_raw_array("dir_out/planted", GOOD)
    cci.rm("dir_out/secret.txt")  # a no-op: not an object of this store
    cci.rm("dir_out", recursive=True)
    listed = cci.glob("**")
    assert not [k for k in listed if k.startswith(("dir_out", "file_out", "up_out", "inside/abs_out"))], listed
    assert set(listed) >= {"inside/arr", "inside/note.txt"}
    assert set(cci.lsdir("/")) & {"dir_out", "dir_out/", "file_out", "up_out", "up_out/"} == set()
    assert cci.download_object("dir_in/note.txt") == b"inside note"  # links inside the store still work
    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "secret.txt").read_bytes() == b"outside secret"


def test_mount_never_shows_outside_a_local_store(store_with_escapes, tmp_path):
    root, _outside = store_with_escapes
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(str(root), mountpoint, ["--backend", "local"], mount_env()) as mount:
        assert sorted(os.listdir(mount.path)) == ["dir_in", "inside"]
        assert sorted(os.listdir(mount.path / "inside")) == ["arr.npy", "note.txt"]
        seen = []
        for dirpath, dirnames, filenames in os.walk(mount.path):
            seen += [os.path.relpath(os.path.join(dirpath, n), mount.path) for n in dirnames + filenames]
        assert sorted(seen) == ["dir_in", "dir_in/arr.npy", "dir_in/note.txt", "inside", "inside/arr.npy",
                                "inside/note.txt"], seen
        for key in ESCAPING_KEYS + ["dir_out", "up_out", "inside/abs_out"]:
            with pytest.raises(OSError) as info:
                os.stat(mount.path / key)
            assert info.value.errno == errno.ENOENT, key
        assert (mount.path / "dir_in" / "note.txt").read_bytes() == b"inside note"
        np.testing.assert_array_equal(np.load(mount.path / "inside" / "arr.npy"), GOOD)
        assert "outside secret" not in mount.log()
