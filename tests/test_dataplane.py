"""The S3 backend's obstore read path: key fidelity, fallbacks to boto3, faults, identity, fork, lifecycle.

Every server test checks answers against what the server itself says for the
exact key (a raw boto3 client of the harness), and that obstore did serve the
call (a spy on its functions), so that a silent fallback to boto3 cannot pass
for the feature.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time

import obstore
import pytest

from cottoncandy.backends.base import ObjectInfo
from cottoncandy.backends.s3 import S3Backend
from cottoncandy.backends.s3errors import translate_obstore_error
from cottoncandy.backends.s3reader import obstore_can_address
from cottoncandy.backends.s3store import store_options
from cottoncandy.config import Credentials, S3Settings
from cottoncandy.errors import AccessDeniedError, BucketNotFoundError, ObjectNotFoundError, StorageError
from tests.conftest import make_s3_backend
from tests.faultproxy import FaultProxy
from tests.mountutil import mount_env

MiB = 1 << 20
#: Keys object_store spells exactly (the ones it cannot are in AWKWARD).
SPECIAL_KEYS = ["sp ace/x y.npy", "pct%20/a%2Fb", "plus+/a+b=c&d", "uni/ünïcødé/ø", "hash#/q?x=1&y=2",
                "semi;colon/@at:col~!$'()*,", "brack[]{}/<>|^`\"\\", "emoji/😀", "top level"]


@pytest.fixture
def obstore_calls(monkeypatch) -> list[str]:
    """Names of the obstore functions the backend called (``get``, ``get_async``, ``list_with_delimiter``)."""
    calls: list[str] = []
    for name in ("get", "get_async", "list_with_delimiter"):
        original = getattr(obstore, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(obstore, name, spy)
    return calls


@pytest.fixture
def rclone_bucket(rclone_server, buckets):
    return buckets(rclone_server)


@pytest.fixture
def moto_bucket(moto_server, buckets):
    return buckets(moto_server)


def raw_head(client, bucket: str, key: str) -> dict | None:
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except client.exceptions.ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return None
        raise


def raw_list_dir(client, bucket: str, prefix: str) -> tuple[list[str], list[str]]:
    """One level as S3 answers it (the object named like the prefix itself left out, as the contract says)."""
    objects, prefixes = [], []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        objects += [o["Key"] for o in page.get("Contents", []) if o["Key"] != prefix]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return sorted(objects), sorted(prefixes)


# -- key fidelity ------------------------------------------------------------------------


def test_special_character_keys_through_obstore(s3_server, bucket_name, obstore_calls):
    raw = s3_server.client()
    keys = SPECIAL_KEYS
    if s3_server.name == "seaweedfs":  # it stores a backslash as '/': another key, not one obstore mangled
        keys = [k for k in SPECIAL_KEYS if "\\" not in k]
    for i, key in enumerate(keys):
        raw.put_object(Bucket=bucket_name, Key=key, Body=key.encode() * 3, Metadata={"Which": str(i)})
    store = make_s3_backend(s3_server, bucket_name)
    assert all(store.reader.serves(key) for key in keys)
    heads = store.heads(keys)
    for i, key in enumerate(keys):
        truth = raw_head(raw, bucket_name, key)
        for info in (store.head(key), heads[i]):
            assert (info.key, info.size, info.etag) == (key, truth["ContentLength"], truth["ETag"]), key
            assert info.metadata == {"which": str(i)}
        assert store.read_range(key, 1, 1 + len(key.encode())) == (key.encode() * 3)[1 : 1 + len(key.encode())]
        parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        listed = {o.key: o for o in store.list_dir(parent).objects}
        assert listed[key].etag == truth["ETag"] and listed[key].size == truth["ContentLength"]
    root = store.list_dir("")
    assert (sorted(o.key for o in root.objects), root.prefixes) == raw_list_dir(raw, bucket_name, "")
    assert obstore_calls.count("get") >= len(keys) and "get_async" in obstore_calls
    assert obstore_calls.count("list_with_delimiter") == len(keys) + 1  # no listing fell back
    store.close()


def test_awkward_keys_reach_exactly_their_own_object(moto_server, moto_bucket, obstore_calls):
    """moto holds 'marker' and 'marker/', 'a/x' and 'a//x'...: each call must reach the one it names."""
    raw = moto_server.client()
    pairs = [("a/x", "a//x"), ("marker", "marker/"), ("dot/x", "dot/./x"), ("up/x", "up/../x"), ("lead", "/lead")]
    for near, awkward in pairs:
        for key in (near, awkward):
            raw.put_object(Bucket=moto_bucket, Key=key, Body=f"body of {key}".encode(), Metadata={"which": key})
    store = make_s3_backend(moto_server, moto_bucket)
    keys = [k for pair in pairs for k in pair]
    for key, info in zip(keys, store.heads(keys)):
        assert raw_head(raw, moto_bucket, key) is not None
        assert isinstance(info, ObjectInfo) and info.key == key and info.metadata == {"which": key}, (key, info)
        assert store.head(key).metadata == {"which": key}
        assert store.read_range(key, 0, 100) == f"body of {key}".encode()
    assert not any(store.reader.serves(awkward) for _, awkward in pairs)
    assert all(store.reader.serves(near) for near, _ in pairs)


def test_listings_obstore_cannot_spell_match_s3(moto_server, moto_bucket, caplog):
    caplog.set_level("DEBUG", logger="cottoncandy.backends.s3")
    raw = moto_server.client()
    keys = ["m/", "m/a", "m/sub/", "m/sub/b", "w/a//x", "w/ok", "d/./x", "d/y", "/abs", "top"]
    for key in keys:
        raw.put_object(Bucket=moto_bucket, Key=key, Body=b"x")
    store = make_s3_backend(moto_server, moto_bucket)
    for prefix in ("", "m/", "m/sub/", "w/", "d/", "w/a/", "nothing/"):
        listing = store.list_dir(prefix)
        assert (sorted(o.key for o in listing.objects), listing.prefixes) == raw_list_dir(raw, moto_bucket, prefix)
    # obstore served the levels it can spell exactly, directory markers 'm/' and 'm/sub/' (which it
    # spells 'm' and 'm/sub') left out; boto3 listed the others: '' holds the prefix '/', 'w/a/' the
    # prefix 'w/a//', 'd/' the prefix 'd/./'
    fell_back = {r.getMessage().split(moto_bucket + "/", 1)[1].split(" with boto3")[0]
                 for r in caplog.records if "with boto3" in r.getMessage()}
    assert fell_back == {"", "w/a/", "d/"}
    assert [o.key for o in store.iter_objects("m")] == ["m/", "m/a", "m/sub/", "m/sub/b"]


def test_obstore_can_address():
    for key in SPECIAL_KEYS + ["a", "a/b/c", "x.npy", "a/.hidden", "a/..b", "..."]:
        assert obstore_can_address(key), key
    for key in ["", "/a", "a/", "a//b", "a/./b", "./a", "a/..", "tab\there", "nul\x00", "del\x7f", "c1\x85",
                "surrogate\udc80"]:
        assert not obstore_can_address(key), key


# -- ranged GETs: rclone's 200 answers, and faults on a server that answers 206 -----------


def test_rclone_200_answers_keep_ranged_gets_on_boto3(rclone_server, rclone_bucket, obstore_calls, caplog):
    caplog.set_level("INFO", logger="cottoncandy.backends.s3reader")
    store = make_s3_backend(rclone_server, rclone_bucket)
    body = bytes(range(256)) * 4096
    store.write("r", body)
    assert store.reader.ranged_gets is None
    assert store.read_range("r", 10, 5000) == body[10:5000]
    assert store.reader.ranged_gets is False  # the first (boto3) ranged GET got 200
    out = bytearray(len(body) - 7)
    store.read_into("r", memoryview(out), start=7)
    assert out == body[7:] and store.read_range("r", 0, 3) == body[:3]
    assert "get" not in obstore_calls  # no ranged GET was wasted on obstore
    assert sum("instead of 206" in r.getMessage() for r in caplog.records) == 1


def test_moto_206_answers_move_ranged_gets_to_obstore(moto_server, moto_bucket, obstore_calls):
    store = make_s3_backend(moto_server, moto_bucket)
    body = bytes(range(256)) * (12 * 4096)  # 12 MiB: 3 parts of 5 MiB
    store.write("r", body)
    assert store.read_range("r", 0, 10) == body[:10] and store.reader.ranged_gets is True
    assert "get" not in obstore_calls  # that first one went through boto3
    out = bytearray(len(body))
    store.read_into("r", memoryview(out))
    assert out == body and obstore_calls.count("get") == 3
    assert store.read_range("r", len(body) - 5, len(body) + 100) == body[-5:]
    assert store.read_range("r", len(body), len(body) + 1) == b""


def test_obstore_resumes_cut_bodies_and_bounds_failures(moto_server, moto_bucket, obstore_calls):
    body = bytes(range(256)) * (6 * 4096)  # 6 MiB
    moto_server.client().put_object(Bucket=moto_bucket, Key="cut", Body=body)
    settings = {"connect_timeout": 1.0, "read_timeout": 2.0, "max_attempts": 3}
    with FaultProxy(moto_server.endpoint_url, seed=3) as proxy:
        store = S3Backend(moto_bucket, Credentials(moto_server.access_key, moto_server.secret_key, proxy.url),
                          S3Settings(part_size=5 * MiB, **settings))
        assert store.read_range("cut", 0, 1) == body[:1] and store.reader.ranged_gets
        proxy.inject("cut", count=2, match=lambda r: r.method == "GET")
        out = bytearray(len(body))
        store.read_into("cut", memoryview(out))
        assert out == body and proxy.faults["cut"] == 2
        proxy.inject("cut", count=None, match=lambda r: r.method == "GET")
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"s3://.*/cut.*broke off"):
            store.read_range("cut", 0, 4 * MiB)
        assert time.monotonic() - started < 3 * (1.0 + 2.0) + 20
        assert proxy.faults["cut"] == 2 + settings["max_attempts"]
        proxy.clear()
        proxy.inject("stall", count=None, match=lambda r: r.method == "HEAD")
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"s3://.*/cut failed: no answer within the timeout after 3 attempts"):
            store.head("cut")
        assert 3 * 2.0 <= time.monotonic() - started < 3 * (1.0 + 2.0) + 20
        assert proxy.faults["stall"] == 3
        proxy.clear()
    assert obstore_calls.count("get") >= 3
    store.close()


# -- heads: failures and the bound on requests in flight -----------------------------------


def test_heads_one_failing_key_does_not_fail_the_others(rclone_server, rclone_bucket):
    keys = [f"k{i}" for i in range(6)]
    for key in keys:
        rclone_server.client().put_object(Bucket=rclone_bucket, Key=key, Body=key.encode())
    with FaultProxy(rclone_server.endpoint_url) as proxy:
        store = S3Backend(rclone_bucket, Credentials(rclone_server.access_key, rclone_server.secret_key, proxy.url),
                          S3Settings(max_attempts=2, connect_timeout=2, read_timeout=5))
        proxy.inject("500", count=None, match=lambda r: r.method == "HEAD" and r.path.endswith("/k2"))
        results = store.heads(keys + ["missing"])
        assert isinstance(results[2], StorageError) and "s3://" in str(results[2]) and "k2" in str(results[2])
        assert [r.key for i, r in enumerate(results[:6]) if i != 2] == [k for k in keys if k != "k2"]
        assert results[6] is None
        assert proxy.faults["500"] == 2  # retried like any request
        store.close()


def test_heads_keeps_at_most_max_inflight_requests_in_flight(rclone_server, rclone_bucket):
    keys = [f"k{i}" for i in range(8)]
    for key in keys:
        rclone_server.client().put_object(Bucket=rclone_bucket, Key=key, Body=b"x")
    with FaultProxy(rclone_server.endpoint_url, stall_bound=60) as proxy:
        store = S3Backend(rclone_bucket, Credentials(rclone_server.access_key, rclone_server.secret_key, proxy.url),
                          S3Settings(max_inflight=3, read_timeout=60, max_attempts=1))
        proxy.inject("stall", count=None, match=lambda r: r.method == "HEAD")
        results: list = []
        worker = threading.Thread(target=lambda: results.extend(store.heads(keys)))
        worker.start()
        try:
            assert proxy.wait_for(lambda p: p.stalled == 3, timeout=30)
            assert not proxy.wait_for(lambda p: p.stalled > 3, timeout=1.0)  # observation window, not a sync
        finally:
            proxy.clear()  # forward the held requests, hold no more
            worker.join(60)
        assert [r.key for r in results] == keys
        store.close()


# -- identity, errors, lifecycle ----------------------------------------------------------------


def _clean_aws_env(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_obstore_signs_with_the_identity_boto3_found(rclone_server, rclone_bucket, obstore_calls, monkeypatch,
                                                       tmp_path):
    _clean_aws_env(monkeypatch, tmp_path)
    rclone_server.client().put_object(Bucket=rclone_bucket, Key="k", Body=b"12345")
    anonymous = Credentials(None, None, rclone_server.endpoint_url)  # left to boto3's chain
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", rclone_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", rclone_server.secret_key)
    store = S3Backend(rclone_bucket, anonymous, S3Settings(max_attempts=1))
    assert store.head("k").size == 5 and obstore_calls == ["get"]
    wrong = "WrongSecret" + rclone_server.secret_key[:6]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    denied = S3Backend(rclone_bucket, anonymous, S3Settings(max_attempts=1))
    for call in (lambda: denied.head("k"), lambda: denied.list_dir("")):
        with pytest.raises(AccessDeniedError) as info:
            call()
        assert wrong not in repr(info.value) and rclone_server.access_key not in str(info.value)
    assert isinstance(denied.heads(["k"])[0], AccessDeniedError)
    assert obstore_calls.count("get") == 2 and "list_with_delimiter" in obstore_calls
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    nobody = S3Backend(rclone_bucket, anonymous, S3Settings(max_attempts=1))
    with pytest.raises(AccessDeniedError, match="no S3 credentials found"):
        nobody.head("k")
    assert not nobody.reader.serves()  # no store without credentials: obstore never looks for any itself


def test_obstore_error_table_on_real_answers(moto_server, moto_bucket):
    store = make_s3_backend(moto_server, moto_bucket)
    store.write("k", b"data")
    with pytest.raises(ObjectNotFoundError, match=r"s3://.*/missing: no such object \[404 \(HTTP 404\)\]"):
        store.reader.head("missing")
    other = make_s3_backend(moto_server, "cc-no-such-bucket-here")
    with pytest.raises(BucketNotFoundError):
        other.list_dir("")
    other.reader.ranged_gets = True
    with pytest.raises(BucketNotFoundError):
        other.read_range("k", 0, 1)
    store.reader.ranged_gets = True
    with pytest.raises(ObjectNotFoundError, match="changed"):
        store.read_range("k", 0, 2, etag='"0123456789abcdef0123456789abcdef"')


def test_translate_obstore_error_text():
    body = ('Generic S3 error: Error performing GET http://h/b/k - Server returned non-2xx status code: '
            '500 Internal Server Error: <Error><Code>InternalError</Code><Message>boom for sk-secret-1</Message>'
            '</Error>')
    error = translate_obstore_error(obstore.exceptions.GenericError(body), operation="GET", bucket="b", key="k",
                                    secrets=["sk-secret-1"])
    assert type(error) is StorageError and "InternalError (HTTP 500)" in str(error)
    assert "sk-secret-1" not in str(error) and "http://h" not in str(error)
    denied = ('... status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code><Message>'
              'StringToSign AKIALEAK</Message></Error>')
    error = translate_obstore_error(obstore.exceptions.PermissionDeniedError(denied), operation="HEAD", key="k")
    assert isinstance(error, AccessDeniedError) and "AKIALEAK" not in str(error)
    refused = ("Generic S3 error: Error performing HEAD http://127.0.0.1:9/b/k in 2ms, after 2 retries - "
               "HTTP error: error sending request\nDebug source: ... kind: Connect, ...")
    error = translate_obstore_error(obstore.exceptions.GenericError(refused), operation="HEAD", bucket="b", key="k",
                                    endpoint_url="http://127.0.0.1:9")
    assert "connection to http://127.0.0.1:9 failed (no connection after 3 attempts)" in str(error)


def test_store_options_follow_the_settings():
    settings = S3Settings(connect_timeout=3, read_timeout=7, max_attempts=4)
    options = store_options("bkt", "http://127.0.0.1:9000/", "us-east-1", settings)
    assert options["config"]["endpoint"] == "http://127.0.0.1:9000"
    assert options["config"]["virtual_hosted_style_request"] is False
    client = options["client_options"]
    assert client["allow_http"] is True
    assert (client["connect_timeout"].total_seconds(), client["read_timeout"].total_seconds()) == (3, 7)
    assert options["retry_config"]["max_retries"] == 3
    aws = store_options("my-bucket", "https://s3.amazonaws.com", "eu-west-1", settings)
    assert aws["config"]["endpoint"] == "https://my-bucket.s3.eu-west-1.amazonaws.com"
    assert aws["config"]["virtual_hosted_style_request"] is True and aws["client_options"]["allow_http"] is False
    dotted = store_options("my.bucket", "https://s3.amazonaws.com", "eu-west-1", settings)
    assert dotted["config"]["endpoint"] == "https://s3.eu-west-1.amazonaws.com"


def _loop_thread(store):
    """The event-loop thread a backend's reader runs, if it runs one."""
    loop = store.reader._loop
    return loop.thread if loop is not None else None


