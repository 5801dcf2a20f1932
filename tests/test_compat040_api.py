"""cottoncandy 0.4.0's lower-level methods, and 0.4.0-style scripts run unchanged (issue 9, points 7, 8).

On S3 the methods hand out boto3 resource objects, as 0.4.0 did; on a local
store, objects with the attributes scripts read of them. The scripts in
``tests/scripts040/`` are written against 0.4.0's README and docstrings
(and pass under cottoncandy 0.4.0 itself); they run here on a local store and
on both S3 servers, with keys where a 0.4.0 user keeps them.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import cottoncandy as cc
from cottoncandy.format.arrays import encode_array
from cottoncandy.format.compression import DEFAULT_COMPRESSION
from tests.home040 import make_home

SCRIPTS = Path(__file__).parent / "scripts040"
KEYS = ["data/a", "data/sub/b", "notes.txt"]


@pytest.fixture
def cci(cci):
    """The Interface of conftest's ``cci``, holding the objects :data:`KEYS`."""
    interface = cci
    for i, key in enumerate(KEYS):
        interface.upload_object(key, b"x" * (i + 1) * 100)
    return interface


def is_s3(cci) -> bool:
    return type(cci.backend).__name__ == "S3Backend"


def test_get_objects_and_get_bucket(cci):
    objects = list(cci.get_objects())
    assert [o.key for o in objects] == KEYS
    assert [o.size for o in objects] == [100, 200, 300]
    assert all(isinstance(o.last_modified, datetime) and o.last_modified.tzinfo is not None for o in objects)
    assert all(o.e_tag.strip('"') for o in objects)
    assert [o.key for o in cci.get_objects(filter=dict(Prefix="data/"))] == ["data/a", "data/sub/b"]
    assert [o.key for o in cci.get_objects(filter=dict(Prefix="/data/sub"))] == ["data/sub/b"]
    assert [o.key for o in cci.get_objects(limit=2)] == KEYS[:2]
    bucket = cci.get_bucket()
    assert bucket.name == cci.bucket_name
    assert [o.key for o in bucket.objects.filter(Prefix="data/").limit(1)] == ["data/a"]
    assert [o.key for o in bucket.objects.all()] == KEYS
    with pytest.deprecated_call():
        assert [o.key for o in cci.get_bucket_objects(filter=dict(Prefix="notes"))] == ["notes.txt"]
    with pytest.deprecated_call():
        assert cci.get_bucket_size() == 600
    assert cci.get_size() == 600


def test_get_object(cci):
    obj = cci.get_object("/data/sub/b")
    assert obj.key == "data/sub/b" and obj.content_length == 200
    cci.upload_raw_array("arr", np.arange(3), compression=False)
    assert {k.lower(): v for k, v in cci.get_object("arr").metadata.items()}["dtype"] == "<i8"
    if is_s3(cci):
        assert type(obj).__name__ == "s3.Object"  # the boto3 resource object 0.4.0 returned
        assert obj.get()["Body"].read() == b"x" * 200
    else:
        with pytest.raises(cc.ObjectNotFoundError):
            cci.get_object("missing")


def test_get_object_owner(cci, kind):
    if kind == "rclone":  # rclone serves no ACLs: 0.4.0 fell back on s3cmd's metadata
        cci.upload_object("s3cmd", b"1", **{"s3cmd-attrs": "uid:1000/gname:lab/uname:alice"})
        assert cci.get_object_owner("s3cmd") == {"uid": "1000", "gname": "lab", "uname": "alice"}
        with pytest.raises(cc.CottonCandyError):
            cci.get_object_owner("notes.txt")
    else:
        owner = cci.get_object_owner("notes.txt")
        assert owner["ID"] and owner["DisplayName"]
    with pytest.raises(cc.ObjectNotFoundError):
        cci.get_object_owner("missing")


@pytest.fixture
def kind(request) -> str:
    """Which backend the test runs on: 'local', 'rclone' or 'moto'."""
    return request.node.callspec.params["backend"]


def test_show_objects_and_glob_s3(cci):
    lines = cci.show_objects()
    assert len(lines) == 3 and all(key in line for key, line in zip(KEYS, lines))
    assert lines[2].endswith("0.0M")
    assert cci.glob_s3("data/*") == cci.glob("data/*") == ["data/a"]
    assert cci.glob_s3("data") == ["data/a", "data/sub/b"]


def test_backend_interface(cci):
    legacy = cci.backend_interface
    assert legacy.bucket_name == cci.bucket_name
    assert legacy.check_file_exists("notes.txt") and not legacy.check_file_exists("data")
    assert legacy.size == 600
    if is_s3(cci):
        assert type(legacy.connection).__name__ == "s3.ServiceResource"
        assert legacy.url == cci.backend.credentials.endpoint_url
        assert legacy.connection.Object(cci.bucket_name, "notes.txt").content_length == 300
    else:
        assert legacy.path == cci.bucket_name


# -- point 8: compression=True means the default codec everywhere --------------------------
def test_compression_true_is_one_thing_everywhere(cci):
    arr = np.linspace(0, 1, 1000)
    _, metadata = encode_array(arr, True)
    cci.upload_raw_array("up", arr, compression=True)
    cci.dict2cloud("grp", {"leaf": arr}, compression=True)
    cci.dict2cloud("grp_default", {"leaf": arr})
    stored = {k: cci.backend.head(k).metadata["compression"] for k in ("up", "grp/leaf", "grp_default/leaf")}
    assert metadata["compression"] == DEFAULT_COMPRESSION
    assert stored == dict.fromkeys(stored, DEFAULT_COMPRESSION)
    cci.dict2cloud("grp_raw", {"leaf": arr}, compression=False)
    assert cci.backend.head("grp_raw/leaf").metadata["compression"] == "False"
    with pytest.deprecated_call():  # 0.4.0's legacy keyword
        cci.upload_raw_array("old", arr, gzip=True)
    assert cci.backend.head("old").metadata["compression"] == "gzip"
    for key in ("up", "grp/leaf", "old"):
        np.testing.assert_array_equal(cci.download_raw_array(key), arr)


# -- scripts written for 0.4.0, run unchanged ----------------------------------------------
def run_script(name: str, home, *args: str) -> str:
    env = home.mount_environ()
    result = subprocess.run([sys.executable, str(SCRIPTS / name), *args], env=env, capture_output=True,
                            text=True, timeout=300, cwd=home.path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_040_script_on_a_local_store(tmp_path, script):
    home = make_home(tmp_path / "home")
    store = tmp_path / "store" / "not-there-yet"
    out = run_script(script, home, str(store), "local")
    assert out.rstrip().endswith("done") and store.is_dir()


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_040_script_on_s3(s3_server, bucket_name, tmp_path, script):
    home = make_home(tmp_path / "home")
    home.install_options(endpoint_url=s3_server.endpoint_url)  # keys: s3fs-fuse's file, as many had
    home.write_passwd(f"{s3_server.access_key}:{s3_server.secret_key}\n")
    out = run_script(script, home, bucket_name, "s3")
    assert out.rstrip().endswith("done")
    assert s3_server.client().list_objects_v2(Bucket=bucket_name)["KeyCount"] > 0
