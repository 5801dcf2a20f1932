"""S3-backend specifics: the error table, client configuration, transfer helpers."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ProfileNotFound

from cottoncandy.backends.s3 import S3Backend, make_client
from cottoncandy.backends.s3errors import translate_error
from cottoncandy.backends.s3parts import Chunks, iter_parts
from cottoncandy.config import Credentials, S3Settings
from cottoncandy.errors import (
    AccessDeniedError,
    BucketNotFoundError,
    CredentialsMissingError,
    CredentialsRefusedError,
    ObjectNotFoundError,
    StorageError,
)

from .conftest import make_s3_backend


def client_error(code: str, status: int, message: str = "msg") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


@pytest.mark.parametrize(
    "code, status, expected",
    [
        ("NoSuchKey", 404, ObjectNotFoundError),
        ("404", 404, ObjectNotFoundError),
        ("NoSuchBucket", 404, BucketNotFoundError),
        ("AccessDenied", 403, AccessDeniedError),
        ("403", 403, AccessDeniedError),
        ("InvalidAccessKeyId", 403, CredentialsRefusedError),
        ("SignatureDoesNotMatch", 403, CredentialsRefusedError),
        ("ExpiredToken", 400, CredentialsRefusedError),
        ("PreconditionFailed", 412, ObjectNotFoundError),
        ("InternalError", 500, StorageError),
        ("SlowDown", 503, StorageError),
        ("WeirdCode", 404, ObjectNotFoundError),
    ],
)
def test_error_table(code, status, expected):
    error = translate_error(client_error(code, status), operation="GET", bucket="bkt", key="a/b")
    assert type(error) is expected
    assert error.key == "a/b"
    assert "s3://bkt/a/b" in str(error)


def test_error_messages_drop_or_scrub_server_text():
    denied = client_error("SignatureDoesNotMatch", 403, "StringToSign AKIDSECRETLEAK ...")
    assert "AKIDSECRETLEAK" not in str(translate_error(denied, operation="GET", key="k"))
    other = client_error("InternalError", 500, "failed for key sk-very-secret")
    text = str(translate_error(other, operation="GET", key="k", secrets=["sk-very-secret"]))
    assert "sk-very-secret" not in text and "***" in text


def test_connection_and_credential_errors():
    err = translate_error(
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1/b/k"),
        operation="GET",
        key="k",
        endpoint_url="http://127.0.0.1:1",
    )
    assert type(err) is StorageError and "http://127.0.0.1:1" in str(err)
    err = translate_error(NoCredentialsError(), operation="GET", key="k", endpoint_url="http://127.0.0.1:1")
    assert type(err) is CredentialsMissingError and isinstance(err, AccessDeniedError)
    assert "CC_ACCESS_KEY" in str(err) and "nothing was sent to http://127.0.0.1:1" in str(err)
    err = translate_error(ProfileNotFound(profile="lab"), operation="connect")
    assert type(err) is CredentialsMissingError and "no AWS profile 'lab'" in str(err)
    refused = translate_error(client_error("SignatureDoesNotMatch", 403), operation="list", bucket="b",
                              endpoint_url="http://127.0.0.1:1")
    assert "credentials refused by the server (http://127.0.0.1:1)" in str(refused)
    denied = translate_error(client_error("AccessDenied", 403), operation="list", bucket="b")
    assert type(denied) is AccessDeniedError and "access denied by the server (AWS S3)" in str(denied)


@pytest.mark.parametrize("url", ["s3.example.org", "s3.example.org:9000", "ftp://s3.example.org", "http://",
                                 "http://host:port"])
def test_endpoint_url_must_be_http_with_a_host(url):
    with pytest.raises(ValueError, match="http:// or https://|invalid port"):
        make_client(Credentials("ak", "sk", url))


def test_client_profile_and_region(tmp_path, monkeypatch):
    config = tmp_path / "aws-config"
    config.write_text("[profile lab]\nregion = eu-north-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    assert make_client(Credentials("ak", "sk", "http://127.0.0.1:9", profile="lab")).meta.region_name == "eu-north-1"
    assert make_client(Credentials("ak", "sk", "http://127.0.0.1:9", profile="lab",
                                   region="ap-south-1")).meta.region_name == "ap-south-1"
    with pytest.raises(CredentialsMissingError, match="no AWS profile 'nope'"):
        make_client(Credentials(endpoint_url="http://127.0.0.1:9", profile="nope"))


def test_client_config_for_custom_endpoint():
    client = make_client(Credentials("ak", "sk", "http://127.0.0.1:9"), S3Settings(max_concurrency=40))
    cfg = client.meta.config
    assert cfg.request_checksum_calculation == "when_required"
    assert cfg.response_checksum_validation == "when_required"
    assert cfg.s3["addressing_style"] == "path"
    assert cfg.signature_version == "s3v4"
    assert cfg.max_pool_connections >= 40
    assert cfg.retries["mode"] == "standard" and cfg.retries["total_max_attempts"] == 5
    assert client.meta.region_name == "us-east-1"


def test_client_config_for_aws_keeps_checksums(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = make_client(Credentials("ak", "sk", None), S3Settings())
    assert client.meta.config.request_checksum_calculation != "when_required"


def test_chunks_slice_across_boundaries():
    chunks = Chunks([b"abc", b"", memoryview(b"defg"), bytearray(b"h")])
    assert chunks.size == 8
    assert bytes(chunks.slice(0, 8)) == b"abcdefgh"
    assert bytes(chunks.slice(2, 3)) == b"cde"
    assert isinstance(chunks.slice(3, 2), memoryview)  # inside one chunk: no copy
    parts = [bytes(p) for p in iter_parts(chunks, b"", None, 3)]
    assert parts == [b"abc", b"def", b"gh"]


def test_iter_parts_from_stream_with_short_reads():
    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.data = data

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(2, len(buffer), len(self.data))
            buffer[:n], self.data = self.data[:n], self.data[n:]
            return n

    parts = [bytes(p) for p in iter_parts(None, b"0123", Trickle(b"456789"), 3)]
    assert parts == [b"012", b"345", b"678", b"9"]


def test_with_bucket_shares_client(rclone_server):
    store = make_s3_backend(rclone_server, "one")
    other = store.with_bucket("two")
    assert other.client is store.client and other.bucket == "two"
    fresh = store.new_client()
    assert fresh is not store.client and hasattr(fresh, "get_object")
    assert rclone_server.secret_key not in repr(store)


def test_missing_bucket(s3_server):
    store = make_s3_backend(s3_server, "cc-no-such-bucket")
    with pytest.raises(FileNotFoundError):
        store.head("k")
    with pytest.raises(BucketNotFoundError):
        store.write("k", b"x")
    assert not store.exists_bucket()


def test_read_into_detects_replaced_object_between_parts(s3_server, bucket_name):
    """Parts after the first must come from the same version as the first."""
    store = make_s3_backend(s3_server, bucket_name)
    store.write("obj", b"a" * (11 << 20))
    replaced = []

    def replace_after_first_get(**kwargs):
        if not replaced:
            replaced.append(1)
            s3_server.client().put_object(Bucket=bucket_name, Key="obj", Body=b"b" * (11 << 20))

    # the first part comes through boto3 (rclone answers ranged GETs with 200) or obstore (moto)
    store.client.meta.events.register("after-call.s3.GetObject", replace_after_first_get)
    read_span = store.reader.read_span

    def read_span_then_replace(*args):
        answer = read_span(*args)
        replace_after_first_get()
        return answer

    store.reader.read_span = read_span_then_replace
    with pytest.raises(ObjectNotFoundError, match="changed"):
        store.read_into("obj", memoryview(bytearray(11 << 20)))
    assert replaced


def test_s3backend_is_a_storage_backend():
    from cottoncandy.backends.base import StorageBackend

    assert issubclass(S3Backend, StorageBackend)


def test_backend_pickles_without_its_client(rclone_server, bucket_name_rclone):
    import pickle

    store = make_s3_backend(rclone_server, bucket_name_rclone)
    store.write("k", b"pickled")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.client is not store.client
    assert clone.read_range("k", 0, 7) == b"pickled"


@pytest.fixture
def bucket_name_rclone(rclone_server):
    from .conftest import drop_bucket, new_bucket

    name = new_bucket(rclone_server)
    yield name
    drop_bucket(rclone_server, name)
