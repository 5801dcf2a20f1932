"""The StorageBackend contract, run on every backend (local directory, rclone, moto)."""

from __future__ import annotations

import io
import traceback
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cottoncandy.backends.base import Listing, ObjectInfo
from cottoncandy.errors import (
    AccessDeniedError,
    CottonCandyError,
    InvalidKeyError,
    ArrayFormatError,
    ObjectNotFoundError,
    StorageError,
)
from cottoncandy.interface import Interface
from cottoncandy.transfer.listing import glob

from .conftest import LISTING_SERVERS, on_backends

MiB = 1 << 20
BIG = 40 * MiB


def is_s3(backend) -> bool:
    return type(backend).__name__ == "S3Backend"


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def read_all(backend, key: str) -> bytes:
    stream, info = backend.open_stream(key)
    try:
        data = stream.read()
    finally:
        stream.close()
    assert len(data) == info.size
    return data


class FailingReader(io.RawIOBase):
    """A binary file that yields ``fail_after`` bytes, then raises ``error``."""

    def __init__(self, fail_after: int, error: BaseException):
        self.remaining = fail_after
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.remaining <= 0:
            raise self.error
        n = min(len(buffer), self.remaining, MiB)
        buffer[:n] = b"\x07" * n
        self.remaining -= n
        return n


def lingering_uploads(backend) -> list:
    if not is_s3(backend):
        return []
    return backend.client.list_multipart_uploads(Bucket=backend.bucket).get("Uploads", [])


# -- head and metadata ---------------------------------------------------------------
def test_head_size_etag_and_lowercased_metadata(backend):
    backend.write("a/obj", b"hello world", {"Dtype": "<f8", "SHAPE": "3,4", "order": "C"})
    info = backend.head("a/obj")
    assert isinstance(info, ObjectInfo)
    assert info.key == "a/obj" and info.size == 11 and info.etag
    assert info.metadata["dtype"] == "<f8"
    assert info.metadata["shape"] == "3,4"
    assert info.metadata["order"] == "C"
    assert all(k == k.lower() and isinstance(v, str) for k, v in info.metadata.items())


def test_etag_changes_with_content(backend):
    backend.write("k", b"one")
    first = backend.head("k").etag
    backend.write("k", b"two!")
    assert backend.head("k").etag != first


def test_listing_etag_matches_head(backend):
    backend.write("d/k", b"data")
    listed = next(iter(backend.iter_objects("d/")))
    assert listed.etag == backend.head("d/k").etag
    assert listed.size == 4


def test_capitalised_metadata_from_server_is_normalised(backend):
    if not is_s3(backend):
        pytest.skip("S3 servers only: the local backend stores the sidecar as given")
    backend.client.put_object(Bucket=backend.bucket, Key="caps", Body=b"x", Metadata={"DType": "<i2", "Shape": "1"})
    assert backend.head("caps").metadata == {"dtype": "<i2", "shape": "1"}


def test_heads_one_result_per_key_in_order(backend):
    keys = [f"h/{i:03d}" for i in range(150)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: backend.write(k, k.encode(), {"Which": k}), keys))
    asked = keys[::-1] + ["h/missing", keys[3], "nowhere/else"]
    results = backend.heads(asked)
    assert len(results) == len(asked)
    for key, got in zip(asked, results):
        if key in keys:
            assert isinstance(got, ObjectInfo) and got.key == key, (key, got)
            assert got.metadata == {"which": key} and got.size == len(key)
            assert got == backend.head(key)  # same size and ETag as a single HEAD
        else:
            assert got is None, (key, got)
    assert backend.heads([]) == []


#: Keys some clients cannot spell (object_store drops a leading or trailing '/', refuses '//' and '.').
AWKWARD_KEYS = ["a//x", "marker/", "dot/./x", "/lead"]


def _server_truth(backend, key: str):
    """What the store holds under exactly ``key``: its metadata, None if missing, 'error' or 'refused'."""
    if not is_s3(backend):
        return "refused"  # a local store cannot hold any of the awkward keys
    try:
        return backend.client.head_object(Bucket=backend.bucket, Key=key)["Metadata"]
    except backend.client.exceptions.ClientError as exc:
        return None if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404 else "error"


