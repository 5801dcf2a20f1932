"""Shared fixtures: S3 servers on loopback, fresh buckets, and storage backends.

Server fixtures are session-scoped; a server that fails to start fails the
tests that need it (never a skip). Add new fixtures in their own section.
"""

from __future__ import annotations

import shutil
import uuid

import pytest

from .servers import S3Server, start_moto, start_rclone

S3_SERVERS = ("rclone", "moto")
#: Part size small enough for the contract tests to exercise multipart uploads cheaply.
TEST_PART_SIZE = 5 << 20


# -- S3 servers ----------------------------------------------------------------
@pytest.fixture(scope="session")
def rclone_server(tmp_path_factory) -> S3Server:
    """``rclone serve s3`` on a free loopback port, buckets under a temporary directory."""
    root = tmp_path_factory.mktemp("rclone")
    server = start_rclone(root / "data", log_path=root / "rclone.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> S3Server:
    """moto's standalone S3 server on a free loopback port."""
    root = tmp_path_factory.mktemp("moto")
    server = start_moto(root / "moto.log")
    yield server
    server.stop()


@pytest.fixture(params=S3_SERVERS)
def s3_server(request) -> S3Server:
    """Each S3 server in turn."""
    return request.getfixturevalue(f"{request.param}_server")


def new_bucket(server: S3Server) -> str:
    """Create a uniquely named empty bucket on ``server`` and return its name."""
    name = f"cc-test-{uuid.uuid4().hex[:16]}"
    server.client().create_bucket(Bucket=name)
    return name


def drop_bucket(server: S3Server, name: str) -> None:
    """Delete a test bucket and everything in it (best effort, fast on rclone)."""
    if server.data_dir is not None:
        shutil.rmtree(server.data_dir / name, ignore_errors=True)
        return
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def bucket_name(s3_server) -> str:
    """A fresh, uniquely named empty bucket on ``s3_server``."""
    name = new_bucket(s3_server)
    yield name
    drop_bucket(s3_server, name)


# -- storage backends ------------------------------------------------------------
def make_s3_backend(server: S3Server, bucket: str, **settings):
    """An :class:`S3Backend` for ``bucket`` on a test server."""
    from cottoncandy.backends.s3 import S3Backend
    from cottoncandy.config import Credentials, S3Settings

    credentials = Credentials(server.access_key, server.secret_key, server.endpoint_url)
    options = {"part_size": TEST_PART_SIZE, "multipart_threshold": TEST_PART_SIZE, "max_attempts": 2}
    options.update(settings)
    return S3Backend(bucket, credentials, S3Settings(**options))


@pytest.fixture(params=("local",) + S3_SERVERS)
def backend(request, tmp_path):
    """A fresh, empty StorageBackend of each kind: a local directory, rclone, moto."""
    if request.param == "local":
        from cottoncandy.backends.local import LocalBackend

        root = tmp_path / "bucket"
        root.mkdir()
        store = LocalBackend(root)
        yield store
        store.close()
        return
    server = request.getfixturevalue(f"{request.param}_server")
    name = new_bucket(server)
    store = make_s3_backend(server, name)
    yield store
    store.close()
    drop_bucket(server, name)


# -- a clean home and environment for every test ---------------------------------
#: Variables through which a developer's own setup could decide a test's result.
CREDENTIAL_VARIABLES = ("CC_ACCESS_KEY", "CC_SECRET_KEY", "CC_ENDPOINT_URL", "CC_DEFAULT_BUCKET", "CC_CONFIG_FILE",
                        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                        "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL",
                        "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "XDG_CONFIG_HOME", "XDG_DATA_HOME")


@pytest.fixture(autouse=True)
def clean_home(tmp_path_factory, monkeypatch):
    """An empty HOME and none of the credential variables, so that no ``options.cfg``,
    ``~/.passwd-s3fs`` or ``~/.aws`` of the machine decides a result. Tests about
    those files build them under their own HOME. boto3 never asks the EC2 metadata
    service (no network beyond loopback)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home
