"""gzip bodies with the fast libraries (isal, zlib-ng) and with the standard library fallback.

Every test runs twice, once per ``gzip_library``: with the fast libraries
installed and chosen, and with ``COTTONCANDY_GZIP=stdlib`` (read at each
call). Bodies come from cottoncandy 0.4.0 (the golden store and its writer,
``gzip.GzipFile`` at level 9), from the standard library in the shapes gzip
allows (levels, header fields, several members, NUL padding) and from our own
encoder; each must read back byte for byte through the API (ranged pieces
decoded as they arrive) and the mount's read path. Truncated and corrupt
bodies give ``ArrayFormatError`` for that object only.
"""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zlib

import numpy as np
import pytest

from cottoncandy.errors import ArrayFormatError, ObjectNotFoundError
from cottoncandy.format.codecs import get_codec
from cottoncandy.format.gzipcodec import LIBRARY_ENV, deflate_library, inflate_library
from cottoncandy.format.metadata import ArrayMeta
from cottoncandy.fuse.reader import ReadPath
from cottoncandy.interface import Interface
from cottoncandy.transfer import arrayio, bodyranges

from .helpers import DEADLINE, CountingBackend, iter_golden
from .test_readpath import describe, npy_bytes, read_all

SMALL_PART = 64 << 10  # API downloads in many ranged pieces even for small bodies
LIBRARIES = {"fast": ("isal", "zlib-ng", "isal"), "stdlib": ("zlib", "zlib", "zlib")}


@pytest.fixture(params=sorted(LIBRARIES))
def gzip_library(request, monkeypatch) -> str:
    """Select the libraries (and check they are the ones in use); small API range pieces."""
    if request.param == "stdlib":
        monkeypatch.setenv(LIBRARY_ENV, "stdlib")
    else:
        monkeypatch.delenv(LIBRARY_ENV, raising=False)
    in_use = (inflate_library().name, inflate_library(copyable=True).name, deflate_library().name)
    assert in_use == LIBRARIES[request.param]
    monkeypatch.setattr(bodyranges, "PART_BYTES", SMALL_PART)
    return request.param


def smooth(n: int, dtype="<f4", seed: int = 0) -> np.ndarray:
    """Measurement-like data (a cumulative sum of noise): compresses a little, like real arrays."""
    return np.cumsum(np.random.default_rng(seed).standard_normal(n)).astype(dtype)


def gzip_040(raw: bytes) -> bytes:
    """What cottoncandy 0.4.0's ``upload_raw_array`` stores: ``GzipFile`` (level 9) over the array bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(mode="wb", fileobj=buffer) as gz:
        gz.write(raw)
    return buffer.getvalue()


def read_like_040(body: bytes) -> bytes:
    """How 0.4.0's ``download_raw_array`` decodes gzip: ``zlib.decompressobj(16 + MAX_WBITS)``, 16 KiB reads."""
    dobj, out = zlib.decompressobj(16 + zlib.MAX_WBITS), []
    for start in range(0, len(body), 16384):
        out.append(dobj.decompress(body[start:start + 16384]))
    out.append(dobj.flush())
    return b"".join(out)


def gzip_bodies() -> dict[str, tuple[bytes, ArrayMeta, bytes]]:
    """``name -> (body, metadata, decoded bytes)`` for every kind of good gzip body."""
    bodies = {}
    for key, path, metadata in iter_golden():
        meta = ArrayMeta.from_metadata(metadata, key) if "dtype" in metadata else None
        if meta is not None and meta.compression == "gzip":
            body = path.read_bytes()
            bodies[f"golden:{key}"] = (body, meta, gzip.decompress(body))
    arr = smooth(300_000)
    raw = arr.tobytes()
    meta = ArrayMeta.for_array(arr, compression="gzip")
    header = io.BytesIO()
    with gzip.GzipFile(filename="array.bin", mode="wb", fileobj=header, mtime=1, compresslevel=6) as gz:
        gz.write(raw)
    third = len(raw) // 3
    bodies.update({
        "040-writer": (gzip_040(raw), meta, raw),
        "stdlib-level1": (gzip.compress(raw, 1), meta, raw),
        "stdlib-level0-stored": (gzip.compress(raw, 0), meta, raw),
        "stdlib-filename-header": (header.getvalue(), meta, raw),
        "three-members-and-padding": (gzip.compress(raw[:third]) + b"\0" * 7 + gzip.compress(raw[third:2 * third])
                                      + gzip.compress(raw[2 * third:]) + b"\0" * 100, meta, raw),
        "empty-member-after": (gzip.compress(raw) + gzip.compress(b""), meta, raw),
        "ours": (bytes(get_codec("gzip").encode(memoryview(raw))), meta, raw),
    })
    return bodies


