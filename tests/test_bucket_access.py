"""Object-only permissions and refused credentials (issue 9, point 4).

A fault proxy in front of rclone and moto plays a bucket policy that grants
``s3:GetObject`` and a ``s3:ListBucket`` conditioned on a prefix, but not
``HeadBucket``: it answers 403 AccessDenied to HeadBucket and to listings
outside ``allowed/``, and forwards everything else. The API and the mount
must work with what is granted; credentials the server refuses must still
fail at once, with a message saying so.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import cottoncandy as cc
from cottoncandy.errors import AccessDeniedError, BucketNotFoundError, CredentialsRefusedError
from tests.conftest import drop_bucket, new_bucket
from tests.faultproxy import FaultProxy, is_head_bucket, list_prefix
from tests.mountutil import MOUNT_TIMEOUT, mount_command, mount_env, mounted

ARRAY = np.arange(1000, dtype="<i4")
META = {"dtype": "<i4", "shape": "1000", "compression": "False", "order": "C"}
ALLOWED = "allowed/"


def head_bucket_only(request) -> bool:
    return is_head_bucket(request)


def object_only_policy(request) -> bool:
    """What a policy with GetObject and ListBucket on ``allowed/*`` refuses."""
    prefix = list_prefix(request)
    return is_head_bucket(request) or (prefix is not None and not prefix.startswith(ALLOWED))


@pytest.fixture
def bucket(s3_server):
    name = new_bucket(s3_server)
    client = s3_server.client()
    for key in ("allowed/run1/data", "secret/data"):
        client.put_object(Bucket=name, Key=key, Body=ARRAY.tobytes(), Metadata=META)
    yield name
    drop_bucket(s3_server, name)


@pytest.fixture
def proxy(s3_server):
    with FaultProxy(s3_server.endpoint_url) as fault_proxy:
        yield fault_proxy


def via_proxy(server, proxy, bucket, **kwargs):
    return cc.get_interface(bucket, ACCESS_KEY=server.access_key, SECRET_KEY=server.secret_key,
                            endpoint_url=proxy.url, verbose=False, max_attempts=2, **kwargs)


def test_403_on_head_bucket_is_not_fatal(s3_server, proxy, bucket):
    proxy.inject("403", count=None, match=head_bucket_only)
    cci = via_proxy(s3_server, proxy, bucket)
    assert proxy.faults["403"] == 1  # the HeadBucket was refused, and the listing told it apart
    assert cci.exists_bucket(bucket)
    np.testing.assert_array_equal(cci.download_raw_array("allowed/run1/data"), ARRAY)
    assert cci.glob("**") == ["allowed/run1/data", "secret/data"]
    cci.set_bucket(bucket)  # 0.4.0 scripts switch buckets: the same check, the same answer


def test_object_only_policy_works_through_the_api(s3_server, proxy, bucket):
    proxy.inject("403", count=None, match=object_only_policy)
    cci = via_proxy(s3_server, proxy, bucket)  # HeadBucket and the root listing refused: accepted
    np.testing.assert_array_equal(cci.download_raw_array("allowed/run1/data"), ARRAY)
    np.testing.assert_array_equal(cci.download_raw_array("secret/data"), ARRAY)  # GetObject is granted
    assert cci.glob("allowed/*/data") == ["allowed/run1/data"]
    with pytest.raises(AccessDeniedError) as info:
        cci.glob("secret/*")
    assert not isinstance(info.value, CredentialsRefusedError)


@pytest.mark.parametrize("prefix", ["allowed", "/allowed/run1/"])
def test_object_only_policy_mounts_the_granted_prefix(s3_server, proxy, bucket, tmp_path, prefix):
    proxy.inject("403", count=None, match=object_only_policy)
    env = mount_env(proxy.url, s3_server.access_key, s3_server.secret_key)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(bucket, mountpoint, ["--prefix", prefix], env) as mount:
        name = "run1/data.npy" if prefix == "allowed" else "data.npy"
        np.testing.assert_array_equal(np.load(mount / name), ARRAY)
    assert proxy.faults["403"] >= 2  # HeadBucket refused in the check and in the mount process


def test_mount_of_a_prefix_that_cannot_be_listed_says_so(s3_server, proxy, bucket, tmp_path):
    proxy.inject("403", count=None, match=object_only_policy)
    env = mount_env(proxy.url, s3_server.access_key, s3_server.secret_key)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = subprocess.run(mount_command(bucket, mountpoint, "--prefix", "secret"), env=env,
                            capture_output=True, text=True, timeout=MOUNT_TIMEOUT)
    assert result.returncode == 2  # a configuration problem, found before mounting
    assert "may not list the prefix" in result.stderr and "AccessDenied" in result.stderr, result.stderr
    assert "credentials refused" not in result.stderr


# -- refused credentials still fail early (rclone checks signatures; moto does not) -------------
@pytest.mark.parametrize("wrong", ["access_key", "secret_key"])
@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "proxy-403-head"])
def test_refused_credentials_fail_at_get_interface(rclone_server, tmp_path, wrong, through_proxy):
    name = new_bucket(rclone_server)
    keys = {"access_key": rclone_server.access_key, "secret_key": rclone_server.secret_key}
    keys[wrong] = "Wrong" + keys[wrong][5:]
    try:
        with FaultProxy(rclone_server.endpoint_url) as proxy:
            proxy.inject("403", count=None, match=head_bucket_only)
            url = proxy.url if through_proxy else rclone_server.endpoint_url
            with pytest.raises(CredentialsRefusedError) as info:
                cc.get_interface(name, ACCESS_KEY=keys["access_key"], SECRET_KEY=keys["secret_key"],
                                 endpoint_url=url, verbose=False)
            code = "InvalidAccessKeyId" if wrong == "access_key" else "SignatureDoesNotMatch"
            assert code in str(info.value) and "credentials refused by the server" in str(info.value)
            assert keys["secret_key"] not in str(info.value)
            mountpoint = tmp_path / f"mnt-{through_proxy}"
            mountpoint.mkdir()
            result = subprocess.run(mount_command(name, mountpoint),
                                    env=mount_env(url, keys["access_key"], keys["secret_key"]),
                                    capture_output=True, text=True, timeout=MOUNT_TIMEOUT)
            assert result.returncode == 2 and "credentials refused by the server" in result.stderr, result.stderr
            assert result.stderr.count("\n") == 1 and keys["secret_key"] not in result.stderr
    finally:
        drop_bucket(rclone_server, name)


def test_missing_bucket_fails_at_get_interface(s3_server):
    with pytest.raises(BucketNotFoundError, match="force_bucket_creation"):
        cc.get_interface("cc-missing-bucket-x", ACCESS_KEY=s3_server.access_key, SECRET_KEY=s3_server.secret_key,
                         endpoint_url=s3_server.endpoint_url, verbose=False)