def test_heads_awkward_keys_never_answer_for_another_object(backend):
    for near in ("a/x", "marker", "dot/x", "lead"):  # what a client that mangles the keys would reach
        backend.write(near, near.encode(), {"which": near})
    results = backend.heads(AWKWARD_KEYS + ["marker"])
    assert results[-1].metadata == {"which": "marker"}
    for key, got in zip(AWKWARD_KEYS, results):
        truth = _server_truth(backend, key)  # moto: all missing; rclone (a directory tree): 'marker/' is 'marker'
        if truth is None:
            assert got is None, (key, got)
        elif truth == "refused":
            assert got is None or isinstance(got, InvalidKeyError), (key, got)
        elif truth == "error":
            assert isinstance(got, CottonCandyError), (key, got)
        else:
            assert isinstance(got, ObjectInfo) and got.key == key, (key, got)
            assert got.metadata == {k.lower(): v for k, v in truth.items()}, (key, got)


# -- reading -----------------------------------------------------------------------------
def test_read_range(backend):
    data = random_bytes(1000)
    backend.write("r", data)
    assert backend.read_range("r", 0, 5) == data[:5]
    assert backend.read_range("r", 100, 600) == data[100:600]
    assert backend.read_range("r", 990, 2000) == data[990:]  # short at end of body
    assert backend.read_range("r", 1000, 1010) == b""
    assert backend.read_range("r", 5000, 5010) == b""
    assert backend.read_range("r", 7, 7) == b""


def test_read_range_with_stale_etag_raises(backend):
    backend.write("v", b"version one")
    old = backend.head("v").etag
    assert backend.read_range("v", 0, 3, etag=old) == b"ver"
    backend.write("v", b"version two, longer")
    with pytest.raises(ObjectNotFoundError):
        backend.read_range("v", 0, 3, etag=old)


def test_read_into_big_body(backend):
    data = random_bytes(BIG, seed=1)
    backend.write("big", data)
    out = bytearray(BIG)
    seen = []
    backend.read_into("big", memoryview(out), progress=seen.append)
    assert out == data
    assert sum(seen) == BIG


