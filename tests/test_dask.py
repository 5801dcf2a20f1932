"""Dask arrays: 0.4.0 layout, lazy reads, ranged raw views, distributed computation."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest

import dask.array as da

from cottoncandy.errors import ArrayFormatError, ObjectNotFoundError  # noqa: E402
from cottoncandy.extensions.lazy_sources import box_index  # noqa: E402
from cottoncandy.interface import Interface  # noqa: E402

from .helpers import MANIFEST, CountingBackend, put_golden  # noqa: E402
from .helpers import sha256 as sha  # noqa: E402


def golden_sha(key: str) -> str:
    return MANIFEST[key]["sha256"]


# -- layout and round trips ------------------------------------------------------


@pytest.mark.parametrize(
    "shape, dtype, axis, buffersize",
    [
        ((10, 20, 30), "<f8", -1, 10 * 20 * 8 * 7),  # 7 per part along the last axis: 4 full + a remainder
        ((10, 20, 30), ">i2", 0, 20 * 30 * 2 * 5),  # exactly 2 parts, no remainder
        ((50,), "|u1", -1, 16),
        ((4, 6), "<c16", 1, 10**9),  # one part
        ((3, 4), "|b1", None, 8),
    ],
)
def test_roundtrip_layout(cci, backend, shape, dtype, axis, buffersize):
    arr = (np.arange(int(np.prod(shape))) % 251).astype(dtype).reshape(shape)
    cci.upload_dask_array("vols/v1", arr, axis=axis, buffersize=buffersize)
    manifest = json.loads(cci.download_object("vols/v1/metadata.json"))
    assert manifest["shape"] == list(shape)
    assert manifest["dtype"] == np.dtype(dtype).str
    nparts = int(np.prod([len(c) for c in manifest["chunks"]]))
    assert [entry[1] for entry in manifest["dask"]] == [f"vols/v1/pt{i:04d}" for i in range(nparts)]
    assert all(n > 0 for axis_chunks in manifest["chunks"] for n in axis_chunks)  # no empty chunk
    assert cci.glob("vols/v1/*") == sorted([f"vols/v1/pt{i:04d}" for i in range(nparts)] + ["vols/v1/metadata.json"])
    for (coords, part), size in zip(manifest["dask"], manifest["chunk_sizes"]):
        assert cci.download_raw_array(part).shape == tuple(size)
    if axis is not None:
        assert all(len(c) == 1 for i, c in enumerate(manifest["chunks"]) if i != axis % len(shape))
        assert max(manifest["chunks"][axis]) * arr.nbytes // shape[axis] <= max(buffersize, arr.nbytes // shape[axis])
    lazy = cci.download_dask_array("vols/v1")
    assert lazy.shape == shape and lazy.dtype == arr.dtype
    np.testing.assert_array_equal(lazy.compute(), arr)


def test_dask_input_is_written_block_by_block(cci):
    rng = np.random.default_rng(0)
    data = rng.random((40, 30))

    class Recording:
        shape, dtype, ndim = data.shape, data.dtype, 2

        def __init__(self):
            self.requested: list[int] = []

        def __getitem__(self, index):
            block = data[index]
            self.requested.append(block.nbytes)
            return block

    recording = Recording()
    source = da.from_array(recording, chunks=(5, 30), asarray=False, name="recording")
    cci.upload_dask_array("from_dask", source * 2, axis=0, buffersize=30 * 8 * 10)
    assert recording.requested and max(recording.requested) <= 30 * 8 * 5
    manifest = json.loads(cci.download_object("from_dask/metadata.json"))
    assert manifest["chunks"] == [[10, 10, 10, 10], [30]]
    np.testing.assert_array_equal(cci.download_dask_array("from_dask").compute(), data * 2)


def test_dask_input_axis_none_keeps_its_chunks(cci):
    data = np.arange(60.0).reshape(6, 10)
    cci.upload_dask_array("own", da.from_array(data, chunks=(4, 5)), axis=None)
    lazy = cci.download_dask_array("own")
    assert lazy.chunks == ((4, 2), (5, 5))
    np.testing.assert_array_equal(lazy.compute(), data)


@pytest.mark.parametrize("arr", [np.float32(3.5), np.zeros((3, 0)), np.zeros((0,), "<i4")])
def test_degenerate_shapes(cci, arr):
    cci.upload_dask_array("odd", arr)
    out = cci.download_dask_array("odd").compute()
    assert out.shape == np.shape(arr) and out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


def test_overwrite_removes_stale_parts(cci):
    cci.upload_dask_array("v", np.ones((4, 10)), axis=-1, buffersize=4 * 8)
    assert len(cci.glob("v/pt*")) == 10
    cci.upload_object("v/notes.txt", b"keep me")
    cci.upload_dask_array("v", np.zeros((4, 3)), axis=-1, buffersize=4 * 8)
    assert cci.glob("v/*") == ["v/metadata.json", "v/notes.txt", "v/pt0000", "v/pt0001", "v/pt0002"]
    np.testing.assert_array_equal(cci.download_dask_array("v").compute(), np.zeros((4, 3)))


def test_progress_and_logging_not_print(cci, capsys, caplog):
    seen: list[int] = []
    arr = np.arange(1000.0).reshape(10, 100)
    with caplog.at_level(logging.INFO, logger="cottoncandy"):
        cci.upload_dask_array("p", arr, buffersize=10 * 8 * 30, progress=seen.append)
        cci.upload_dask_array("q", da.from_array(arr, chunks=5), buffersize=10 * 8 * 30, progress=seen.append)
    assert sum(seen) == 2 * arr.nbytes
    assert capsys.readouterr() == ("", "")
    assert any("4 parts" in rec.getMessage() for rec in caplog.records)


def test_errors(cci):
    with pytest.raises(ObjectNotFoundError):
        cci.download_dask_array("missing")
    with pytest.raises(ValueError):
        cci.upload_dask_array("bad", np.ones(4), buffersize=0)
    with pytest.raises(ValueError):
        cci.upload_dask_array("bad", np.ones(4), axis=3)
    with pytest.raises(ValueError, match="unknown chunk"):
        x = da.from_array(np.arange(10), chunks=5)
        cci.upload_dask_array("bad", x[x > 3])
    cci.upload_object("broken/metadata.json", b'{"shape": [4], "dtype": "<f8", "dask": [], "chunks": [[4]]}')
    with pytest.raises(ArrayFormatError):
        cci.download_dask_array("broken")


# -- golden and laziness ------------------------------------------------------------


def test_golden_volume_with_trailing_empty_chunk(cci, backend):
    put_golden(backend, "dask")
    lazy = cci.download_dask_array("dask/volume")
    assert lazy.chunks == ((64,), (64,), (1280, 220, 0))
    assert lazy.dtype == np.uint8
    assert sha(lazy.compute()) == golden_sha("dask/volume")


def test_lazy_slice_reads_only_touched_parts(backend):
    put_golden(backend, "dask")
    counting = CountingBackend(backend)
    cci = Interface(counting)
    lazy = cci.download_dask_array("dask/volume")
    assert counting.keys_read() == {"dask/volume/metadata.json"}
    full = Interface(backend).download_dask_array("dask/volume").compute()

    counting.reads.clear()
    np.testing.assert_array_equal(lazy[..., :200].compute(), full[..., :200])
    assert counting.keys_read() == {"dask/volume/pt0000"}
    assert len(counting.reads) == 1

    counting.reads.clear()
    np.testing.assert_array_equal(lazy[3, 5, 1300:1450].compute(), full[3, 5, 1300:1450])
    assert counting.keys_read() == {"dask/volume/pt0001"}

    counting.reads.clear()
    lazy.compute()
    assert counting.keys_read() == {"dask/volume/pt0000", "dask/volume/pt0001"}  # never the empty part


@pytest.mark.parametrize(
    "index",
    [
        (Ellipsis, slice(None, 200)),
        (1, slice(None, None, -3)),
        (slice(2, 9, 2), [4, 1, 24]),
        (None, 3, Ellipsis, -1),
        (np.array([True, False] * 10), 4),
        (slice(5, 5),),
        (-1, slice(-10, -2), slice(None, None, -1)),
    ],
)
def test_box_index_matches_numpy(index):
    arr = np.arange(20 * 30 * 50).reshape(20, 30, 50)
    box, post = box_index(index, arr.shape)
    np.testing.assert_array_equal(arr[box][post], arr[index])


def test_open_dask_array_uses_ranged_reads(backend):
    counting = CountingBackend(backend)
    cci = Interface(counting)
    arr = np.arange(100 * 1000, dtype="<f8").reshape(100, 1000)
    cci.upload_raw_array("raw/plain", arr, compression=False)
    lazy = cci.open_dask_array("raw/plain", chunks=(10, 1000))
    counting.reads.clear()
    np.testing.assert_array_equal(lazy[20:30].compute(), arr[20:30])
    assert counting.reads == [("raw/plain", 20 * 1000 * 8, 10 * 1000 * 8)]

    counting.reads.clear()
    np.testing.assert_array_equal(lazy[42, 7:9].compute(), arr[42, 7:9])
    assert sum(n for _, _, n in counting.reads) <= 1000 * 8

    blocky = cci.open_dask_array("raw/plain", chunks=(7, 300))
    np.testing.assert_array_equal(blocky.compute(), arr)
    np.testing.assert_array_equal(cci.open_dask_array("raw/plain").compute(), arr)


def test_open_dask_array_fortran_body_and_errors(cci, backend):
    arr = np.arange(24, dtype=">i4").reshape(4, 6)
    backend.write("f_order", np.asfortranarray(arr).T.tobytes(),
                  {"dtype": ">i4", "shape": "4,6", "compression": "False", "order": "F"})
    lazy = cci.open_dask_array("f_order", chunks=(3, 4))
    np.testing.assert_array_equal(lazy.compute(), arr)
    np.testing.assert_array_equal(lazy[1:3, 2:5].compute(), arr[1:3, 2:5])
    cci.upload_raw_array("zipped", arr, compression="gzip")
    with pytest.raises(ValueError, match="compressed"):
        cci.open_dask_array("zipped")
    backend.write("short", b"\0" * 10, {"dtype": "<f8", "shape": "4", "compression": "False"})
    with pytest.raises(ArrayFormatError):
        cci.open_dask_array("short")


# -- pickling and distributed ---------------------------------------------------------


def test_graph_pickles_without_a_live_client(cci, backend):
    put_golden(backend, "dask")
    lazy = cci.download_dask_array("dask/volume")[..., 100:300]
    restored = pickle.loads(pickle.dumps(lazy))
    assert sha(restored.compute()) == sha(lazy.compute())
    if hasattr(backend, "client"):
        assert b"botocore" not in pickle.dumps(lazy)


@pytest.fixture(scope="module")
def cluster():
    import distributed

    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, silence_logs=logging.WARNING) as cluster:
        yield cluster


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_distributed_cluster(cci, backend, cluster):
    from distributed import Client

    put_golden(backend, "dask")
    arr = np.arange(30 * 40, dtype="<f4").reshape(30, 40)
    cci.upload_raw_array("flat", arr, compression=False)
    with Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        volume = cci.download_dask_array("dask/volume")
        expected = Interface(backend).download_dask_array("dask/volume").compute(scheduler="threads")
        assert int(volume.sum(dtype=np.int64).compute()) == int(expected.sum(dtype=np.int64))
        np.testing.assert_array_equal(volume[..., 1270:1290].compute(), expected[..., 1270:1290])
        np.testing.assert_array_equal(cci.open_dask_array("flat", chunks=(7, 40)).compute(), arr)
        # workers write the parts of a dask array themselves
        cci.upload_dask_array("from_workers", da.from_array(arr, chunks=(5, 40)) + 1, axis=0,
                              buffersize=40 * 4 * 10)
    np.testing.assert_array_equal(cci.download_dask_array("from_workers").compute(scheduler="threads"), arr + 1)
