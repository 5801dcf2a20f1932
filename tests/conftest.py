"""Shared fixtures: S3 servers on loopback, fresh buckets, and storage backends.

Server fixtures are session-scoped; a server that fails to start fails the
tests that need it (never a skip). Add new fixtures in their own section.
"""

from __future__ import annotations

import functools
import shutil
import types
import uuid

import pytest

from .servers import S3Server, start_server

#: Every S3 server the suite runs on: rclone (metadata keys capitalised, 200 for
#: ranged GETs), moto (closest to AWS) and SeaweedFS (keeps what it is given,
#: lower-case metadata keys, 206 for ranged GETs, object and prefix may share a name).
S3_SERVERS = ("rclone", "moto", "seaweedfs")
#: The slowest server-parametrised tests run on the two servers where they prove the most
#: (the third adds minutes, not findings):
#: - many threads reading through the block cache: rclone (answers ranged GETs with 200 and a
#:   Content-Range) and SeaweedFS (206, a real store); moto's data path, pure Python, is the
#:   slowest and no closer to AWS than theirs.
#: - listings past 1,000 keys: moto (AWS's continuation tokens, checked strictly) and SeaweedFS
#:   (listings walk filer directories, where object and prefix can share a name); rclone pages
#:   a directory walk much like SeaweedFS does.
READ_PATH_SERVERS = ("rclone", "seaweedfs")
LISTING_SERVERS = ("moto", "seaweedfs")
#: Part size small enough for the contract tests to exercise multipart uploads cheaply.
TEST_PART_SIZE = 5 << 20


# -- S3 servers ----------------------------------------------------------------
def _session_server(name: str, tmp_path_factory) -> S3Server:
    server = start_server(name, tmp_path_factory.mktemp(name))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rclone_server(tmp_path_factory) -> S3Server:
    """``rclone serve s3`` on a free loopback port, buckets under a temporary directory."""
    yield from _session_server("rclone", tmp_path_factory)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> S3Server:
    """moto's standalone S3 server on a free loopback port."""
    yield from _session_server("moto", tmp_path_factory)


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory) -> S3Server:
    """SeaweedFS (``weed mini``) on free loopback ports, its data under a temporary directory."""
    yield from _session_server("seaweedfs", tmp_path_factory)


@pytest.fixture(params=S3_SERVERS)
def s3_server(request) -> S3Server:
    """Each S3 server in turn."""
    return request.getfixturevalue(f"{request.param}_server")


def new_bucket(server: S3Server, prefix: str = "cc-test") -> str:
    """Create a uniquely named empty bucket on ``server`` and return its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:16]}"
    client = server.client()
    client.create_bucket(Bucket=name)
    if server.name == "seaweedfs":
        # A SeaweedFS bucket is a collection that gets its first volume on the first write
        # (~0.2 s); writes racing that one wait ~1 s each. One write now keeps tests from racing.
        client.put_object(Bucket=name, Key=".cc-warm-up", Body=b"x")  # an empty body needs no volume
        client.delete_object(Bucket=name, Key=".cc-warm-up")
    return name


def drop_bucket(server: S3Server, name: str) -> None:
    """Delete a test bucket and everything in it (best effort, fast on rclone)."""
    if server.data_dir is not None:
        shutil.rmtree(server.data_dir / name, ignore_errors=True)
        return
    from botocore.exceptions import ClientError

    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if not keys:
            continue
        try:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        except ClientError:  # a key XML cannot carry (control characters): one DELETE per key
            for key in keys:
                client.delete_object(Bucket=name, Key=key["Key"])
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


@pytest.fixture
def buckets():
    """``buckets(server, prefix='cc-test')`` makes a fresh bucket; each is dropped when the test ends."""
    made: list[tuple[S3Server, str]] = []

    def make(server: S3Server, prefix: str = "cc-test") -> str:
        name = new_bucket(server, prefix)
        made.append((server, name))
        return name

    yield make
    for server, name in reversed(made):
        drop_bucket(server, name)


# -- storage backends ------------------------------------------------------------
def on_backends(*kinds: str):
    """Mark a test that uses the ``backend`` fixture to run on these kinds only."""
    return pytest.mark.parametrize("backend", kinds, indirect=True)


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
    """A fresh, empty StorageBackend of each kind: a local directory and each S3 server."""
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


@pytest.fixture
def cci(backend):
    """An Interface over each kind of ``backend``."""
    from cottoncandy.interface import Interface

    return Interface(backend)


# -- markers: s3 and fuse, from what a test uses ------------------------------------
#: Fixtures through which a test reaches an S3 server.
_SERVER_FIXTURES = {f"{name}_server" for name in S3_SERVERS} | {"s3_server", "bucket_name"}


@functools.lru_cache(maxsize=None)
def _module_uses(module: types.ModuleType) -> tuple[bool, bool]:
    """Whether a test module starts S3 servers itself, and whether it uses the mount (its code or
    ``tests.mountutil``), judged from what it imports."""
    starts = mounts = False
    for value in vars(module).values():
        where = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if not isinstance(where, str):
            continue
        mounts = mounts or where.startswith(("cottoncandy.fuse", "tests.mountutil"))
        starts = starts or (where in ("tests.servers", "tests.seaweedfs")
                            and getattr(value, "__name__", "").startswith("start_"))
    return starts, mounts


def pytest_collection_modifyitems(items):
    """Mark tests ``s3`` (they talk to an S3 server on loopback) and ``fuse`` (they use the mount's
    code or a real mount), so that ``-m 'not fuse'`` or ``-m 'not s3'`` selects the others."""
    for item in items:
        starts, mounts = _module_uses(item.module)
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (starts or _SERVER_FIXTURES & set(item.fixturenames)
                or any(isinstance(value, str) and value in S3_SERVERS for value in params.values())):
            item.add_marker(pytest.mark.s3)
        if mounts:
            item.add_marker(pytest.mark.fuse)


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
