"""The mount's metadata plane: the persistent index, readdirplus, and objects that change.

Real mounts of rclone and moto (and the local backend where it applies),
with a :class:`~tests.faultproxy.FaultProxy` in front of the server when a
test counts the requests the mount sends.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from cottoncandy.fuse.metaindex import FILE_NAME, IndexedObject, MetadataIndex
from tests.conftest import drop_bucket, new_bucket
from tests.faultproxy import FaultProxy
from tests.mountutil import mount_env, mounted

ARRAYS = 24
PLAIN = 6
DIRS = ("a", "b", "c.grp")


def _meta(arr: np.ndarray) -> dict[str, str]:
    return {"dtype": arr.dtype.str, "shape": ",".join(map(str, arr.shape)), "compression": "False", "order": "C"}


def _populate(client, bucket: str) -> dict[str, bytes]:
    """Arrays and plain objects spread over a few directories; returns mount path -> expected bytes."""
    expected = {}
    for i in range(ARRAYS):
        arr = np.arange(i + 1, dtype="<f4") * (i + 1)
        key = f"{DIRS[i % len(DIRS)]}/arr{i:02d}"
        client.put_object(Bucket=bucket, Key=key, Body=arr.tobytes(), Metadata=_meta(arr))
        expected[key + ".npy"] = arr
    for i in range(PLAIN):
        key = f"{DIRS[i % len(DIRS)]}/note{i}.txt"
        body = f"note {i}\n".encode() * (i + 1)
        client.put_object(Bucket=bucket, Key=key, Body=body)
        expected[key] = body
    return expected


def _listing(root: Path) -> dict[str, int]:
    """Relative path -> size of every file under ``root`` (what ``ls -lR`` shows)."""
    out = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            out[path.relative_to(root).as_posix()] = path.stat().st_size
    return out


@pytest.fixture(params=["rclone", "moto"])
def proxied_bucket(request):
    """(server, bucket, proxy): a fresh bucket and a counting proxy in front of its server."""
    server = request.getfixturevalue(f"{request.param}_server")
    bucket = new_bucket(server)
    with FaultProxy(server.endpoint_url) as proxy:
        yield server, bucket, proxy
    drop_bucket(server, bucket)


#: For tests of the index file itself (damage, sharing, off, permissions): what they prove does
#: not depend on the server, so they run on the fastest one.
INDEX_FILE_ONLY = pytest.mark.parametrize("proxied_bucket", ["rclone"], indirect=True)


def _object_heads(requests) -> list[str]:
    """Keys of the HEAD requests on objects (not on the bucket) among ``requests``."""
    return [r.path.split("/", 2)[2] for r in requests if r.method == "HEAD" and r.path.count("/") >= 2]


def _env(server, proxy: FaultProxy, cache_home: Path) -> dict[str, str]:
    env = mount_env(proxy.url, server.access_key, server.secret_key)
    env["XDG_CACHE_HOME"] = str(cache_home)
    return env


def _mountpoint(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def test_second_mount_lists_without_a_head_per_object(proxied_bucket, tmp_path):
    server, bucket, proxy = proxied_bucket
    expected = _populate(server.client(), bucket)
    env = _env(server, proxy, tmp_path / "cache")
    listings = []
    heads = []
    for run in range(2):
        before = len(proxy.seen)
        with mounted(bucket, _mountpoint(tmp_path, f"mnt{run}"), ["--ttl", "600"], env) as mount:
            listings.append(_listing(mount.path))
        heads.append(_object_heads(proxy.seen[before:]))
    assert listings[0] == listings[1]
    assert set(listings[0]) == set(expected)
    assert len(heads[0]) >= ARRAYS + PLAIN  # the first mount had to learn every object's metadata
    # the second one only checks the sub-directories for manifests
    assert sorted(heads[1]) == sorted(f"{d}/metadata.json" for d in DIRS), heads[1]
    assert (tmp_path / "cache" / "cottoncandy" / FILE_NAME).is_file()


def test_changed_and_deleted_objects_are_not_served_from_the_index(proxied_bucket, tmp_path):
    server, bucket, proxy = proxied_bucket
    client = server.client()
    _populate(client, bucket)
    env = _env(server, proxy, tmp_path / "cache")
    with mounted(bucket, _mountpoint(tmp_path, "mnt0"), [], env) as mount:
        assert (mount.path / "a" / "arr00.npy").stat().st_size == 128 + 4
        assert (mount.path / "b" / "arr01.npy").exists()
    changed = np.arange(1000, dtype="<i8").reshape(10, 100)
    client.put_object(Bucket=bucket, Key="a/arr00", Body=changed.tobytes(), Metadata=_meta(changed))
    client.delete_object(Bucket=bucket, Key="b/arr01")
    client.put_object(Bucket=bucket, Key="a/arr03", Body=b"no longer an array")  # same key, now plain
    with mounted(bucket, _mountpoint(tmp_path, "mnt1"), [], env) as mount:
        names = set(os.listdir(mount.path / "a"))
        assert "arr03" in names and "arr03.npy" not in names
        assert "arr01.npy" not in os.listdir(mount.path / "b")
        path = mount.path / "a" / "arr00.npy"
        assert path.stat().st_size == 128 + changed.nbytes
        np.testing.assert_array_equal(np.load(path), changed)
        assert (mount.path / "a" / "arr03").read_bytes() == b"no longer an array"


@pytest.mark.parametrize("grow", [True, False], ids=["grows", "shrinks"])
def test_listed_then_overwritten_object_opens_at_its_new_version(proxied_bucket, tmp_path, grow):
    server, bucket, proxy = proxied_bucket
    client = server.client()
    old = np.arange(5000, dtype="<f8")
    new = np.arange(20000 if grow else 700, dtype="<f8")[::-1].copy()
    client.put_object(Bucket=bucket, Key="d/arr", Body=old.tobytes(), Metadata=_meta(old))
    client.put_object(Bucket=bucket, Key="d/plain.bin", Body=b"x" * 5000)
    env = _env(server, proxy, tmp_path / "cache")
    with mounted(bucket, _mountpoint(tmp_path, "mnt"), ["--ttl", "600"], env) as mount:
        arr_path, plain_path = mount.path / "d" / "arr.npy", mount.path / "d" / "plain.bin"
        sizes = {p.name: p.stat().st_size for p in (arr_path, plain_path)}  # the kernel caches these
        assert sizes["arr.npy"] == 128 + old.nbytes
        new_plain = (b"y" * 9000) if grow else b"y" * 10
        client.put_object(Bucket=bucket, Key="d/arr", Body=new.tobytes(), Metadata=_meta(new))
        client.put_object(Bucket=bucket, Key="d/plain.bin", Body=new_plain)
        loaded = np.load(arr_path, mmap_mode="r")  # open, fstat, mmap: all at the new version
        np.testing.assert_array_equal(loaded, new)
        del loaded
        with open(plain_path, "rb") as fh:
            assert os.fstat(fh.fileno()).st_size == len(new_plain)
            assert fh.read() == new_plain
        assert arr_path.stat().st_size == 128 + new.nbytes


def test_deleted_after_listing_is_enoent_on_open(proxied_bucket, tmp_path):
    server, bucket, proxy = proxied_bucket
    client = server.client()
    client.put_object(Bucket=bucket, Key="gone.txt", Body=b"soon gone")
    env = _env(server, proxy, tmp_path / "cache")
    with mounted(bucket, _mountpoint(tmp_path, "mnt"), ["--ttl", "600"], env) as mount:
        assert os.listdir(mount.path) == ["gone.txt"]
        client.delete_object(Bucket=bucket, Key="gone.txt")
        with pytest.raises(FileNotFoundError):
            (mount.path / "gone.txt").read_bytes()


@INDEX_FILE_ONLY
def test_corrupt_index_file_is_rebuilt(proxied_bucket, tmp_path):
    server, bucket, proxy = proxied_bucket
    expected = _populate(server.client(), bucket)
    env = _env(server, proxy, tmp_path / "cache")
    index_file = tmp_path / "cache" / "cottoncandy" / FILE_NAME
    with mounted(bucket, _mountpoint(tmp_path, "mnt0"), [], env) as mount:
        first = _listing(mount.path)
    for damage in (b"not a database at all" * 50, index_file.read_bytes()[: 3000]):
        index_file.write_bytes(damage)
        with mounted(bucket, _mountpoint(tmp_path, f"mnt{len(damage)}"), [], env) as mount:
            assert _listing(mount.path) == first
            np.testing.assert_array_equal(np.load(mount.path / "a" / "arr00.npy"), expected["a/arr00.npy"])
        with sqlite3.connect(index_file) as db:  # rebuilt: a valid index again, holding the objects
            assert db.execute("SELECT count(*) FROM objects").fetchone()[0] >= ARRAYS + PLAIN


@INDEX_FILE_ONLY
def test_two_mounts_share_one_index(proxied_bucket, tmp_path):
    server, bucket, proxy = proxied_bucket
    expected = _populate(server.client(), bucket)
    env = _env(server, proxy, tmp_path / "cache")
    results: dict[int, dict] = {}
    with mounted(bucket, _mountpoint(tmp_path, "m1"), [], env) as one, \
            mounted(bucket, _mountpoint(tmp_path, "m2"), [], env) as two:
        threads = [threading.Thread(target=lambda i=i, m=m: results.__setitem__(i, _listing(m.path)))
                   for i, m in enumerate((one, two))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert results[0] == results[1]
    assert set(results[0]) == set(expected)
    index = MetadataIndex(tmp_path / "cache" / "cottoncandy", "unused")
    try:
        assert len(index) >= ARRAYS + PLAIN
    finally:
        index.close()


@INDEX_FILE_ONLY
def test_metadata_cache_off_writes_nothing(proxied_bucket, tmp_path):
    server, bucket, proxy = proxied_bucket
    expected = _populate(server.client(), bucket)
    env = _env(server, proxy, tmp_path / "cache")
    for run in range(2):
        before = len(proxy.seen)
        with mounted(bucket, _mountpoint(tmp_path, f"mnt{run}"), ["--metadata-cache", "off"], env) as mount:
            assert set(_listing(mount.path)) == set(expected)
        assert len(_object_heads(proxy.seen[before:])) >= ARRAYS + PLAIN  # nothing remembered
    assert not (tmp_path / "cache").exists()


@INDEX_FILE_ONLY
def test_metadata_cache_directory_option_is_private(proxied_bucket, tmp_path):
    server, bucket, proxy = proxied_bucket
    _populate(server.client(), bucket)
    where = tmp_path / "elsewhere" / "index"
    with mounted(bucket, _mountpoint(tmp_path, "mnt"), ["--metadata-cache", str(where)],
                 _env(server, proxy, tmp_path / "cache")) as mount:
        _listing(mount.path)
    assert (where / FILE_NAME).is_file()
    assert where.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in where.iterdir())


@pytest.mark.parametrize("kind", ["local", "rclone", "moto"])
def test_sizes_from_listing_and_stat_equal_bytes_read(kind, request, tmp_path):
    if kind == "local":
        from cottoncandy.backends.local import LocalBackend

        store = LocalBackend(tmp_path / "store", create=True)
        bucket, args, env = str(tmp_path / "store"), ["--backend", "local"], mount_env()
        put = store.write
    else:
        server = request.getfixturevalue(f"{kind}_server")
        bucket = new_bucket(server)
        request.addfinalizer(lambda: drop_bucket(server, bucket))
        client = server.client()
        args, env = [], mount_env(server.endpoint_url, server.access_key, server.secret_key)

        def put(key, body, metadata=None):
            client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata or {})
    for shape in [(), (0,), (3, 4), (7, 5, 3)]:
        arr = np.arange(int(np.prod(shape)), dtype=">i2").reshape(shape)
        put(f"s/arr{len(shape)}", arr.tobytes(), _meta(arr))
    put("s/empty.txt", b"")
    put("s/text.txt", b"hello\n" * 100)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    with mounted(bucket, _mountpoint(tmp_path, "mnt"), args, env) as mount:
        with os.scandir(mount.path / "s") as entries:  # sizes as readdirplus gave them
            listed = {e.name: e.stat().st_size for e in entries}
        assert len(listed) == 6
        for name, size in listed.items():
            data = (mount.path / "s" / name).read_bytes()
            assert len(data) == size == os.stat(mount.path / "s" / name).st_size, name


def test_ls_l_needs_no_lookup_per_entry(tmp_path):
    from cottoncandy.backends.local import LocalBackend

    store = LocalBackend(tmp_path / "store", create=True)
    for i in range(40):
        arr = np.full(i + 1, i, dtype="<u2")
        store.write(f"d/x{i:02d}", arr.tobytes(), _meta(arr))
    env = mount_env()
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    with mounted(str(tmp_path / "store"), _mountpoint(tmp_path, "mnt"), ["--backend", "local", "--debug-wire"],
                 env) as mount:
        directory = mount.path / "d"
        os.listdir(mount.path)  # the kernel learns "d" itself
        log_before = len(mount.log())
        with os.scandir(directory) as entries:
            sizes = {e.name: e.stat().st_size for e in entries}
        ops = re.findall(r"opcode: (\w+)", mount.log()[log_before:])
    assert len(sizes) == 40
    assert "READDIRPLUS" in ops
    assert ops.count("LOOKUP") + ops.count("GETATTR") <= 2, ops


def test_acl_and_label_queries_answer_not_supported(tmp_path):
    from cottoncandy.backends.local import LocalBackend

    store = LocalBackend(tmp_path / "store", create=True)
    store.write("plain.txt", b"x")
    env = mount_env()
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    with mounted(str(tmp_path / "store"), _mountpoint(tmp_path, "mnt"), ["--backend", "local"], env) as mount:
        path = mount.path / "plain.txt"
        for name in ("security.selinux", "system.posix_acl_access"):
            with pytest.raises(OSError) as info:
                os.getxattr(path, name)
            assert info.value.errno == errno.EOPNOTSUPP, name
        with pytest.raises(OSError) as info:
            os.getxattr(path, "user.something")
        assert info.value.errno == errno.ENODATA
        assert os.getxattr(path, "user.cottoncandy.key") == b"plain.txt"


# -- the index on its own ---------------------------------------------------------


def test_index_rows_are_validated_by_etag_size_and_digest(tmp_path):
    index = MetadataIndex(tmp_path, "s3:http://127.0.0.1:1/b")
    meta = {"dtype": "<f8", "shape": "3"}
    index.store([("k", IndexedObject('"e1"', 24, meta)), ("m", IndexedObject('"e2"', 9, {}, b'{"a": 1}'))])
    assert index.lookup({"k": ('"e1"', 24)})["k"].metadata == meta
    assert index.lookup({"m": ('"e2"', 9)})["m"].body == b'{"a": 1}'
    assert index.lookup({"k": ('"e9"', 24)}) == {}  # another version
    assert index.lookup({"k": ('"e1"', 25)}) == {}
    other = MetadataIndex(tmp_path, "s3:http://127.0.0.1:1/other-bucket")  # same file, other location
    assert other.lookup({"k": ('"e1"', 24)}) == {}
    other.close()
    index.close()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:  # a row altered behind the index's back
        db.execute("UPDATE objects SET metadata = ? WHERE key = 'k'", (json.dumps({"dtype": "<i8", "shape": "3"}),))
    index = MetadataIndex(tmp_path, "s3:http://127.0.0.1:1/b")
    assert index.lookup({"k": ('"e1"', 24)}) == {}
    index.close()


def test_index_of_another_schema_is_replaced(tmp_path):
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        db.execute("CREATE TABLE objects (x)")
        db.execute("PRAGMA user_version = 99")
    index = MetadataIndex(tmp_path, "loc")
    assert index.enabled
    index.store([("k", IndexedObject('"e"', 1, {}))])
    assert "k" in index.lookup({"k": ('"e"', 1)})
    index.close()


def test_index_is_bounded(tmp_path):
    index = MetadataIndex(tmp_path, "loc", max_entries=100)
    for start in range(0, 5000, 500):
        index.store((f"k{i}", IndexedObject('"e"', i, {})) for i in range(start, start + 500))
    assert len(index) <= 600
    assert "k4999" in index.lookup({"k4999": ('"e"', 4999)})  # the newest are kept
    index.close()


def test_unusable_index_directory_switches_the_index_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    index = MetadataIndex(blocker / "index", "loc")
    assert not index.enabled
    index.store([("k", IndexedObject('"e"', 1, {}))])
    assert index.lookup({"k": ('"e"', 1)}) == {}
