"""Data written by cottoncandy 0.4.0 reads back exactly, from a local store and from S3."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cottoncandy.backends.local import LocalBackend
from cottoncandy.interface import Interface

from .conftest import S3_SERVERS, drop_bucket, make_s3_backend, new_bucket
from .helpers import MANIFEST, golden_entries, require_golden
from .helpers import sha256 as _sha256
from .servers import upload_local_layout


@pytest.fixture(scope="module", params=("local",) + S3_SERVERS)
def golden(request):
    """An Interface over the golden store: the directory itself, or a copy uploaded to each S3 server.

    The upload turns each ``.meta.json`` sidecar into the object's user metadata,
    as a 0.4.0 user's S3 bucket holds it (rclone returns the keys capitalised).
    """
    root = require_golden()
    if request.param == "local":
        yield Interface(LocalBackend(root))
        return
    server = request.getfixturevalue(f"{request.param}_server")
    bucket = new_bucket(server)
    upload_local_layout(server.client(), bucket, root)
    cci = Interface(make_s3_backend(server, bucket))
    yield cci
    cci.backend.close()
    drop_bucket(server, bucket)


@pytest.mark.parametrize("key", [key for key, _ in golden_entries("raw")])
def test_raw_arrays(golden, key):
    entry = MANIFEST[key]
    arr = golden.download_raw_array(key)
    assert arr.dtype == np.dtype(entry["dtype"])
    assert list(arr.shape) == entry["shape"]
    assert _sha256(arr) == entry["sha256"]


def test_npy_and_json(golden):
    npy = golden.download_npy_array("misc/plain.npy")
    assert _sha256(npy) == MANIFEST["misc/plain.npy"]["sha256"]
    assert golden.download_json("misc/info.json") == MANIFEST["misc/info.json"]["value"]


def test_listing_hides_sidecars(golden):
    assert golden.lsdir("project/sub01_analysis.grp") == [
        "project/sub01_analysis.grp/image_data",
        "project/sub01_analysis.grp/nested",
        "project/sub01_analysis.grp/text_data",
    ]
    assert golden.glob("project/*/image_data") == ["project/sub01_analysis.grp/image_data"]
    assert not any(k.endswith(".meta.json") for k in golden.glob("**"))


def test_written_here_reads_like_040_layout(tmp_path):
    """What we write on the local backend has 0.4.0's layout: body file + JSON sidecar."""
    cci = Interface(LocalBackend(tmp_path))
    arr = np.arange(6, dtype=">i2").reshape(2, 3)
    cci.upload_raw_array("g/x", arr, compression="gzip")
    sidecar = json.loads((tmp_path / "g" / "x.meta.json").read_text())
    assert sidecar == {"dtype": ">i2", "shape": "2,3", "compression": "gzip", "order": "C"}
    import gzip

    assert gzip.decompress((tmp_path / "g" / "x").read_bytes()) == arr.tobytes()
