"""Sparse matrices and dict2cloud / cloud2dict groups, in cottoncandy 0.4.0's layout."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import scipy.sparse as sp

from cottoncandy.errors import ArrayFormatError, ObjectNotFoundError  # noqa: E402
from cottoncandy.extensions.browser import Directory  # noqa: E402

from .helpers import MANIFEST, put_golden, sha256  # noqa: E402


def dense(rng, shape=(12, 9), density=0.3):
    out = rng.random(shape)
    out[rng.random(shape) > density] = 0
    return out


LAYOUT = {
    "csr": ["data", "indices", "indptr"],
    "csc": ["data", "indices", "indptr"],
    "bsr": ["data", "indices", "indptr"],
    "coo": ["row", "col", "data"],
    "dia": ["data", "offsets"],
}


# -- sparse -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "bsr", "dia", "lil", "dok"])
def test_sparse_roundtrip_and_layout(cci, fmt):
    matrix = sp.csr_matrix(dense(np.random.default_rng(1))).asformat(fmt)
    if fmt == "bsr":
        matrix = sp.bsr_matrix(matrix.toarray(), blocksize=(3, 3))
    cci.upload_sparse_array("mats/m", matrix)
    stored = "csr" if fmt in ("lil", "dok") else fmt
    manifest = json.loads(cci.download_object("mats/m/metadata.json"))
    assert manifest == {"type": stored, "attrs": LAYOUT[stored], "shape": [12, 9]}
    assert cci.glob("mats/m/*") == sorted(["mats/m/metadata.json"] + [f"mats/m/{a}" for a in LAYOUT[stored]])
    for attr in LAYOUT[stored]:
        np.testing.assert_array_equal(cci.download_raw_array(f"mats/m/{attr}"), getattr(matrix.asformat(stored), attr))
    out = cci.download_sparse_array("mats/m")
    assert out.format == stored and sp.issparse(out)
    np.testing.assert_array_equal(out.toarray(), matrix.toarray())
    if fmt == "bsr":
        assert out.blocksize == (3, 3)


def test_sparse_overwrite_with_another_format(cci):
    matrix = sp.random(20, 10, density=0.2, format="csr", random_state=3)
    cci.upload_sparse_array("m", matrix)
    cci.upload_sparse_array("m", matrix.tocoo())
    assert cci.glob("m/*") == ["m/col", "m/data", "m/metadata.json", "m/row"]
    np.testing.assert_array_equal(cci.download_sparse_array("m").toarray(), matrix.toarray())


@pytest.mark.parametrize("fmt", ["csr", "coo", "csc"])
def test_sparse_golden(cci, backend, fmt):
    put_golden(backend, "sparse")
    out = cci.download_sparse_array(f"sparse/{fmt}")
    assert out.format == fmt and out.shape == (40, 30)
    digest = sha256(out.toarray())
    assert digest == MANIFEST[f"sparse/{fmt}"]["sha256"]


def test_sparse_errors(cci):
    with pytest.raises(TypeError):
        cci.upload_sparse_array("x", np.eye(3))
    with pytest.raises(ObjectNotFoundError):
        cci.download_sparse_array("missing")
    cci.upload_object("bad/metadata.json", b'{"type": "csr", "attrs": ["data"], "shape": [3, 3]}')
    with pytest.raises(ArrayFormatError):
        cci.download_sparse_array("bad")


# -- dict2cloud / cloud2dict ---------------------------------------------------------------


def sample_dict():
    rng = np.random.default_rng(7)
    return {
        "image": rng.random((5, 6)).astype("<f4"),
        "labels": np.array(["a", "bb", "ccc"]),
        "scalar": 3,
        "nested": {"weights": rng.random(4), "deeper": {"flag": np.array([True, False])}},
    }


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, dict):
            assert_same(value, b[key])
        else:
            np.testing.assert_array_equal(b[key], np.asarray(value))
            assert b[key].dtype == np.asarray(value).dtype


def test_dict_roundtrip_and_layout(cci):
    data = sample_dict()
    cci.dict2cloud("exp/s1.grp", data)
    assert cci.glob("exp/s1.grp/**") == [
        "exp/s1.grp/image", "exp/s1.grp/labels", "exp/s1.grp/nested/deeper/flag",
        "exp/s1.grp/nested/weights", "exp/s1.grp/scalar",
    ]  # one raw array per leaf, no index object
    np.testing.assert_array_equal(cci.download_raw_array("exp/s1.grp/nested/weights"), data["nested"]["weights"])
    assert_same(data, cci.cloud2dict("exp/s1.grp"))


def test_cloud2dict_keys(cci):
    data = sample_dict()
    cci.dict2cloud("g", data)
    only = cci.cloud2dict("g", keys="image")
    assert list(only) == ["image"]
    picked = cci.cloud2dict("g", keys=["nested", "scalar", "nested/weights"])
    assert list(picked) == ["nested", "scalar", "nested/weights"]
    assert_same(data["nested"], picked["nested"])
    np.testing.assert_array_equal(picked["nested/weights"], data["nested"]["weights"])
    with pytest.raises(ObjectNotFoundError):
        cci.cloud2dict("g", keys=["nope"])
    with pytest.raises(ObjectNotFoundError):
        cci.cloud2dict("nothing/here")


def test_dict2cloud_metadata_and_compression(cci, backend):
    cci.dict2cloud("m", {"a": np.arange(10), "b": [1, 2]}, compression="False", subject="S01")
    meta_a = backend.head("m/a").metadata
    assert meta_a["compression"] == "False" and meta_a["subject"] == "S01"
    assert "subject" not in backend.head("m/b").metadata  # non-ndarray leaves get no user metadata, as in 0.4.0
    with pytest.raises(ValueError):
        cci.dict2cloud("m", {"a/b": np.ones(2)})


def test_cloud2dict_special_children(cci, caplog):
    cci.dict2cloud("mix", {"x": np.ones(3)})
    cci.upload_json("mix/info.json", {"k": 1})
    cci.upload_dask_array("mix/vol", np.arange(12.0).reshape(3, 4), buffersize=3 * 8)
    matrix = sp.random(5, 5, density=0.4, format="csr", random_state=1)
    cci.upload_sparse_array("mix/sparse", matrix)
    out = cci.cloud2dict("mix")
    assert set(out) == {"x", "info.json", "vol", "sparse"}
    assert out["info.json"] is None  # not a raw array: None with a warning, like 0.4.0
    assert any("info.json" in rec.getMessage() for rec in caplog.records)
    np.testing.assert_array_equal(out["vol"], np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(out["sparse"].toarray(), matrix.toarray())


def test_cloud2dict_golden_group(cci, backend):
    put_golden(backend, "project")
    out = cci.cloud2dict("project/sub01_analysis.grp")
    assert set(out) == {"image_data", "text_data", "nested"}
    for key, value in [("image_data", out["image_data"]), ("text_data", out["text_data"]),
                       ("nested/weights", out["nested"]["weights"])]:
        entry = MANIFEST[f"project/sub01_analysis.grp/{key}"]
        assert value.dtype.str == entry["dtype"] and list(value.shape) == entry["shape"]
        assert hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest() == entry["sha256"]


def test_cloud2dataset(cci):
    cci.dict2cloud("ds/a.grp", {"x": np.ones(2)})
    browser = cci.cloud2dataset("ds")
    assert isinstance(browser, Directory)
    assert browser._fullpath == "ds"
    np.testing.assert_array_equal(browser.a_DOT_grp.load("x"), np.ones(2))