def test_event_loop_is_lazy_closed_and_rebuilt_after_unpickling(rclone_server, rclone_bucket):
    store = make_s3_backend(rclone_server, rclone_bucket)
    store.write("k", b"v")
    store.head("k")
    assert _loop_thread(store) is None  # single HEADs need no event loop
    assert store.heads(["k"])[0].size == 1
    first = _loop_thread(store)
    assert first is not None and first.is_alive()
    clone = pickle.loads(pickle.dumps(store))
    assert clone.reader is not store.reader and _loop_thread(clone) is None
    assert clone.heads(["k", "nope"])[1] is None
    second = _loop_thread(clone)
    assert second is not None and second is not first and second.is_alive()
    store.close()
    clone.close()
    assert not first.is_alive() and not second.is_alive()
    assert store.heads(["k"])[0].size == 1  # used after close: a new loop, closed again below
    third = _loop_thread(store)
    assert third is not None and third is not first
    store.close()
    assert not third.is_alive()


FORKED = """
import os, sys
from cottoncandy.backends.connect import make_backend
bucket = sys.argv[1]
parent = make_backend(bucket, max_attempts=1, connect_timeout=5, read_timeout=10)
parent.head("k")  # obstore's runtime now runs in this process
parent.heads(["k"])
pid = os.fork()
if pid == 0:
    fresh = make_backend(bucket, max_attempts=1, connect_timeout=5, read_timeout=10)
    answers = [parent.head("k").size, fresh.head("k").size, [i.size for i in fresh.heads(["k", "k"])],
               fresh.read_range("k", 0, 3), [o.key for o in fresh.list_dir("").objects], fresh.reader.serves()]
    print(repr(answers), flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child exit", status, flush=True)
"""


def test_a_process_forked_after_obstore_started_reads_with_boto3(rclone_server, rclone_bucket):
    rclone_server.client().put_object(Bucket=rclone_bucket, Key="k", Body=b"forked")
    env = mount_env(rclone_server.endpoint_url, rclone_server.access_key, rclone_server.secret_key)
    result = subprocess.run([sys.executable, "-c", FORKED, rclone_bucket], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[6, 6, [6, 6], b'for', ['k'], False]", "child exit 0"], result.stderr
