"""Parsing and writing of dask and sparse manifests (0.4.0 layout)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cottoncandy.errors import ArrayFormatError
from cottoncandy.format.manifests import (dask_manifest_json, is_dask_manifest, is_sparse_manifest, parse_dask_manifest,
                                   parse_sparse_manifest, part_key, sparse_manifest_json)

from .golden import GOLDEN_DIR

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