def bad_bodies() -> dict[str, tuple[bytes, ArrayMeta]]:
    """Truncated and corrupt gzip bodies."""
    arr = smooth(100_000, seed=1)
    raw = arr.tobytes()
    meta = ArrayMeta.for_array(arr, compression="gzip")
    good = gzip_040(raw)
    crc = bytearray(good)
    crc[-6] ^= 1
    isize = bytearray(good)
    isize[-2] ^= 1
    middle = bytearray(good)
    middle[len(good) // 2] ^= 0xFF
    return {
        "truncated-half": (good[: len(good) // 2], meta),
        "truncated-trailer": (good[:-3], meta),
        "truncated-header": (good[:5], meta),
        "empty-body": (b"", meta),
        "crc-flipped": (bytes(crc), meta),
        "isize-flipped": (bytes(isize), meta),
        "middle-flipped": (bytes(middle), meta),
        "trailing-junk": (good + b"junk after the member", meta),
        "padding-then-junk": (good + b"\0" * 10 + b"junk", meta),
        "second-member-truncated": (good + gzip.compress(b"")[:-2], meta),
        "too-long": (good, ArrayMeta.for_array(arr[:-1], compression="gzip")),
        "too-short": (gzip.compress(raw[:-4]), meta),
        "not-gzip": (b"\x1f\x8bnot really gzip" * 50, meta),
    }


def store(backend, bodies) -> None:
    for name, (body, meta, *_) in bodies.items():
        backend.write(f"gz/{name}", body, meta.to_metadata())


# -- the library choice ---------------------------------------------------------------


def test_switch_is_read_at_call_time(monkeypatch):
    monkeypatch.delenv(LIBRARY_ENV, raising=False)
    assert inflate_library().name == "isal" and deflate_library().name == "isal"
    assert inflate_library(copyable=True).name == "zlib-ng"
    assert hasattr(inflate_library(copyable=True).decompressobj(31), "copy")
    monkeypatch.setenv(LIBRARY_ENV, "stdlib")
    assert {inflate_library().name, inflate_library(copyable=True).name, deflate_library().name} == {"zlib"}


def test_missing_fast_libraries_fall_back(monkeypatch):
    """With isal and zlib-ng not importable, everything still works with the standard library."""
    import sys

    from cottoncandy.format import gzipcodec

    monkeypatch.delenv(LIBRARY_ENV, raising=False)
    gzipcodec._import.cache_clear()
    for module in ("isal", "isal.isal_zlib", "zlib_ng", "zlib_ng.zlib_ng"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    try:
        assert inflate_library().name == inflate_library(copyable=True).name == deflate_library().name == "zlib"
        raw = smooth(50_000).tobytes()
        body = bytes(get_codec("gzip").encode(memoryview(raw)))
        assert gzip.decompress(body) == raw
        out = bytearray(len(raw))
        get_codec("gzip").decode_into(gzip_040(raw), memoryview(out), "k")
        assert out == raw
    finally:
        gzipcodec._import.cache_clear()


# -- the API --------------------------------------------------------------------------


def test_api_reads_every_kind_of_gzip_body(gzip_library, backend):
    bodies = gzip_bodies()
    store(backend, bodies)
    cci = Interface(backend)
    for name, (_, meta, decoded) in bodies.items():
        arr = cci.download_raw_array(f"gz/{name}")
        assert arr.dtype == meta.dtype and arr.shape == meta.shape, name
        assert arr.tobytes(order=meta.order) == decoded, name


def test_api_round_trip_readable_by_040(gzip_library, backend):
    cci = Interface(backend)
    for shape, dtype in (((600, 500), "<f4"), ((3, 4, 5), ">i2"), ((0, 3), "<f8"), ((), "<c16")):
        arr = smooth(int(np.prod(shape)), dtype).reshape(shape)
        cci.upload_raw_array("ours", arr, compression="gzip")
        got = cci.download_raw_array("ours")
        assert got.dtype == arr.dtype and np.array_equal(got, arr)
        info = backend.head("ours")
        body = backend.read_range("ours", 0, info.size)
        if arr.size:
            assert info.metadata["compression"] == "gzip"
            assert read_like_040(body) == gzip.decompress(body) == arr.tobytes()


def test_api_decodes_ranges_as_they_arrive(gzip_library, backend):
    """The body comes in ranged pieces and is never held whole next to the array."""
    arr = np.random.default_rng(2).integers(0, 255, 2 << 20, dtype=np.uint8)  # barely compressible
    body = gzip.compress(arr.tobytes(), 1)
    backend.write("big", body, ArrayMeta.for_array(arr, compression="gzip").to_metadata())
    counting = CountingBackend(backend)
    tracemalloc.start()
    try:
        got = arrayio.download_raw(counting, "big", None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(got, arr)
    reads = [call for call in counting.calls if call[1] == "big"]
    assert {call[0] for call in reads} == {"read_range"}
    assert len(reads) == -(-len(body) // SMALL_PART)
    assert peak < arr.nbytes + len(body) // 2, peak  # array + a few pieces, not + the body


def bad_and_good(root, name: str):
    """A local store with the bad body ``name`` at ``bad`` and a good gzip array at ``good``."""
    from cottoncandy.backends.local import LocalBackend

    backend = LocalBackend(root)
    body, meta = bad_bodies()[name]
    backend.write("bad", body, meta.to_metadata())
    good = smooth(1000)
    backend.write("good", gzip.compress(good.tobytes()), ArrayMeta.for_array(good, compression="gzip").to_metadata())
    return backend, good


@pytest.mark.parametrize("name", sorted(bad_bodies()))
def test_api_bad_bodies_fail_for_that_object_only(gzip_library, tmp_path, name):
    backend, good = bad_and_good(tmp_path, name)
    cci = Interface(backend)
    with pytest.raises(ArrayFormatError, match="bad"):
        cci.download_raw_array("bad")
    assert np.array_equal(cci.download_raw_array("good"), good)


def test_api_object_replaced_during_download(s3_server, bucket_name, monkeypatch):
    """Every range is pinned to the ETag of the HEAD: a new version midway is an error, not a mix."""
    from .conftest import make_s3_backend

    backend = make_s3_backend(s3_server, bucket_name)
    monkeypatch.setattr(bodyranges, "PART_BYTES", SMALL_PART)
    arr = np.random.default_rng(3).integers(0, 255, 1 << 20, dtype=np.uint8)
    meta = ArrayMeta.for_array(arr, compression="gzip").to_metadata()
    backend.write("v", gzip.compress(arr.tobytes(), 1), meta)
    info = backend.head("v")
    pieces = bodyranges.iter_ranges(backend, "v", info.size, info.etag)
    next(pieces)
    backend.write("v", gzip.compress(arr[::-1].tobytes(), 1), meta)
    with pytest.raises(ObjectNotFoundError):
        for _ in pieces:
            pass
    backend.close()


def test_iter_ranges_checks_the_length(tmp_path):
    from cottoncandy.backends.local import LocalBackend

    backend = LocalBackend(tmp_path)
    backend.write("k", bytes(range(256)) * 40)
    info = backend.head("k")
    assert b"".join(bodyranges.iter_ranges(backend, "k", info.size, info.etag, part=1000, ahead=2)) \
        == bytes(range(256)) * 40
    with pytest.raises(ArrayFormatError, match="ends at byte 10240"):
        list(bodyranges.iter_ranges(backend, "k", info.size + 5, info.etag, part=1000, ahead=2))
    closed_early = bodyranges.iter_ranges(backend, "k", info.size, info.etag, part=100, ahead=3)
    assert next(closed_early) == bytes(range(100))
    closed_early.close()  # cancels the rest without waiting


@pytest.mark.parametrize("compression", ["Blosc", "Zstd", "LZ4"])
def test_whole_body_codecs_decode_straight_into_the_array(compression):
    """No decoded-size temporary on the way into the array (numcodecs decodes into ``out``)."""
    arr = smooth(1 << 20, "<f8")
    codec = get_codec(compression)
    body = bytes(codec.encode(memoryview(arr).cast("B"), 8))
    out = np.empty_like(arr)
    tracemalloc.start()
    try:
        codec.decode_into(body, memoryview(out).cast("B"), "k")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(out, arr)
    assert peak < 64 << 10, peak


# -- the mount's read path ------------------------------------------------------------


def test_read_path_reads_every_kind_of_gzip_body(gzip_library, backend):
    bodies = gzip_bodies()
    store(backend, bodies)
    with ReadPath(backend, block_size=64 << 10, gzip_block_size=16 << 10, cache_bytes=4 << 20) as rp:
        for name, (_, meta, decoded) in bodies.items():
            source = describe(backend, f"gz/{name}")
            assert rp.array_stream(source.key, source.etag, source.body_size, meta).__class__.__name__ in (
                "GzipStream", "EmptyStream"), name
            f = rp.open(source)
            expected = npy_bytes(np.frombuffer(decoded, meta.dtype).reshape(meta.shape, order=meta.order))
            assert read_all(f, chunk=7000) == expected, name
            for start in np.random.default_rng(4).integers(0, max(1, f.size - 100), 5):
                assert f.read(int(start), 100) == expected[int(start):int(start) + 100], name


def test_read_path_random_reads_from_checkpoints_with_small_cache(gzip_library, backend):
    """A cache too small for the array: random reads decode from checkpoints, within the budget."""
    arr = smooth(1 << 20)  # 4 MiB
    raw = arr.tobytes()
    backend.write("gz/big", gzip_040(raw), ArrayMeta.for_array(arr, compression="gzip").to_metadata())
    source = describe(backend, "gz/big")
    expected = npy_bytes(arr)
    budget = 1 << 20
    with ReadPath(backend, block_size=64 << 10, gzip_block_size=32 << 10, cache_bytes=budget,
                  gzip_index_bytes=budget // 2) as rp:
        stream = rp.array_stream(source.key, source.etag, source.body_size, source.meta)
        assert stream._library.name == LIBRARIES[gzip_library][1]
        f = rp.open(source)
        assert read_all(f, chunk=50_000) == expected
        assert rp.wait_idle(DEADLINE)
        before = rp.gzip_index.stats()
        assert 0 < before.checkpoints <= rp.gzip_index.max_checkpoints
        assert rp.cache.capacity + rp.gzip_index.max_checkpoints * 42 * 1024 <= budget
        for offset in np.random.default_rng(5).integers(0, f.size - 4096, 40):
            assert f.read(int(offset), 4096) == expected[int(offset):int(offset) + 4096]
        after = rp.gzip_index.stats()
        assert after.checkpoint_resumes > before.checkpoint_resumes
        # each read decoded from the checkpoint before it, not from byte 0 (2 MiB on average)
        offsets = [0, *rp.gzip_index.state(source.key, source.etag).offsets, len(raw)]
        spacing = max(b - a for a, b in zip(offsets, offsets[1:]))
        assert spacing <= len(raw) // 4
        assert after.bytes_decompressed - before.bytes_decompressed <= 40 * (spacing + (32 << 10))


def test_read_path_random_miss_decodes_only_its_span(gzip_library, tmp_path):
    """In a body bigger than the cache, a random read decodes from the checkpoint before it to its end."""
    from cottoncandy.backends.local import LocalBackend

    backend = LocalBackend(tmp_path)
    arr = smooth(1 << 20)
    raw = arr.tobytes()
    meta = ArrayMeta.for_array(arr, compression="gzip")
    backend.write("big", gzip_040(raw), meta.to_metadata())
    backend.write("junk", gzip_040(raw) + b"junk", meta.to_metadata())
    block = 32 << 10
    with ReadPath(backend, block_size=block, gzip_block_size=block, cache_bytes=1 << 20,
                  gzip_index_bytes=512 << 10) as rp:
        source = describe(backend, "big")
        stream = rp.array_stream(source.key, source.etag, source.body_size, source.meta)
        offset = 3 * len(raw) // 4 + 1000
        s0 = rp.gzip_index.stats()
        assert stream.read(offset, 4096, random=True) == raw[offset:offset + 4096]
        s1 = rp.gzip_index.stats()
        assert s1.restarts == s0.restarts + 1 and s1.bytes_decompressed - s0.bytes_decompressed == offset + 4096
        assert s1.checkpoints > 0  # made on the way
        checkpoint = max(o for o in rp.gzip_index.state(source.key, source.etag).offsets if o <= offset)
        assert stream.read(offset + 10, 4096, random=True) == raw[offset + 10:offset + 4106]
        s2 = rp.gzip_index.stats()
        assert s2.checkpoint_resumes == s1.checkpoint_resumes + 1
        assert s2.bytes_decompressed - s1.bytes_decompressed == offset + 4106 - checkpoint
        assert not any(k[0] == "big" for k in rp.cache.keys())  # nothing cached that the cache cannot keep
        junk = describe(backend, "junk")
        tail = rp.array_stream(junk.key, junk.etag, junk.body_size, junk.meta)
        with pytest.raises(ArrayFormatError, match="junk"):
            tail.read(len(raw) - 100, 100, random=True)  # the end of the body is checked on a random read too


@pytest.mark.parametrize("name", sorted(bad_bodies()))
def test_read_path_bad_bodies_fail_for_that_object_only(gzip_library, tmp_path, name):
    backend, good = bad_and_good(tmp_path, name)
    with ReadPath(backend, block_size=16 << 10, gzip_block_size=8 << 10, cache_bytes=1 << 20) as rp:
        with pytest.raises(ArrayFormatError, match="bad"):
            read_all(rp.open(describe(backend, "bad")))
        assert read_all(rp.open(describe(backend, "good"))) == npy_bytes(good)


# -- a real mount ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "rclone"])
def test_mount_reads_gzip_bodies_and_fails_bad_ones_alone(gzip_library, kind, request, tmp_path):
    import errno
    import os

    from .conftest import make_s3_backend
    from .mountutil import mount_env, mounted

    if kind == "local":
        from cottoncandy.backends.local import LocalBackend

        backend = LocalBackend(tmp_path / "store", create=True)
        bucket, args, env = str(tmp_path / "store"), ["--backend", "local"], mount_env()
    else:
        server = request.getfixturevalue("rclone_server")
        bucket = request.getfixturevalue("buckets")(server)
        backend = make_s3_backend(server, bucket)
        args, env = [], mount_env(server.endpoint_url, server.access_key, server.secret_key)
    good = gzip_bodies()
    store(backend, good)
    for name, (body, meta) in bad_bodies().items():
        backend.write(f"bad/{name}", body, meta.to_metadata())
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(bucket, mountpoint, [*args, "--debug"], env) as mount:
        for name, (_, meta, decoded) in good.items():
            path = mount.path / "gz" / f"{name}.npy"
            arr = np.load(path)
            assert arr.dtype == meta.dtype and arr.shape == meta.shape, name
            assert arr.tobytes(order=meta.order) == decoded, name
            expected = path.read_bytes()
            with open(path, "rb") as fh:
                for start in np.random.default_rng(6).integers(0, max(1, len(expected) - 5000), 4):
                    assert os.pread(fh.fileno(), 5000, int(start)) == expected[int(start):int(start) + 5000]
        for name in bad_bodies():
            with pytest.raises(OSError) as info:
                (mount.path / "bad" / f"{name}.npy").read_bytes()
            assert info.value.errno == errno.EIO, name
        assert np.array_equal(np.load(mount.path / "gz" / "ours.npy"), np.frombuffer(good["ours"][2], "<f4"))
        assert mount.process.poll() is None
        assert f"gzip body decoded with {LIBRARIES[gzip_library][1]}" in mount.log()
    backend.close()