def test_read_into_numpy_buffer_with_offset(backend):
    data = random_bytes(12 * MiB + 123, seed=2)
    backend.write("off", data)
    arr = np.empty((12 * MiB + 123 - 1000) // 8, dtype="<f8")
    backend.read_into("off", memoryview(arr), start=1000, etag=backend.head("off").etag)
    assert arr.tobytes() == data[1000 : 1000 + arr.nbytes]


def test_read_into_short_body_raises(backend):
    backend.write("short", random_bytes(6 * MiB))
    with pytest.raises(ArrayFormatError):
        backend.read_into("short", memoryview(bytearray(7 * MiB)))
    with pytest.raises(ArrayFormatError):
        backend.read_into("short", memoryview(bytearray(10)), start=6 * MiB + 1)


def test_read_into_stale_etag_raises(backend):
    backend.write("s", random_bytes(11 * MiB))
    old = backend.head("s").etag
    backend.write("s", random_bytes(11 * MiB, seed=5))
    with pytest.raises(ObjectNotFoundError):
        backend.read_into("s", memoryview(bytearray(11 * MiB)), etag=old)


def test_open_stream(backend):
    backend.write("st", b"streamed body", {"k": "v"})
    stream, info = backend.open_stream("st")
    try:
        assert stream.read(8) == b"streamed"
        assert stream.read() == b" body"
    finally:
        stream.close()
    assert info.size == 13 and info.etag == backend.head("st").etag


# -- writing ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1000, 13 * MiB + 7])
def test_write_from_chunks(backend, size):
    data = random_bytes(size, seed=3)
    cut = [0, size // 7, size // 7, size // 2, size]  # includes an empty chunk
    chunks = [memoryview(data)[a:b] for a, b in zip(cut, cut[1:])]
    backend.write("chunks", chunks, {"dtype": "|u1"})
    assert read_all(backend, "chunks") == data
    assert backend.head("chunks").metadata["dtype"] == "|u1"


@pytest.mark.parametrize("size", [0, 5000, 12 * MiB + 1])
def test_write_from_file(backend, size, tmp_path):
    data = random_bytes(size, seed=4)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        backend.write("from_file", fh)
    assert read_all(backend, "from_file") == data
    backend.write("from_bytesio", io.BytesIO(data))
    assert read_all(backend, "from_bytesio") == data


def test_write_bytes_bytearray_numpy(backend):
    backend.write("b", b"bytes")
    backend.write("ba", bytearray(b"bytearray"))
    arr = np.arange(12, dtype="<i4").reshape(3, 4)
    backend.write("np", arr)
    backend.write("mv", memoryview(arr))
    assert read_all(backend, "b") == b"bytes"
    assert read_all(backend, "ba") == b"bytearray"
    assert read_all(backend, "np") == arr.tobytes()
    assert read_all(backend, "mv") == arr.tobytes()


def test_write_replaces_previous_version_and_metadata(backend):
    backend.write("w", b"old", {"dtype": "<f8", "shape": "1"})
    backend.write("w", b"new body", {"shape": "2"})
    assert read_all(backend, "w") == b"new body"
    assert backend.head("w").metadata.get("shape") == "2"
    assert "dtype" not in backend.head("w").metadata


def test_multipart_upload_path(backend):
    data = random_bytes(23 * MiB, seed=6)
    parts = []
    if is_s3(backend):
        backend.client.meta.events.register("before-call.s3.UploadPart", lambda **kw: parts.append(1))
    seen = []
    backend.write("mp", memoryview(data), {"dtype": "|u1"}, progress=seen.append)
    assert sum(seen) == len(data)
    if is_s3(backend):
        assert len(parts) == 5  # 23 MiB in 5 MiB parts
    assert read_all(backend, "mp") == data
    assert backend.head("mp").metadata == {"dtype": "|u1"}
    assert lingering_uploads(backend) == []


@pytest.mark.parametrize("error", [OSError("disk on fire"), KeyboardInterrupt()], ids=["OSError", "interrupt"])
def test_failed_write_keeps_previous_version(backend, error):
    backend.write("keep", b"previous version", {"v": "1"})
    with pytest.raises(type(error)):
        backend.write("keep", FailingReader(17 * MiB, error), {"v": "2"})
    assert read_all(backend, "keep") == b"previous version"
    assert backend.head("keep").metadata["v"] == "1"
    assert [o.key for o in backend.iter_objects()] == ["keep"]
    assert lingering_uploads(backend) == []


def test_failed_new_object_leaves_nothing(backend):
    with pytest.raises(OSError):
        backend.write("new", FailingReader(12 * MiB, OSError("boom")))
    with pytest.raises(ObjectNotFoundError):
        backend.head("new")
    assert list(backend.iter_objects()) == []
    assert lingering_uploads(backend) == []


def test_server_failure_mid_multipart_aborts(backend):
    if not is_s3(backend):
        pytest.skip("S3 only: injects a failing UploadPart")
    backend.write("srv", b"v1")
    calls = []

    def fail_third(**kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected part failure")

    backend.client.meta.events.register("before-call.s3.UploadPart", fail_third)
    with pytest.raises(RuntimeError, match="injected"):
        backend.write("srv", random_bytes(30 * MiB))
    assert read_all(backend, "srv") == b"v1"
    assert lingering_uploads(backend) == []


# -- listing ------------------------------------------------------------------------------
def _populate(backend, keys):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: backend.write(k, k.encode()), keys))


@on_backends("local", *LISTING_SERVERS)
def test_listings_past_1000_keys_and_batch_delete(backend):
    files = [f"many/f{i:04d}" for i in range(560)]
    dirs = [f"many/d{i:04d}/x" for i in range(560)]
    _populate(backend, files + dirs)
    listed = [o.key for o in backend.iter_objects("many/")]
    assert listed == sorted(files + dirs)
    level = backend.list_dir("many/")
    assert [o.key for o in level.objects] == files
    assert level.prefixes == sorted(k.rsplit("/", 1)[0] + "/" for k in dirs)
    backend.delete(files + dirs + ["many/missing"])
    assert list(backend.iter_objects("many/")) == []


def test_list_dir_root_and_nested(backend):
    _populate(backend, ["top.txt", "p/a", "p/b.npy", "p/q/c", "p/q/r/d", "pz", "p.grp/e"])
    root = backend.list_dir("")
    assert isinstance(root, Listing)
    assert [o.key for o in root.objects] == ["pz", "top.txt"]
    assert root.prefixes == ["p.grp/", "p/"]
    nested = backend.list_dir("p/")
    assert [o.key for o in nested.objects] == ["p/a", "p/b.npy"]
    assert nested.prefixes == ["p/q/"]
    assert all(o.size > 0 for o in nested.objects)
    assert backend.list_dir("p/q/r/").objects[0].key == "p/q/r/d"
    assert backend.list_dir("nothing/") == Listing(objects=[], prefixes=[])


def test_iter_objects_prefix_is_a_string_prefix(backend):
    _populate(backend, ["ab/1", "abc", "abd/2", "b"])
    assert [o.key for o in backend.iter_objects("ab")] == ["ab/1", "abc", "abd/2"]
    assert [o.key for o in backend.iter_objects("ab/")] == ["ab/1"]
    assert [o.key for o in backend.iter_objects()] == ["ab/1", "abc", "abd/2", "b"]


def test_unusual_key_characters(backend):
    key = "dir with space/ünïcødé+plus=eq&amp;%20.npy"
    backend.write(key, b"odd")
    assert read_all(backend, key) == b"odd"
    assert [o.key for o in backend.iter_objects("dir with space/")] == [key]
    assert backend.list_dir("").prefixes == ["dir with space/"]


# -- delete and copy ----------------------------------------------------------------------
def test_delete(backend):
    _populate(backend, ["x/1", "x/2", "x10"])
    backend.delete(["x/1", "not-there"])
    assert [o.key for o in backend.iter_objects()] == ["x/2", "x10"]
    backend.delete([])
    with pytest.raises(ObjectNotFoundError):
        backend.head("x/1")


def test_copy_keeps_body_and_metadata(backend):
    backend.write("src", b"copied body", {"dtype": "<f4", "shape": "2"})
    backend.copy("src", "dst/inner")
    assert read_all(backend, "dst/inner") == b"copied body"
    meta = backend.head("dst/inner").metadata
    assert meta["dtype"] == "<f4" and meta["shape"] == "2"
    assert read_all(backend, "src") == b"copied body"


# -- S3 semantics of "directories" (0.4.0's local store did the same) -----------------------
def test_removing_the_last_object_under_a_name_frees_it(backend, request):
    # SeaweedFS removes a folder emptied by a delete only later (about 150 s here), so an
    # empty prefix may still be listed there; the names are free all the same
    lingering = "seaweedfs" in request.node.callspec.id
    cci = Interface(backend)
    backend.write("a/b/c", b"deep")
    backend.delete(["a/b/c"])
    if not lingering:
        assert backend.list_dir("") == Listing(objects=[], prefixes=[])  # no empty directory left behind
    backend.write("a/b", b"now an object")
    assert read_all(backend, "a/b") == b"now an object"
    backend.write("m/n/o", b"moved")
    cci.mv("m/n/o", "z")
    backend.write("m/n", b"free again")
    assert sorted(o.key for o in backend.iter_objects()) == ["a/b", "m/n", "z"]
    _populate(backend, ["d/e/f", "d/e/g", "d/h"])
    assert cci.rm("d", recursive=True)
    backend.write("d", b"free too")
    if not lingering:
        assert backend.list_dir("").prefixes == ["a/", "m/"]
    assert [o.key for o in backend.list_dir("").objects] == ["d", "z"]


# -- glob: a path without wildcards lists itself and what is below it ----------------------
def test_glob_without_wildcards_lists_the_key_and_below_never_siblings(backend):
    _populate(backend, ["ab/1", "ab/2/3", "abc/1", "ab_x", "project/sub01.grp/image_data",
                        "project/sub01.grp/text_data", "project/sub01.grpx", "project/sub01.grp.bak/y"])
    assert glob(backend, "project/sub01.grp") == ["project/sub01.grp/image_data", "project/sub01.grp/text_data"]
    assert glob(backend, "/project/sub01.grp/") == ["project/sub01.grp/image_data", "project/sub01.grp/text_data"]
    assert glob(backend, "ab") == ["ab/1", "ab/2/3"]  # never abc/1 or ab_x
    assert glob(backend, "ab_x") == ["ab_x"]
    assert glob(backend, "project/sub01.grp/image_data") == ["project/sub01.grp/image_data"]
    assert glob(backend, "project/sub01") == []
    assert glob(backend, "") == sorted(o.key for o in backend.iter_objects())
    assert glob(backend, "ab/*") == ["ab/1"]  # * stays within one segment


# -- errors ---------------------------------------------------------------------------------
def test_missing_key_raises_object_not_found(backend):
    calls = [
        lambda: backend.head("missing"),
        lambda: backend.read_range("missing", 0, 10),
        lambda: backend.read_into("missing", memoryview(bytearray(10))),
        lambda: backend.open_stream("missing"),
        lambda: backend.copy("missing", "elsewhere"),
    ]
    for call in calls:
        with pytest.raises(ObjectNotFoundError) as info:
            call()
        assert isinstance(info.value, FileNotFoundError)
        assert "missing" in str(info.value)


def test_bucket_helpers(backend):
    assert backend.exists_bucket()
    name = "cc-extra-" + type(backend).__name__.lower()
    assert not backend.exists_bucket(name)
    backend.create_bucket(name)
    try:
        assert backend.exists_bucket(name)
        assert name in backend.list_buckets()
        other = backend.with_bucket(name)
        other.write("k", b"in other bucket")
        assert read_all(other, "k") == b"in other bucket"
        assert list(backend.iter_objects()) == []
        other.delete(["k"])
    finally:
        backend.remove_bucket(name)
    assert not backend.exists_bucket(name)


def test_local_store_that_does_not_exist_yet(tmp_path):
    import cottoncandy as cc

    root = tmp_path / "not" / "yet"
    cci = cc.get_interface(str(root), backend="local", verbose=False)
    assert cci.glob("") == [] and cci.lsdir("/") == [] and not cci.exists_object("x")
    assert not root.exists() and not cci.exists_bucket(str(root))  # nothing written by looking
    cci.upload_raw_array("x/arr", np.arange(3))
    assert root.is_dir() and cci.exists_bucket(str(root))
    np.testing.assert_array_equal(cci.download_raw_array("x/arr"), np.arange(3))
    cci.rm("x/arr")
    assert root.is_dir() and list(root.iterdir()) == []  # emptied up to the root, not beyond
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(cc.BucketNotFoundError, match="not a directory"):
        cc.get_interface(str(tmp_path / "a-file"), backend="local")


def _assert_no_secrets(exc: BaseException, *secrets: str) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + repr(exc)
    for secret in secrets:
        assert secret not in text


def test_credentials_never_in_error_messages(s3_server, bucket_name):
    from cottoncandy.backends.s3 import S3Backend
    from cottoncandy.config import Credentials, S3Settings

    good = Credentials(s3_server.access_key, s3_server.secret_key, s3_server.endpoint_url)
    store = S3Backend(bucket_name, good, S3Settings(max_attempts=1))
    with pytest.raises(ObjectNotFoundError) as info:
        store.head("nope")
    _assert_no_secrets(info.value, s3_server.secret_key, s3_server.access_key)
    assert "secret" not in repr(good).lower() or "***" in repr(good)
    assert s3_server.secret_key not in repr(good) and s3_server.secret_key not in repr(store)
    if s3_server.name == "moto":
        return  # moto accepts any credentials
    wrong_secret = "WrongSecret" + s3_server.secret_key[:8]
    bad = S3Backend(bucket_name, Credentials(s3_server.access_key, wrong_secret, s3_server.endpoint_url))
    for call in (lambda: bad.head("k"), lambda: bad.write("k", b"x"), bad.list_buckets):
        with pytest.raises(AccessDeniedError) as info:
            call()
        assert isinstance(info.value, PermissionError)
        _assert_no_secrets(info.value, wrong_secret, s3_server.secret_key)


def test_unreachable_endpoint_is_a_clear_storage_error(free_endpoint):
    from cottoncandy.backends.s3 import S3Backend
    from cottoncandy.config import Credentials, S3Settings

    store = S3Backend(
        "b", Credentials("AKX", "SECRETX", free_endpoint), S3Settings(max_attempts=1, connect_timeout=2)
    )
    with pytest.raises(StorageError) as info:
        store.head("k")
    assert free_endpoint in str(info.value)
    assert "SECRETX" not in str(info.value)


@pytest.fixture
def free_endpoint() -> str:
    from .servers import free_port

    return f"http://127.0.0.1:{free_port()}"
