"""The mount's read path (block cache, ranged reads, gzip checkpoints, dask assembly) on real storage."""

from __future__ import annotations

import io
import itertools
import threading

import numpy as np
import pytest

from cottoncandy.errors import ArrayFormatError, ObjectNotFoundError
from cottoncandy.format.codecs import get_codec
from cottoncandy.format.manifests import dask_manifest_json, parse_dask_manifest, part_key
from cottoncandy.format.metadata import ArrayMeta
from cottoncandy.fuse.cache import BlockCache
from cottoncandy.fuse.gzindex import SNAPSHOT_BYTES
from cottoncandy.fuse.reader import ReadPath
from cottoncandy.fuse.sources import (DaskArrayFile, InMemoryFile, ObjectBody, RawArrayFile, array_header,
                                      file_size)

from .conftest import READ_PATH_SERVERS, on_backends
from .helpers import DEADLINE, GOLDEN_DIR, MANIFEST, CountingBackend, put_golden, sha256


# -- helpers --------------------------------------------------------------------------


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def put_array(backend, key, arr, compression=None, order="C", metadata=None) -> RawArrayFile:
    """Store ``arr`` as a raw array (body in ``order``) and return its descriptor."""
    data = arr.tobytes(order=order)
    body = data if compression is None else bytes(get_codec(compression).encode(memoryview(data), arr.dtype.itemsize))
    meta = ArrayMeta(dtype=arr.dtype, shape=arr.shape, compression=compression, order=order)
    backend.write(key, body, metadata or meta.to_metadata())
    return describe(backend, key)


def describe(backend, key) -> RawArrayFile:
    info = backend.head(key)
    return RawArrayFile(key, info.etag, info.size, ArrayMeta.from_metadata(info.metadata, key))


def put_dask(backend, name, arr, chunks, compression=None, part_order="C") -> DaskArrayFile:
    """Store ``arr`` as a dask array with the given chunks (0.4.0 layout) and return its descriptor."""
    parts, infos = {}, {}
    grid = [range(len(c)) for c in chunks]
    for n, index in enumerate(itertools.product(*grid)):
        sl = tuple(slice(sum(c[:i]), sum(c[:i + 1])) for c, i in zip(chunks, index))
        key = part_key(name, n)
        put_array(backend, key, np.array(arr[sl + (Ellipsis,)], order="C"), compression, part_order)
        parts[index] = key
        infos[key] = backend.head(key)
    mkey = f"{name}/metadata.json"
    backend.write(mkey, dask_manifest_json(arr.shape, arr.dtype, chunks, parts))
    size = backend.head(mkey).size
    return DaskArrayFile(parse_dask_manifest(backend.read_range(mkey, 0, size), mkey), infos)


def read_all(f, chunk=100_003) -> bytes:
    out = bytearray()
    while True:
        data = f.read(len(out), chunk)
        assert isinstance(data, bytes)
        if not data:
            return bytes(out)
        out += data


