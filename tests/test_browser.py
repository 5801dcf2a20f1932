"""The tab-completion browser: 0.4.0 attribute names, reprs, groups and datasets."""

from __future__ import annotations

import numpy as np
import pytest

import cottoncandy
from cottoncandy.extensions.browser import Directory, Group, ObjectNode, attribute_name

from .helpers import MANIFEST, put_golden


@pytest.fixture
def golden(cci, backend):
    put_golden(backend)
    return cci


@pytest.mark.parametrize(
    "name, attr",
    [
        ("sub01_analysis.grp", "sub01_analysis_DOT_grp"),
        ("n.npy", "n_DOT_npy"),
        ("a.b.c", "a.b_DOT_c"),
        (".hidden", ".hidden"),
        ("01-run", "NUM_01_run"),
        ("2.npy", "NUM_2_DOT_npy"),
        ("my-data.tar-gz", "my_data_DOT_tar_gz"),
        ("plain", "plain"),
    ],
)
def test_attribute_names(name, attr):
    assert attribute_name(name) == attr


def test_navigation_and_dir(golden):
    root = golden.get_browser()
    assert isinstance(root, Directory) and root._fullpath == ""
    assert dir(root) == ["dask", "misc", "project", "raw", "sparse"]
    assert root._ls() == dir(root)
    assert dir(root.misc) == ["info_DOT_json", "plain_DOT_npy"]
    group = root.project.sub01_analysis_DOT_grp
    assert isinstance(group, Group)
    assert group._fullpath == "project/sub01_analysis.grp"
    assert dir(group) == ["image_data", "keys", "load", "nested", "text_data"]  # dir() sorts
    assert group.keys() == ["image_data", "nested", "text_data"]
    assert len(group) == 3
    assert isinstance(group.nested, Group)  # below a .grp, directories are groups too
    assert group.nested.weights._fullpath == "project/sub01_analysis.grp/nested/weights"
    assert getattr(root.project, "sub01_analysis.grp")._fullpath == group._fullpath  # real names work too
    assert root["project"]._fullpath == "project"


def test_unknown_attribute_is_attribute_error(golden):
    root = golden.get_browser()
    with pytest.raises(AttributeError):
        root.nonexistent
    assert not hasattr(root.project, "sub02")
    assert not hasattr(root, "__array__")
    with pytest.raises(KeyError):
        root["nope"]


def test_reprs(golden):
    root = golden.get_browser()
    bucket = golden.bucket_name
    assert repr(root) == f"cottoncandy-path <bucket:{bucket}> "
    assert repr(root.project) == f"cottoncandy-path <bucket:{bucket}> project"
    group = root.project.sub01_analysis_DOT_grp
    assert repr(group) == f"<cottoncandy-group <bucket:{bucket}> (sub01_analysis.grp: 3 keys)>"
    size = golden.get_size("project/sub01_analysis.grp/image_data") / 2**20
    assert repr(group.image_data) == f"cottoncandy-dataset <bucket:{bucket} [{size:0.01f}MB:shape=(32,32)]>"
    size = golden.get_size("misc/info.json") / 2**20
    assert repr(root.misc.info_DOT_json) == f"cottoncandy-file <bucket:{bucket}> [{size:0.01f}MB]"


def test_load_and_glob(golden):
    group = golden.get_browser().project.sub01_analysis_DOT_grp
    image = group.load("image_data")
    entry = MANIFEST["project/sub01_analysis.grp/image_data"]
    assert image.dtype.str == entry["dtype"] and list(image.shape) == entry["shape"]
    np.testing.assert_array_equal(group.image_data.load(), image)
    np.testing.assert_array_equal(group.load("text_data"), ["alpha", "beta", "gamma"])
    with pytest.raises(ValueError):
        group.load("nope")
    with pytest.raises(ValueError):
        group.load("nested")  # a plain sub-directory
    assert group._glob() == [
        "project/sub01_analysis.grp/image_data",
        "project/sub01_analysis.grp/nested/weights",
        "project/sub01_analysis.grp/text_data",
    ]
    assert group._glob("*_data") == ["project/sub01_analysis.grp/image_data", "project/sub01_analysis.grp/text_data"]


def test_group_loads_dask_and_sparse(cci):
    import scipy.sparse as sp
    cci.upload_dask_array("exp.grp/vol", np.arange(20.0).reshape(4, 5), buffersize=4 * 8)
    cci.upload_sparse_array("exp.grp/mat", sp.eye(4, format="csr"))
    group = cci.get_browser().exp_DOT_grp
    np.testing.assert_array_equal(group.load("vol").compute(), np.arange(20.0).reshape(4, 5))
    np.testing.assert_array_equal(group.load("mat").toarray(), np.eye(4))


def test_no_prints_and_lazy_listing(golden, capsys):
    root = golden.get_browser()
    repr(root.project.sub01_analysis_DOT_grp.image_data)
    dir(root.raw)
    assert capsys.readouterr() == ("", "")


def test_colliding_names_keep_the_first(cci):
    cci.upload_raw_array("c/a-b", np.ones(1))
    cci.upload_raw_array("c/a_b", np.zeros(1))
    node = cci.get_browser().c
    assert dir(node) == ["a_b"]
    assert node.a_b._fullpath == "c/a-b"
    assert getattr(node, "a_b")._fullpath == "c/a-b"


def test_top_level_get_browser_local(tmp_path):
    store = tmp_path / "store"
    cci = cottoncandy.get_interface(str(store), backend="local", force_bucket_creation=True, verbose=False)
    cci.upload_raw_array("1st-run/data.grp/x", np.arange(3))
    browser = cottoncandy.get_browser(str(store), backend="local")
    node = browser.NUM_1st_run.data_DOT_grp.x
    assert isinstance(node, ObjectNode)
    np.testing.assert_array_equal(node.load(), np.arange(3))


def test_top_level_get_browser_s3(rclone_server):
    from .conftest import drop_bucket, new_bucket

    bucket = new_bucket(rclone_server)
    try:
        cci = cottoncandy.get_interface(bucket, rclone_server.access_key, rclone_server.secret_key,
                                        rclone_server.endpoint_url, verbose=False)
        cci.upload_raw_array("a.grp/y", np.arange(4.0))
        browser = cottoncandy.get_browser(bucket, rclone_server.access_key, rclone_server.secret_key,
                                          rclone_server.endpoint_url)
        assert browser.a_DOT_grp.keys() == ["y"]
        assert "shape=(4)" in repr(browser.a_DOT_grp.y)
        np.testing.assert_array_equal(browser.a_DOT_grp.load("y"), np.arange(4.0))
    finally:
        drop_bucket(rclone_server, bucket)
