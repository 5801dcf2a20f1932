"""Real FUSE mounts of the 0.4.0 golden store: local backend and each S3 server.

Every mount runs ``python -m cottoncandy.fuse.cli`` in a subprocess through
:func:`tests.mountutil.mounted`, which always unmounts and reaps it.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.conftest import S3_SERVERS, new_bucket
from tests.helpers import GOLDEN_DIR, MANIFEST, sha256, wait_until
from tests.mountutil import (
    mount_command,
    mount_env,
    mounted,
    processes_using,
    reap,
    unmount,
    wait_mounted,
)
from tests.servers import free_port, upload_local_layout

ROOT_DIRS = {"dask", "misc", "project", "raw", "sparse"}
DEADLINE = 20.0


def mount_path(key: str, entry: dict) -> str:
    """Where a MANIFEST entry appears in the mount."""
    kind = entry["kind"]
    if kind in ("raw", "dask"):
        return key + ".npy"
    if kind == "sparse":
        return key + ".npz"
    return key


def server_env(server) -> dict[str, str]:
    return mount_env(server.endpoint_url, server.access_key, server.secret_key)


@pytest.fixture(scope="module", params=("local",) + S3_SERVERS)
def golden_mount(request, tmp_path_factory):
    """The golden store mounted through each backend."""
    mountpoint = tmp_path_factory.mktemp(f"golden-{request.param}") / "mnt"
    mountpoint.mkdir()
    if request.param == "local":
        bucket, args, env = str(GOLDEN_DIR), ["--backend", "local"], mount_env()
    else:
        server = request.getfixturevalue(f"{request.param}_server")
        bucket = new_bucket(server, "cc-mount")
        upload_local_layout(server.client(), bucket, GOLDEN_DIR)
        args, env = [], server_env(server)
    with mounted(bucket, mountpoint, args, env) as mount:
        yield mount


# -- listing -------------------------------------------------------------------


def test_ls_shows_expected_names(golden_mount):
    root = golden_mount.path
    assert set(os.listdir(root)) - {"MANIFEST.json"} == ROOT_DIRS
    expected_raw = {Path(k).name + ".npy" for k, v in MANIFEST.items() if k.startswith("raw/gzip/")}
    assert set(os.listdir(root / "raw" / "gzip")) == expected_raw
    assert set(os.listdir(root / "dask")) == {"volume.npy"}
    assert set(os.listdir(root / "sparse")) == {"coo.npz", "csc.npz", "csr.npz"}
    assert set(os.listdir(root / "misc")) == {"info.json", "plain.npy"}
    assert not any(name.endswith(".meta.json") for _, _, files in os.walk(root) for name in files)
    listing = subprocess.run(["ls", "-lR", str(root)], check=False, capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "-r--r--r--" in listing.stdout and "dr-xr-xr-x" in listing.stdout


def test_shell_glob_expands(golden_mount):
    out = subprocess.run(["bash", "-c", f"echo {golden_mount.path}/*/*.grp/*.npy"], check=False, capture_output=True,
                         text=True, timeout=30)
    grp = golden_mount.path / "project" / "sub01_analysis.grp"
    assert out.stdout.split() == [str(grp / "image_data.npy"), str(grp / "text_data.npy")]


def test_find_sees_every_file(golden_mount):
    out = subprocess.run(["find", str(golden_mount.path), "-type", "f"], check=False, capture_output=True, text=True,
                         timeout=60)
    found = {os.path.relpath(p, golden_mount.path) for p in out.stdout.split()}
    expected = {mount_path(k, v) for k, v in MANIFEST.items()}
    assert expected <= found
    assert found - expected <= {"MANIFEST.json"}


# -- reading -------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(k for k, v in MANIFEST.items() if v["kind"] in ("raw", "npy", "dask")))
def test_golden_array_loads(golden_mount, key):
    entry = MANIFEST[key]
    path = golden_mount.path / mount_path(key, entry)
    for mmap_mode in (None, "r"):
        arr = np.load(path, mmap_mode=mmap_mode)
        assert arr.dtype == np.dtype(entry["dtype"])
        assert list(arr.shape) == entry["shape"]
        assert sha256(arr) == entry["sha256"], (key, mmap_mode)
        del arr


def test_golden_sparse_and_json(golden_mount):
    import scipy.sparse as sp

    for key, entry in MANIFEST.items():
        path = golden_mount.path / mount_path(key, entry)
        if entry["kind"] == "sparse":
            matrix = sp.load_npz(path)
            assert matrix.format == entry["format"]
            assert sha256(matrix.toarray()) == entry["sha256"]
        elif entry["kind"] == "json":
            assert json.loads(path.read_bytes()) == entry["value"]


def test_stat_size_equals_bytes_read(golden_mount):
    for dirpath, _, files in os.walk(golden_mount.path):
        for name in files:
            path = Path(dirpath) / name
            assert path.stat().st_size == len(path.read_bytes()), path


def test_dask_volume_random_access(golden_mount):
    path = golden_mount.path / "dask" / "volume.npy"
    full = np.load(path)
    lazy = np.load(path, mmap_mode="r")
    for sl in (np.s_[10:20], np.s_[:, 5, 1200:1400], np.s_[63, 63, -3:]):
        np.testing.assert_array_equal(lazy[sl], full[sl])


def test_xattrs(golden_mount):
    path = golden_mount.path / "raw" / "zstd" / "f8_3d.npy"
    names = set(os.listxattr(path))
    assert {f"user.cottoncandy.{n}" for n in ("key", "dtype", "shape", "compression")} <= names
    assert os.getxattr(path, "user.cottoncandy.key") == b"raw/zstd/f8_3d"
    assert os.getxattr(path, "user.cottoncandy.dtype") == b"<f8"
    assert os.getxattr(path, "user.cottoncandy.shape") == b"4,5,6"
    assert os.getxattr(path, "user.cottoncandy.compression").lower() == b"zstd"
    assert os.getxattr(golden_mount.path / "misc" / "plain.npy", "user.cottoncandy.key") == b"misc/plain.npy"
    scalar = golden_mount.path / "raw" / "false" / "scalar.npy"  # 0-d: the shape is present and empty
    assert "user.cottoncandy.shape" in os.listxattr(scalar)
    assert os.getxattr(scalar, "user.cottoncandy.shape") == b""
    assert os.getxattr(scalar, "user.cottoncandy.dtype") == MANIFEST["raw/false/scalar"]["dtype"].encode()
    with pytest.raises(OSError) as info:
        os.getxattr(path, "user.other")
    assert info.value.errno == errno.ENODATA


def test_writes_fail_with_erofs(golden_mount):
    root = golden_mount.path
    existing = root / "raw" / "false" / "f8_3d.npy"
    attempts = {
        "create": lambda: open(root / "new.npy", "wb"),  # noqa: SIM115 - must fail
        "write": lambda: open(existing, "r+b"),  # noqa: SIM115 - must fail
        "append": lambda: open(existing, "ab"),  # noqa: SIM115 - must fail
        "mkdir": lambda: os.mkdir(root / "newdir"),
        "unlink": lambda: os.unlink(existing),
        "rmdir": lambda: os.rmdir(root / "misc"),
        "rename": lambda: os.rename(existing, root / "raw" / "moved.npy"),
        "truncate": lambda: os.truncate(existing, 0),
        "chmod": lambda: os.chmod(existing, 0o644),
        "setxattr": lambda: os.setxattr(existing, "user.cottoncandy.dtype", b"<i4"),
        "utime": lambda: os.utime(existing, (0, 0)),
    }
    for what, attempt in attempts.items():
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EROFS, what
    assert os.stat(existing).st_mode & 0o777 == 0o444
    assert os.stat(root / "misc").st_mode & 0o777 == 0o555
    assert os.stat(existing).st_uid == os.getuid()


# -- corrupt objects and changes ---------------------------------------------


def _bad_objects() -> dict[str, tuple[bytes, dict[str, str]]]:
    good = np.arange(1000, dtype="<f8")
    gz = gzip.compress(good.tobytes())
    return {
        "bad_dtype": (good.tobytes(), {"dtype": "<x9", "shape": "1000", "compression": "False"}),
        "too_big": (good[:10].tobytes(), {"dtype": "<f8", "shape": "1000", "compression": "False"}),
        "truncated_gzip": (gz[: len(gz) // 2], {"dtype": "<f8", "shape": "1000", "compression": "gzip"}),
        "unknown_codec": (good.tobytes(), {"dtype": "<f8", "shape": "1000", "compression": "Snappy9"}),
        "good": (good.tobytes(), {"dtype": "<f8", "shape": "1000", "compression": "False", "order": "C"}),
    }


def _store(kind: str, request, tmp_path: Path):
    """A writable store: ``(bucket, args, env, put(key, body, metadata))``."""
    if kind == "local":
        from cottoncandy.backends.local import LocalBackend

        root = tmp_path / "store"
        backend = LocalBackend(root, create=True)
        return str(root), ["--backend", "local"], mount_env(), backend.write
    server = request.getfixturevalue(f"{kind}_server")
    bucket = new_bucket(server, "cc-mount")
    client = server.client()

    def put(key, body, metadata=None):
        client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata or {})

    return bucket, [], server_env(server), put


@pytest.mark.parametrize("kind", ["local", "rclone", "seaweedfs"])
def test_corrupt_objects_give_eio_only_on_that_file(kind, request, tmp_path):
    bucket, args, env, put = _store(kind, request, tmp_path)
    for name, (body, metadata) in _bad_objects().items():
        put(f"bad/{name}", body, metadata)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(bucket, mountpoint, args, env) as mount:
        good = mount.path / "bad" / "good.npy"
        assert sorted(os.listdir(mount.path / "bad")) == sorted(f"{n}.npy" for n in _bad_objects())
        for name in ("bad_dtype", "too_big", "truncated_gzip", "unknown_codec"):
            with pytest.raises(OSError) as info:
                (mount.path / "bad" / f"{name}.npy").read_bytes()
            assert info.value.errno == errno.EIO, name
            np.testing.assert_array_equal(np.load(good), np.arange(1000, dtype="<f8"))
        assert mount.process.poll() is None
        assert "bad/too_big" in mount.log()


@pytest.mark.parametrize("kind", ["local", "rclone", "seaweedfs"])
def test_overwrite_visible_after_ttl_while_open_file_keeps_version(kind, request, tmp_path):
    bucket, args, env, put = _store(kind, request, tmp_path)
    old, new = np.arange(4096, dtype="<i8"), np.arange(4096, dtype="<i8")[::-1].copy()
    metadata = {"dtype": "<i8", "shape": "4096", "compression": "False", "order": "C"}
    put("ow/arr", old.tobytes(), metadata)
    put("ow/plain.txt", b"version one")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(bucket, mountpoint, [*args, "--ttl", "1"], env) as mount:
        path = mount.path / "ow" / "arr.npy"
        with open(path, "rb") as pinned:
            first = pinned.read()
            np.testing.assert_array_equal(np.load(io.BytesIO(first)), old)
            put("ow/arr", new.tobytes(), metadata)
            put("ow/plain.txt", b"version two!")
            wait_until(lambda: np.array_equal(np.load(path), new), what="the new array version")
            wait_until(lambda: (mount.path / "ow" / "plain.txt").read_bytes() == b"version two!",
                       what="the new object version")
            pinned.seek(0)
            assert pinned.read() == first


# -- mount life cycle and errors ----------------------------------------------


def _run_mount(bucket: str, mountpoint: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(mount_command(bucket, mountpoint, *args), env=env or mount_env(),
                              check=False, capture_output=True, text=True, timeout=120)
    finally:
        unmount(mountpoint)
        reap(mountpoint, None)


def _one_line_error(result: subprocess.CompletedProcess, *words: str, status: int = 2) -> None:
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_mount_errors(rclone_server, tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    bucket = new_bucket(rclone_server, "cc-mount")
    env = server_env(rclone_server)
    _one_line_error(_run_mount("no-such-bucket-x", mountpoint, env=env), "no such bucket")
    bad_env = mount_env(rclone_server.endpoint_url, rclone_server.access_key, "wrong-secret")
    _one_line_error(_run_mount(bucket, mountpoint, env=bad_env), "credentials refused by the server",
                    "SignatureDoesNotMatch")
    unknown_key = mount_env(rclone_server.endpoint_url, "unknown-key", "wrong-secret")
    _one_line_error(_run_mount(bucket, mountpoint, env=unknown_key), "credentials refused by the server",
                    "InvalidAccessKeyId")
    down = mount_env(f"http://127.0.0.1:{free_port()}", "a", "b")
    _one_line_error(_run_mount(bucket, mountpoint, env=down), "cannot reach", status=1)
    _one_line_error(_run_mount(bucket, tmp_path / "missing", env=env), "does not exist")
    (mountpoint / "file").write_text("x")
    _one_line_error(_run_mount(bucket, mountpoint, env=env), "not empty")
    other = tmp_path / "mnt2"
    other.mkdir()
    _one_line_error(_run_mount(str(tmp_path / "nowhere"), other, "--backend", "local"), "no such directory")
    _one_line_error(_run_mount(str(tmp_path / "nowhere"), other), "not a valid bucket name",
                    "did you mean --backend local?")
    assert not os.path.ismount(mountpoint) and not os.path.ismount(other)


def test_prefix_mount(tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(str(GOLDEN_DIR), mountpoint, ["--backend", "local", "--prefix", "project/"]) as mount:
        assert os.listdir(mount.path) == ["sub01_analysis.grp"]
        arr = np.load(mount.path / "sub01_analysis.grp" / "image_data.npy")
        assert sha256(arr) == MANIFEST["project/sub01_analysis.grp/image_data"]["sha256"]


def test_background_mount_is_live_on_return_and_unmounts_cleanly(tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    command = mount_command(str(GOLDEN_DIR), mountpoint, "--backend", "local")
    try:
        result = subprocess.run(command, env=mount_env(state_home=tmp_path / "state"), check=False,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(mountpoint)  # live when the command returns: no polling
        assert "volume.npy" in os.listdir(mountpoint / "dask")
        daemons = processes_using(mountpoint)
        assert daemons, "no mount process found"
        assert all(p.ppid() != os.getpid() for p in daemons)  # detached from us
        subprocess.run([shutil.which("fusermount3"), "-u", str(mountpoint)], check=True, timeout=30)
        _gone, alive = psutil.wait_procs(daemons, timeout=DEADLINE)
        assert not alive
        assert not os.path.ismount(mountpoint)
        assert os.listdir(mountpoint) == []
    finally:
        unmount(mountpoint)
        reap(mountpoint, None)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_foreground_mount(sig, tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    log_path = tmp_path / "mount.log"
    command = mount_command(str(GOLDEN_DIR), mountpoint, "--backend", "local", "--foreground")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=mount_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_mounted(mountpoint, process, log_path)
        assert np.load(mountpoint / "raw" / "gzip" / "u1_1d.npy").shape == (1000,)
        process.send_signal(sig)
        assert process.wait(timeout=DEADLINE) == 0, log_path.read_text()
        assert not os.path.ismount(mountpoint)
        wait_until(lambda: not processes_using(mountpoint), what="mount helpers to exit")
    finally:
        unmount(mountpoint)
        reap(mountpoint, process)


def test_killed_mount_leaves_no_stale_mountpoint(tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(str(GOLDEN_DIR), mountpoint, ["--backend", "local"]) as mount:
        mount.process.kill()
        mount.process.wait(timeout=DEADLINE)
        wait_until(lambda: not os.path.ismount(mountpoint), what="auto-unmount after SIGKILL")
        wait_until(lambda: not processes_using(mountpoint), what="mount helpers to exit")


# -- the tree and the operations, called directly (no kernel) -------------------


ARRAY_META = {"dtype": "<i2", "shape": "3", "compression": "False", "order": "C"}


def test_name_collisions_and_direct_lookups(moto_server):
    """Object ``a`` vs prefix ``a/``; raw array ``x`` vs object ``x.npy``; key ``y.npy`` not doubled."""
    from cottoncandy.fuse.entries import Kind
    from cottoncandy.fuse.tree import Tree
    from tests.conftest import make_s3_backend

    bucket = new_bucket(moto_server, "cc-mount")
    backend = make_s3_backend(moto_server, bucket)
    body = np.arange(3, dtype="<i2").tobytes()
    backend.write("d/a", b"plain a")
    backend.write("d/a/inner", b"inside")
    backend.write("d/x", body, ARRAY_META)
    backend.write("d/x.npy", b"not an array")
    backend.write("d/y.npy", body, ARRAY_META)
    backend.write("d/z.meta.json", b"{}")
    expected = {"a": Kind.DIR, "a~object": Kind.OBJECT, "x.npy": Kind.OBJECT, "x~array.npy": Kind.RAW,
                "y.npy": Kind.RAW}
    listed = Tree(backend)
    try:
        assert {e.name: e.kind for e in listed.readdir("/d")} == expected
    finally:
        listed.close()
    fresh = Tree(backend)  # nothing listed: names resolve by HEADs of candidate keys
    try:
        for name, kind in expected.items():
            entry = fresh.lookup(f"/d/{name}")
            assert (entry.name, entry.kind) == (name, kind)
        assert fresh.lookup("/d/x~array.npy").key == "d/x"
        with pytest.raises(FileNotFoundError):
            fresh.lookup("/d/z.meta.json")
        with pytest.raises(FileNotFoundError):
            fresh.lookup("/d/nothing.npy")
    finally:
        fresh.close()
        backend.close()


def test_tree_ttl_and_operations_direct(tmp_path):
    """Caches expire after the TTL; ops translate errors through one table."""
    from cottoncandy.backends.local import LocalBackend
    from cottoncandy.fuse.operations import CottonCandyOperations
    from cottoncandy.fuse.reader import ReadPath
    from cottoncandy.fuse.tree import Tree

    now = [0.0]
    backend = LocalBackend(tmp_path / "store", create=True)
    backend.write("arr", np.arange(3, dtype="<i2").tobytes(), ARRAY_META)
    read_path = ReadPath(backend)
    tree = Tree(backend, ttl=10, timer=lambda: now[0])
    ops = CottonCandyOperations(tree, read_path)
    try:
        assert [e[0] for e in ops.readdir("/", None)] == [".", "..", "arr.npy"]
        backend.write("new", b"hello")
        assert [e[0] for e in ops.readdir("/", None)] == [".", "..", "arr.npy"]  # still cached
        now[0] += 11
        assert [e[0] for e in ops.readdir("/", None)] == [".", "..", "arr.npy", "new"]
        fh = ops.open("/new", os.O_RDONLY)
        assert ops.read("/new", 100, 0, fh) == b"hello"
        assert ops.getattr("/new", fh)["st_size"] == 5
        ops.release("/new", fh)
        for call, code in ((lambda: ops.getattr("/missing"), errno.ENOENT),
                           (lambda: ops.open("/", os.O_RDONLY), errno.EISDIR),
                           (lambda: ops.open("/new", os.O_RDWR), errno.EROFS),
                           (lambda: ops.unlink("/new"), errno.EROFS),
                           (lambda: ops.read("/new", 1, 0, 12345), errno.EBADF),
                           (lambda: ops.getxattr("/new", "user.cottoncandy.dtype"), errno.ENODATA)):
            with pytest.raises(OSError) as info:
                call()
            assert info.value.errno == code
    finally:
        tree.close()
        read_path.close()


def test_sparse_npz_is_built_by_the_read_path_and_follows_its_arrays(tmp_path):
    """The ``.npz`` is built once per version into the block cache; a changed attribute array is a new version."""
    import scipy.sparse as sp

    import cottoncandy as cc
    from cottoncandy.backends.local import LocalBackend
    from cottoncandy.fuse.operations import CottonCandyOperations
    from cottoncandy.fuse.reader import ReadPath
    from cottoncandy.fuse.tree import Tree

    store = tmp_path / "store"
    cci = cc.get_interface(str(store), backend="local", force_bucket_creation=True, verbose=False)
    matrix = sp.random(60, 40, density=0.2, format="csr", random_state=1, dtype="<f8")
    cci.upload_sparse_array("m", matrix)
    backend = LocalBackend(store)
    read_path = ReadPath(backend, cache_bytes=4 << 20)
    tree = Tree(backend, sparse_files=True)
    ops = CottonCandyOperations(tree, read_path)

    def read_npz() -> bytes:
        fh = ops.open("/m.npz", os.O_RDONLY)
        try:
            size = ops.getattr("/m.npz", fh)["st_size"]
            return ops.read("/m.npz", size + 10, 0, fh)
        finally:
            ops.release("/m.npz", fh)

    try:
        size = ops.getattr("/m.npz")["st_size"]
        built = read_path.cache.stats().misses
        assert ops.getattr("/m.npz")["st_size"] == size
        assert read_path.cache.stats().misses == built  # the second stat built nothing
        assert any(key[0] == "npz" for key in read_path.cache.keys())  # within --cache-size
        assert read_path.cache.currsize <= read_path.cache.capacity
        data = read_npz()
        assert len(data) == size
        assert (sp.load_npz(io.BytesIO(data)) != matrix).nnz == 0
        assert ops.getxattr("/m.npz", "user.cottoncandy.shape") == b"60,40"

        changed = matrix.copy()
        changed.data = changed.data * 2  # same structure: the manifest does not change
        cci.upload_raw_array("m/data", changed.data)
        assert (sp.load_npz(io.BytesIO(read_npz())) != changed).nnz == 0
    finally:
        tree.close()
        read_path.close()


def test_operations_callbacks_carry_mfusepy_names():
    """Every public method is a marked callback named as mfusepy names them: a misspelt one would never run."""
    from cottoncandy.fuse.binding import callback_names
    from cottoncandy.fuse.errortable import CALLBACK_MARK
    from cottoncandy.fuse.operations import CottonCandyOperations

    public = {name for name in dir(CottonCandyOperations)
              if not name.startswith("_") and callable(getattr(CottonCandyOperations, name))}
    marked = {name for name in public if getattr(getattr(CottonCandyOperations, name), CALLBACK_MARK, False)}
    assert public == marked, public - marked
    assert marked <= callback_names(), marked - callback_names()
    assert {"getattr", "readdir", "opendir", "open", "read", "release", "getxattr", "listxattr",
            "init_with_config", "write", "unlink", "setxattr"} <= marked


def test_importing_the_mount_modules_loads_no_libfuse(tmp_path):
    """libfuse is loaded (and ``FUSE_LIBRARY_NAME`` chosen) only when a mount is made."""
    code = ("import os, pkgutil, importlib, sys\n"
            "import cottoncandy.fuse as fuse\n"
            "for module in pkgutil.iter_modules(fuse.__path__):\n"
            "    importlib.import_module('cottoncandy.fuse.' + module.name)\n"
            "print('mfusepy' in sys.modules, 'FUSE_LIBRARY_NAME' in os.environ)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUSE_LIBRARY")}
    env["HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