def run_workers(worker, seeds) -> None:
    """Run ``worker(seed)`` on one thread per seed and wait for all (bounded by the deadline)."""
    threads = [threading.Thread(target=worker, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)


def compressible(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.repeat(rng.integers(0, 50, n // 4 + 1, dtype=np.uint8), 4)[:n]


@pytest.fixture
def golden_backend(backend):
    """The 0.4.0 golden store copied into ``backend`` (sidecars become user metadata)."""
    put_golden(backend)
    return backend


# -- golden store ---------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [64, 1 << 20])
def test_golden_arrays_read_exactly(golden_backend, block_size):
    backend = golden_backend
    small = ReadPath(backend, block_size=block_size, cache_bytes=8 << 20)
    large = ReadPath(backend, block_size=max(block_size, 8192), cache_bytes=8 << 20)  # 6 MB dask volume
    with small, large:
        for key, entry in sorted(MANIFEST.items()):
            rp = small
            if entry["kind"] == "raw":
                source = describe(backend, key)
            elif entry["kind"] == "dask":
                rp = large
                mkey = f"{key}/metadata.json"
                manifest = parse_dask_manifest(backend.read_range(mkey, 0, backend.head(mkey).size), mkey)
                source = DaskArrayFile(manifest, {k: backend.head(k) for k in manifest.parts.values()})
            else:
                continue
            f = rp.open(source)
            data = read_all(f, chunk=10_000)
            assert len(data) == f.size == file_size(source), key
            arr = np.load(io.BytesIO(data))
            assert arr.dtype == np.dtype(entry["dtype"]), key
            assert list(arr.shape) == entry["shape"], key
            assert sha256(arr) == entry["sha256"], key
            assert data == npy_bytes(arr), key
            f.release()


def test_plain_object_and_in_memory_file(golden_backend):
    backend = golden_backend
    info = backend.head("misc/plain.npy")
    with ReadPath(backend, block_size=100) as rp:
        f = rp.open(ObjectBody(info.key, info.etag, info.size))
        data = read_all(f, chunk=33)
        assert data == (GOLDEN_DIR / "misc" / "plain.npy").read_bytes()
        assert sha256(np.load(io.BytesIO(data))) == MANIFEST["misc/plain.npy"]["sha256"]
        m = rp.open(InMemoryFile("x.npz", b"0123456789"))
        assert m.size == file_size(InMemoryFile("x.npz", b"0123456789")) == 10
        assert m.read(3, 4) == b"3456" and m.read(8, 100) == b"89" and m.read(10, 5) == b""


# -- raw arrays: random reads -----------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "gzip", "Blosc", "Zstd"])
def test_random_reads_equal_slices(backend, compression):
    arr = compressible(300_000).view(np.uint16).reshape(300, 500)
    source = put_array(backend, "r/arr", arr, compression)
    expected = npy_bytes(arr)
    rng = np.random.default_rng(1)
    with ReadPath(backend, block_size=16 << 10, gzip_block_size=8 << 10, cache_bytes=64 << 10) as rp:
        f = rp.open(source)
        assert f.size == len(expected) == file_size(source)
        for _ in range(200):
            off = int(rng.integers(0, f.size + 10))
            n = int(rng.integers(0, 70_000))
            assert f.read(off, n) == expected[off:off + n]
        assert f.read(f.size - 5, 100) == expected[-5:]
        assert rp.cache.currsize <= rp.cache.capacity


def test_fortran_order_body_gets_fortran_header(backend):
    arr = np.asfortranarray(np.arange(5 * 7 * 3, dtype="<i4").reshape(5, 7, 3))
    source = put_array(backend, "f/arr", arr, order="F")
    with ReadPath(backend, block_size=32) as rp:
        data = read_all(rp.open(source), chunk=17)
    loaded = np.load(io.BytesIO(data))
    assert loaded.flags.f_contiguous and not loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, arr)
    assert data == npy_bytes(arr)


def test_empty_and_0d_arrays(backend):
    with ReadPath(backend, block_size=8) as rp:
        for key, arr, comp in [("e/empty", np.zeros((0, 4)), None), ("e/empty_gz", np.zeros((3, 0), "<i2"), "gzip"),
                               ("e/scalar", np.array(2.5), None), ("e/scalar_gz", np.array(7, ">i8"), "gzip"),
                               ("e/scalar_zstd", np.array(3 + 4j), "Zstd")]:
            source = put_array(backend, key, arr, comp)
            data = read_all(rp.open(source), chunk=5)
            assert data == npy_bytes(arr), key


# -- dask arrays ---------------------------------------------------------------------------

DASK_CASES = {
    "last_axis_with_trailing_empty": ((6, 7, 50), "<f8", ((6,), (7,), (20, 20, 10, 0)), None, "C"),
    "first_axis": ((6, 7, 50), "<f8", ((2, 2, 2), (7,), (50,)), None, "C"),
    "general_fortran_parts": ((6, 7, 50), ">i4", ((3, 3), (2, 5), (25, 25)), None, "F"),
    "uneven_with_empty_chunks": ((6, 7, 50), "<f4", ((0, 4, 2, 0), (7, 0), (10, 40, 0)), None, "C"),
    "gzip_parts_last_axis": ((8, 9, 64), "|u1", ((8,), (9,), (30, 30, 4)), "gzip", "C"),
    "blosc_parts_general": ((8, 9, 64), "<i2", ((5, 3), (9,), (40, 24)), "Blosc", "C"),
    "strings_unaligned_blocks": ((40, 30), "<U3", ((40,), (11, 11, 8)), None, "C"),
    "one_d": ((10,), "<c16", ((5, 5, 0),), "Zstd", "C"),
    "zero_d": ((), "<f8", (), None, "C"),
    "empty_array": ((0, 5), "<f8", ((0,), (3, 2)), None, "C"),
}


@pytest.mark.parametrize("case", sorted(DASK_CASES))
def test_dask_array_assembles_exactly(backend, case):
    shape, dtype, chunks, compression, order = DASK_CASES[case]
    rng = np.random.default_rng(2)
    n = int(np.prod(shape))
    if np.dtype(dtype).kind == "U":
        arr = np.array(["".join(map(chr, rng.integers(97, 123, 3))) for _ in range(n)], dtype=dtype)
    else:
        arr = (rng.standard_normal(n) * 1000).astype(dtype)
    arr = arr.reshape(shape)
    source = put_dask(backend, f"d/{case}", arr, chunks, compression, order)
    expected = npy_bytes(arr)
    with ReadPath(backend, block_size=1000, gzip_block_size=500, cache_bytes=1 << 20) as rp:
        f = rp.open(source)
        assert f.size == file_size(source) == len(expected)
        assert read_all(f, chunk=777) == expected
        for _ in range(100):
            off = int(rng.integers(0, f.size + 1))
            k = int(rng.integers(0, 3000))
            assert f.read(off, k) == expected[off:off + k], (off, k)


def test_dask_inconsistent_parts_are_format_errors(backend):
    arr = np.arange(40, dtype="<i8").reshape(4, 10)
    source = put_dask(backend, "d/bad", arr, ((4,), (5, 5)))
    with ReadPath(backend) as rp:
        parts = dict(source.parts)
        missing = parts.pop("d/bad/pt0001")
        with pytest.raises(ArrayFormatError, match="pt0001"):
            rp.open(DaskArrayFile(source.manifest, parts))
        put_array(backend, missing.key, np.zeros((4, 5), "<f8"))  # wrong dtype
        parts[missing.key] = backend.head(missing.key)
        with pytest.raises(ArrayFormatError, match="pt0001"):
            rp.open(DaskArrayFile(source.manifest, parts))


# -- gzip checkpoints ---------------------------------------------------------------------


def test_gzip_random_read_resumes_from_checkpoint(backend):
    arr = compressible(3 << 20, seed=3)
    source = put_array(backend, "gz/big", arr, "gzip")
    expected = npy_bytes(arr)
    hlen = len(array_header(source))
    gblock = 64 << 10
    with ReadPath(backend, block_size=256 << 10, gzip_block_size=gblock, max_readahead_blocks=0) as cold:
        f = cold.open(source)
        off = hlen + (5 << 19) + 1000  # inside gzip block 40 of 48
        assert f.read(off, 4096) == expected[off:off + 4096]
        s = cold.gzip_index.stats()
        assert s.restarts == 1 and s.bytes_decompressed >= 40 * gblock  # no checkpoint yet: from byte 0

    with ReadPath(backend, block_size=256 << 10, gzip_block_size=gblock) as rp:
        f = rp.open(source)
        assert read_all(f, chunk=128 << 10) == expected
        assert rp.wait_idle(DEADLINE)
        s0 = rp.gzip_index.stats()
        assert s0.restarts == 1  # one sequential pass: cursor and checkpoints, never from 0 again
        assert s0.bytes_decompressed == arr.nbytes
        assert s0.checkpoints >= len(arr) // gblock - 1
        rp.cache.clear()
        assert f.read(off, 4096) == expected[off:off + 4096]
        s1 = rp.gzip_index.stats()
        assert s1.restarts == s0.restarts
        assert s1.checkpoint_resumes == s0.checkpoint_resumes + 1
        assert s1.bytes_decompressed - s0.bytes_decompressed == gblock  # one block, not 40
        fetched = s1.bytes_fetched - s0.bytes_fetched
        assert 0 < fetched < source.body_size // 4


@pytest.mark.parametrize("bound", ["count", "bytes"])
def test_gzip_checkpoints_are_bounded(backend, bound):
    arr = compressible(1 << 20, seed=4)
    source = put_array(backend, "gz/bounded", arr, "gzip")
    limit = {"max_checkpoints": 20} if bound == "count" else {"gzip_index_bytes": 20 * SNAPSHOT_BYTES}
    with ReadPath(backend, block_size=4096, gzip_block_size=4096, **limit) as rp:
        assert read_all(rp.open(source), chunk=50_000) == npy_bytes(arr)
        assert rp.wait_idle(DEADLINE)
        assert 0 < rp.gzip_index.stats().checkpoints <= 20


def test_gzip_index_budget_is_part_of_the_cache_budget(backend):
    with ReadPath(backend, cache_bytes=32 << 20) as small, ReadPath(backend, cache_bytes=4 << 30) as large:
        for rp, budget in ((small, 32 << 20), (large, 4 << 30)):
            assert rp.cache.capacity + rp.gzip_index.max_checkpoints * SNAPSHOT_BYTES <= budget
            assert rp.gzip_index.max_checkpoints >= 100
    with ReadPath(backend, cache_bytes=64 << 10) as tiny:  # no room for one snapshot: no checkpoints, still reads
        arr = compressible(100_000, seed=6)
        assert read_all(tiny.open(put_array(backend, "gz/tiny", arr, "gzip"))) == npy_bytes(arr)
        assert tiny.gzip_index.stats().checkpoints == 0
    with pytest.raises(ValueError, match="gzip_index_bytes"):
        ReadPath(backend, cache_bytes=1 << 20, gzip_index_bytes=1 << 20)


# -- read-ahead ---------------------------------------------------------------------------


def _blocks_cached(rp, key) -> set[int]:
    return {k[-1] for k in rp.cache.keys() if k[0] == key}


def test_sequential_reader_gets_readahead(backend):
    bs = 16 << 10
    arr = compressible(64 * bs, seed=5)
    source = put_array(backend, "ra/seq", arr, None)
    counting = CountingBackend(backend)
    with ReadPath(counting, block_size=bs, max_readahead_blocks=8) as rp:
        f = rp.open(source)
        expected = npy_bytes(arr)
        end = 4 * bs
        for off in range(0, end, 4096):
            assert f.read(off, 4096) == expected[off:off + 4096]
        assert rp.wait_idle(DEADLINE)
        touched = set(range((end - 1 - len(array_header(source))) // bs + 1))
        cached = _blocks_cached(rp, source.key)
        assert cached > touched
        assert len(cached) >= len(touched) + 8  # the window grew beyond 2
        assert counting.fetches() == len(cached)  # each block fetched once


def test_random_reader_fetches_only_touched_blocks(backend):
    bs = 16 << 10
    arr = compressible(64 * bs, seed=6)
    source = put_array(backend, "ra/rand", arr, None)
    counting = CountingBackend(backend)
    hlen = len(array_header(source))
    with ReadPath(counting, block_size=bs, max_readahead_blocks=8) as rp:
        f = rp.open(source)
        expected = npy_bytes(arr)
        wanted = [40, 7, 25, 60, 13, 50, 2, 33]
        for b in wanted:
            off = hlen + b * bs + 100
            assert f.read(off, 4096) == expected[off:off + 4096]
        assert rp.wait_idle(DEADLINE)
        assert _blocks_cached(rp, source.key) == set(wanted)
        assert counting.fetches() == len(wanted)


def test_random_reader_fetches_pieces_not_whole_blocks(backend):
    bs, piece = 256 << 10, 16 << 10
    arr = compressible(8 * bs, seed=7)
    source = put_array(backend, "ra/pieces", arr, None)
    counting = CountingBackend(backend)
    hlen = len(array_header(source))
    expected = npy_bytes(arr)
    with ReadPath(counting, block_size=bs, max_readahead_blocks=8, random_read_size=piece) as rp:
        f = rp.open(source)
        offsets = [hlen + 5 * bs + 1000, hlen + bs + 7, hlen + 7 * bs + piece - 100, hlen + 3 * piece]
        for off in offsets:  # the third read straddles two pieces
            assert f.read(off, 4096) == expected[off:off + 4096]
        assert f.read(offsets[0] + 50, 1000) == expected[offsets[0] + 50:offsets[0] + 1050]  # a cached piece
        assert rp.wait_idle(DEADLINE)
        assert counting.fetches() == 5
        assert counting.bytes_requested == 5 * piece  # not 4 whole blocks of 256 KiB
        # a sequential reader still gets whole blocks and read-ahead
        for off in range(0, 2 * bs, 64 << 10):
            assert f.read(off, 64 << 10) == expected[off:off + (64 << 10)]
        assert rp.wait_idle(DEADLINE)
        assert counting.bytes_requested >= 5 * piece + 2 * bs


# -- concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_concurrent_misses_share_one_fetch(backend, compression):
    bs = 16 << 10
    arr = compressible(8 * bs, seed=7)
    source = put_array(backend, "cc/one", arr, compression)
    gate = threading.Event()
    counting = CountingBackend(backend, gate)
    hlen = len(array_header(source))
    expected = npy_bytes(arr)
    off = hlen + 3 * bs + 10
    with ReadPath(counting, block_size=bs, gzip_block_size=bs, max_readahead_blocks=0) as rp:
        f = rp.open(source)
        barrier = threading.Barrier(9)
        results, errors = [None] * 8, []

        def reader(i):
            barrier.wait(DEADLINE)
            try:
                results[i] = f.read(off, 1000)
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        barrier.wait(DEADLINE)
        assert counting.entered.wait(DEADLINE)
        gate.set()
        for t in threads:
            t.join(DEADLINE)
        assert not errors and all(r == expected[off:off + 1000] for r in results)
        stats = rp.cache.stats()
        assert stats.misses == 1 and stats.hits + stats.joined == 7
        if compression is None:
            assert counting.calls[("read_range", source.key, 3 * bs)] == 1
            assert counting.fetches() == 1
        else:  # one decode from byte 0 up to block 3; each compressed range fetched once
            assert all(n == 1 for n in counting.calls.values())


@on_backends("local", *READ_PATH_SERVERS)
@pytest.mark.parametrize("kind", ["raw", "gzip", "dask_gzip"])
def test_many_threads_random_reads(backend, kind):
    arr = compressible(1 << 20, seed=8).view("<u4").reshape(256, 1024)
    if kind == "dask_gzip":
        source = put_dask(backend, "mt/d", arr, ((100, 100, 56), (300, 724)), "gzip")
    else:
        source = put_array(backend, "mt/a", arr, None if kind == "raw" else "gzip")
    expected = npy_bytes(arr)
    with ReadPath(backend, block_size=32 << 10, gzip_block_size=16 << 10, cache_bytes=256 << 10) as rp:
        f = rp.open(source)
        errors = []

        def worker(seed):
            rng = np.random.default_rng(seed)
            try:
                for _ in range(40):
                    off = int(rng.integers(0, f.size))
                    n = int(rng.integers(1, 100_000))
                    if f.read(off, n) != expected[off:off + n]:
                        errors.append((off, n))
            except Exception as exc:  # reported below
                errors.append(exc)

        run_workers(worker, range(8))
        assert not errors
        assert rp.cache.currsize <= rp.cache.capacity


# -- corrupt objects -----------------------------------------------------------------------


def _meta(shape, dtype="<f8", compression="gzip"):
    return ArrayMeta(np.dtype(dtype), shape, compression).to_metadata()


def test_corrupt_bodies_are_format_errors(backend):
    data = compressible(200_000, seed=9).view("<f8")
    gz = bytes(get_codec("gzip").encode(memoryview(data.tobytes())))
    cases = {
        "bad/truncated_gzip": (gz[: len(gz) // 2], _meta(data.shape)),
        "bad/gzip_no_trailer": (gz[:-4], _meta(data.shape)),
        "bad/gzip_short": (bytes(get_codec("gzip").encode(memoryview(data[:1000].tobytes()))), _meta(data.shape)),
        "bad/gzip_long": (gz, _meta((data.size - 10,))),
        "bad/gzip_garbage": (b"\x1f\x8b" + bytes(range(256)) * 10, _meta((500,))),
        "bad/blosc_truncated": (bytes(get_codec("Blosc").encode(memoryview(data.tobytes()), 8))[:5000],
                                _meta(data.shape, compression="Blosc")),
    }
    with ReadPath(backend, block_size=8 << 10, gzip_block_size=8 << 10) as rp:
        for key, (body, metadata) in cases.items():
            backend.write(key, body, metadata)
            f = rp.open(describe(backend, key))
            with pytest.raises(ArrayFormatError) as info:
                read_all(f, chunk=64 << 10)
            assert key in str(info.value) and info.value.key == key, key
        # and the mount goes on: a good file still reads
        good = put_array(backend, "bad/good", data, "gzip")
        assert read_all(rp.open(good)) == npy_bytes(data)


def test_unreadable_arrays_fail_on_open(backend):
    with ReadPath(backend) as rp:
        backend.write("bad/short_raw", b"\0" * 100, _meta((20,), compression=None))
        with pytest.raises(ArrayFormatError, match="bad/short_raw"):
            rp.open(describe(backend, "bad/short_raw"))
        backend.write("bad/codec", b"\0" * 160, _meta((20,), compression="Snappy9"))
        with pytest.raises(ArrayFormatError, match="bad/codec"):
            rp.open(describe(backend, "bad/codec"))


# -- cache bound and versions -----------------------------------------------------------


def test_cache_stays_within_capacity(backend):
    bs = 16 << 10
    arr = compressible(40 * bs, seed=10)
    raw = put_array(backend, "cap/raw", arr, None)
    zst = put_array(backend, "cap/zstd", arr, "Zstd")
    gz = put_array(backend, "cap/gz", arr, "gzip")
    with ReadPath(backend, block_size=bs, gzip_block_size=bs, cache_bytes=5 * bs + 100) as rp:
        for source in (raw, zst, gz):
            f = rp.open(source)
            expected = npy_bytes(arr)
            for off in range(0, f.size, 50_000):
                assert f.read(off, 50_000) == expected[off:off + 50_000]
                assert rp.cache.currsize <= rp.cache.capacity
            assert rp.wait_idle(DEADLINE)
            assert rp.cache.currsize <= rp.cache.capacity
    cache = BlockCache(100)
    assert cache.get_or_load("big", lambda: b"x" * 1000) == b"x" * 1000  # too big: served, not kept
    assert "big" not in cache and cache.currsize == 0


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_open_file_never_mixes_versions(backend, compression):
    bs = 8 << 10
    rng = np.random.default_rng(11)
    v1, v2 = rng.integers(0, 256, (2, 16 * bs), dtype=np.uint8)  # incompressible: gzip needs ranged reads too
    source = put_array(backend, "ver/a", v1, compression)
    exp1 = npy_bytes(v1)
    with ReadPath(backend, block_size=bs, gzip_block_size=bs, cache_bytes=2 * bs, max_readahead_blocks=0) as rp:
        f = rp.open(source)
        assert f.read(0, 1000) == exp1[:1000]
        put_array(backend, "ver/a", v2, compression)
        assert describe(backend, "ver/a").etag != source.etag
        failures = 0
        for off in range(0, f.size, bs // 2):
            try:
                assert f.read(off, bs // 2) == exp1[off:off + bs // 2]
            except ObjectNotFoundError as exc:
                assert exc.key == "ver/a"
                failures += 1
        assert failures > 0  # blocks not cached can no longer be read
        fresh = rp.open(describe(backend, "ver/a"))
        assert read_all(fresh) == npy_bytes(v2)


# -- block cache unit behaviour ------------------------------------------------------------


def test_block_cache_failed_load_reaches_all_waiters_and_is_not_cached():
    cache = BlockCache(1 << 20)
    started, release = threading.Event(), threading.Event()
    calls = []

    def failing():
        calls.append(1)
        started.set()
        release.wait(DEADLINE)
        raise ObjectNotFoundError("gone", "k")

    outcomes = []

    def call():
        try:
            outcomes.append(cache.get_or_load(("k", "e", 0), failing))
        except ObjectNotFoundError as exc:
            outcomes.append(exc)

    first = threading.Thread(target=call)
    first.start()
    assert started.wait(DEADLINE)
    others = [threading.Thread(target=call) for _ in range(4)]
    for t in others:
        t.start()
    release.set()
    for t in [first, *others]:
        t.join(DEADLINE)
    assert len(outcomes) == 5 and all(isinstance(o, ObjectNotFoundError) for o in outcomes)
    assert ("k", "e", 0) not in cache
    assert cache.get_or_load(("k", "e", 0), lambda: b"ok") == b"ok"
    assert cache.peek(("k", "e", 0)) == b"ok"
    assert cache.stats().load_errors == 1


def test_block_cache_is_lru_bounded_in_bytes():
    cache = BlockCache(10)
    for i in range(5):
        cache.put(i, bytes(3))
    assert set(cache.keys()) == {2, 3, 4} and cache.currsize == 9
    assert cache.get_or_load(2, lambda: b"never") == bytes(3)  # hit refreshes 2
    cache.put(5, bytes(3))
    assert set(cache.keys()) == {4, 2, 5}
    assert cache.peek(4) == bytes(3)  # peek does not refresh 4
    cache.put(6, bytes(3))
    assert set(cache.keys()) == {2, 5, 6}


def test_checkpoint_bound_shared_by_objects_read_concurrently(backend):
    arrays = {f"gzc/{i}": compressible(256 << 10, seed=20 + i) for i in range(3)}
    sources = {k: put_array(backend, k, a, "gzip") for k, a in arrays.items()}
    expected = {k: npy_bytes(a) for k, a in arrays.items()}
    index_bytes = 20 * SNAPSHOT_BYTES  # room for more than the bound of 10
    with ReadPath(backend, block_size=4096, gzip_block_size=4096, cache_bytes=(64 << 10) + index_bytes,
                  gzip_index_bytes=index_bytes, max_checkpoints=10) as rp:
        files = {k: rp.open(s) for k, s in sources.items()}
        errors = []

        def worker(seed):
            rng = np.random.default_rng(seed)
            try:
                for _ in range(30):
                    key = sorted(files)[int(rng.integers(0, 3))]
                    off = int(rng.integers(0, files[key].size))
                    if files[key].read(off, 5000) != expected[key][off:off + 5000]:
                        errors.append((key, off))
            except Exception as exc:  # reported below
                errors.append(exc)

        run_workers(worker, range(6))
        assert not errors
        assert rp.wait_idle(DEADLINE)
        assert 0 < rp.gzip_index.stats().checkpoints <= 10
