"""Parsing and writing of dask and sparse manifests (0.4.0 layout)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cottoncandy.errors import ArrayFormatError
from cottoncandy.format.chunks import ChunkGrid
from cottoncandy.format.compression import stored_compression
from cottoncandy.format.manifests import (MAX_MANIFEST_BYTES, DaskManifest, SparseManifest, classify, dask_manifest_json,
                                          is_dask_manifest, is_sparse_manifest, manifest_key, may_be_manifest,
                                          parse_dask_manifest, parse_sparse_manifest, part_key, sparse_manifest_json)
from cottoncandy.format.sparse import assemble_sparse

from .helpers import GOLDEN_DIR

GOLDEN_DASK = (GOLDEN_DIR / "dask" / "volume" / "metadata.json").read_bytes()


def test_golden_dask_manifest():
    m = parse_dask_manifest(GOLDEN_DASK, "dask/volume/metadata.json")
    assert m.shape == (64, 64, 1500) and m.dtype == np.dtype("u1")
    assert m.chunks == ((64,), (64,), (1280, 220, 0))
    assert m.parts[(0, 0, 2)] == "dask/volume/pt0002"
    assert m.offsets(2) == (0, 1280, 1500, 1500)
    assert m.chunk_offset((0, 0, 1)) == (0, 0, 1280) and m.chunk_shape((0, 0, 1)) == (64, 64, 220)
    assert m.chunk_slices((0, 0, 1))[2] == slice(1280, 1500)
    assert m.chunk_along(2, 1280) == 1 and m.chunk_along(2, 1499) == 1
    assert set(m.nonempty_parts()) == {(0, 0, 0), (0, 0, 1)}
    assert [i for i, _ in m.iter_chunks()] == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    assert m.nbytes == 64 * 64 * 1500
    assert is_dask_manifest(json.loads(GOLDEN_DASK)) and not is_sparse_manifest(json.loads(GOLDEN_DASK))


def test_writer_reproduces_040_bytes():
    m = parse_dask_manifest(GOLDEN_DASK, "k")
    assert dask_manifest_json(m.shape, m.dtype, m.chunks, m.parts) == GOLDEN_DASK
    assert part_key("dask/volume/", 2) == "dask/volume/pt0002"


def _mutate(**changes) -> bytes:
    obj = json.loads(GOLDEN_DASK)
    for field, value in changes.items():
        if value is None:
            del obj[field]
        else:
            obj[field] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize("body", [
    b"{not json",
    b"[1, 2]",
    _mutate(shape=None),
    _mutate(dask=None),
    _mutate(chunks=[[64], [64], [1280, 219, 0]]),  # does not sum to the shape
    _mutate(chunks=[[64], [64]]),
    _mutate(shape=[64, 64, -1]),
    _mutate(dtype="not-a-dtype"),
    _mutate(dtype="O"),
    _mutate(dask=[[[0, 0, 0], "a"], [[0, 0, 1], "b"]]),  # chunk (0,0,2) has no part
    _mutate(dask=[[[0, 0, 0], "a"], [[0, 0, 0], "b"], [[0, 0, 2], "c"]]),  # listed twice
    _mutate(dask=[[[0, 0, 0], "a"], [[0, 0, 1], "b"], [[0, 0, 3], "c"]]),  # outside the grid
    _mutate(dask=[[[0, 0, 0], "a"], [[0, 0, 1], 5], [[0, 0, 2], "c"]]),
    _mutate(chunk_sizes=[[64, 64, 1280], [64, 64, 221], [64, 64, 0]]),
])
def test_bad_dask_manifests_are_format_errors(body):
    with pytest.raises(ArrayFormatError) as info:
        parse_dask_manifest(body, "x/metadata.json")
    assert "x/metadata.json" in str(info.value) and info.value.key == "x/metadata.json"


def test_sparse_manifests():
    for kind in ("coo", "csc", "csr"):
        key = f"sparse/{kind}/metadata.json"
        m = parse_sparse_manifest((GOLDEN_DIR / "sparse" / kind / "metadata.json").read_bytes(), key)
        assert m.type == kind and m.shape == (40, 30) and m.prefix == f"sparse/{kind}"
        assert m.attr_key(m.attrs[0]) == f"sparse/{kind}/{m.attrs[0]}"
    body = sparse_manifest_json("csr", ["data", "indices", "indptr"], (3, 4))
    assert json.loads(body) == {"type": "csr", "attrs": ["data", "indices", "indptr"], "shape": [3, 4]}
    assert is_sparse_manifest(json.loads(body)) and not is_dask_manifest(json.loads(body))
    for bad in (b'{"type": "xyz", "attrs": ["a"], "shape": [1, 2]}',
                b'{"type": "csr", "attrs": ["../a"], "shape": [1, 2]}',
                b'{"type": "csr", "attrs": ["a"], "shape": [1, 2, 3]}',
                b'{"type": "csr", "shape": [1, 2]}'):
        with pytest.raises(ArrayFormatError, match="s/metadata.json"):
            parse_sparse_manifest(bad, "s/metadata.json")


# -- one home for what the API and the mount both decide --------------------------------


def test_classify_and_may_be_manifest():
    assert manifest_key("a/b") == manifest_key("a/b/") == "a/b/metadata.json"
    assert isinstance(classify(GOLDEN_DASK, "k"), DaskManifest)
    sparse = sparse_manifest_json("coo", ["row", "col", "data"], (2, 2))
    assert isinstance(classify(sparse, "k"), SparseManifest)
    assert isinstance(classify(json.loads(sparse), "k"), SparseManifest)  # a body already decoded
    for plain in (None, b"\xff\xfe not json", b"[1, 2]", b'{"note": "a directory"}'):
        assert classify(plain, "k") is None
    with pytest.raises(ArrayFormatError, match="k"):  # claims to be a dask manifest, is not a valid one
        classify(b'{"shape": [4], "dtype": "<f8", "dask": [], "chunks": [[4]]}', "k")
    assert may_be_manifest(100, {}) and may_be_manifest(MAX_MANIFEST_BYTES, None)
    assert not may_be_manifest(MAX_MANIFEST_BYTES + 1, {})
    assert not may_be_manifest(100, {"Dtype": "<f8", "Shape": "3"})  # a raw array named metadata.json


def test_chunks_touching_skips_empty_chunks():
    grid = ChunkGrid(((2, 0, 3), (4,), (1, 1, 0)))
    assert grid.chunk_range(0, 0, 5) == range(0, 3)  # the empty chunk between is in the range...
    assert grid.chunks_touching((slice(0, 5), slice(0, 4), slice(0, 2))) == [  # ...but holds nothing to read
        (0, 0, 0), (0, 0, 1), (2, 0, 0), (2, 0, 1)]
    assert grid.chunks_touching((slice(2, 3), slice(1, 2), slice(1, 2))) == [(2, 0, 1)]
    assert grid.chunk_range(2, 1, 2) == range(1, 2)
    m = parse_dask_manifest(GOLDEN_DASK, "v/metadata.json")
    assert m.chunks_touching((slice(0, 1), slice(0, 64), slice(1279, 1281))) == [(0, 0, 0), (0, 0, 1)]
    m.check_part((0, 0, 1), np.dtype("u1"), (64, 64, 220))
    with pytest.raises(ArrayFormatError, match="dask/volume/pt0001.*v/metadata.json"):
        m.check_part((0, 0, 1), np.dtype("u1"), (64, 64, 219))
    with pytest.raises(ArrayFormatError, match="<f8"):
        m.check_part((0, 0, 1), np.dtype("<f8"), (64, 64, 220))


def test_stored_compression_never_raises():
    assert stored_compression({"Gzip": "True", "Compression": "Zstd"}) == "gzip"  # the legacy flag wins
    assert stored_compression({"gzip": "0"}) == "False"
    assert stored_compression({"gzip": "maybe"}) == "maybe"  # unreadable: shown as stored, never "False"
    assert stored_compression({"compression": "Zstd"}) == "Zstd"
    assert stored_compression(None) == "False"


def test_assemble_sparse():
    import scipy.sparse as sp
    manifest = parse_sparse_manifest(sparse_manifest_json("coo", ["row", "col", "data"], (2, 3)), "m/metadata.json")
    assert manifest.part_keys() == {"row": "m/row", "col": "m/col", "data": "m/data"}
    parts = {"row": np.array([0, 1]), "col": np.array([2, 0]), "data": np.array([5.0, 7.0])}
    matrix = assemble_sparse(manifest, parts)
    assert isinstance(matrix, sp.coo_matrix) and matrix.toarray().tolist() == [[0, 0, 5.0], [7.0, 0, 0]]
    with pytest.raises(ArrayFormatError, match="m/metadata.json"):
        assemble_sparse(manifest, {**parts, "col": np.array([2, 0, 1])})
    with pytest.raises(ArrayFormatError, match="needs attrs"):
        parse_sparse_manifest(b'{"type": "csr", "attrs": ["data"], "shape": [3, 3]}', "b").part_keys()
