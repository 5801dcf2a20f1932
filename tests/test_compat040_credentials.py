"""A cottoncandy 0.4.0 user's home connects and mounts unchanged (issue 9, points 1-3).

The HOME holds 0.4.0's ``options.cfg`` verbatim (``access_key = False``...),
keys sit where 0.4.0 users keep them, and the API and real mounts must find
them on rclone and moto. rclone checks signatures, so there every test also
puts *wrong* keys at every lower place: a broken precedence rule picks them
and the server refuses them. moto accepts any key, so there the tests check
what was resolved and that the server answered.
"""

from __future__ import annotations

import numpy as np
import pytest
from botocore.config import Config

import cottoncandy as cc
from cottoncandy.errors import BucketNotFoundError, CottonCandyError, CredentialsRefusedError
from tests.conftest import drop_bucket
from tests.faultproxy import FaultProxy
from tests.home040 import PLACES, make_home
from tests.mountutil import mounted
from tests.servers import free_port

ARRAY = np.arange(24, dtype="<f8").reshape(4, 6)
BAD = ("CCWRONGACCESSKEY", "WrongSecretKeyWrongSecretKey")


@pytest.fixture
def home(tmp_path):
    return make_home(tmp_path / "home040")


@pytest.fixture
def fill(buckets):
    """``fill(server)``: a new bucket holding one raw array, written by the harness's own client."""
    def make(server) -> str:
        name = buckets(server)
        server.client().put_object(Bucket=name, Key="project/sub01.grp/image_data", Body=ARRAY.tobytes(),
                                   Metadata={"dtype": "<f8", "shape": "4,6", "compression": "False", "order": "C"})
        return name
    return make


@pytest.fixture
def bucket(s3_server, fill):
    return fill(s3_server)


@pytest.fixture
def rclone_bucket(rclone_server, fill):
    return fill(rclone_server)


def keys_of(server) -> tuple[str, str]:
    return server.access_key, server.secret_key


def check_api(bucket: str, **kwargs) -> cc.Interface:
    """What a 0.4.0 script does first: connect by bucket name only, read, write."""
    cci = cc.get_interface(bucket, verbose=False, **kwargs)
    np.testing.assert_array_equal(cci.download_raw_array("project/sub01.grp/image_data"), ARRAY)
    cci.upload_raw_array("written", ARRAY[::-1])
    np.testing.assert_array_equal(cci.download_raw_array("written"), ARRAY[::-1])
    return cci


def spoil_lower_places(home, server, above: str) -> None:
    """On a server that checks keys, put wrong keys at every place below ``above``."""
    if server.name != "rclone":
        return
    for place in PLACES[PLACES.index(above) + 1:]:
        home.put_keys(place, *BAD)


# -- each place 0.4.0 users keep keys in, through the API and through a mount -------------
@pytest.mark.parametrize("place", PLACES)
def test_each_place_of_keys_works_through_the_api(s3_server, bucket, home, monkeypatch, place):
    home.put_keys(place, *keys_of(s3_server), endpoint_url=s3_server.endpoint_url)
    spoil_lower_places(home, s3_server, place)
    home.apply(monkeypatch)
    cci = check_api(bucket)
    expected = keys_of(s3_server)[0] if place in ("cc_env", "config_file", "passwd_s3fs") else None
    assert cci.backend.credentials.access_key == expected  # AWS_* places are boto3's own chain
    assert cci.backend.credentials.endpoint_url == s3_server.endpoint_url


@pytest.mark.parametrize("place", PLACES)
def test_each_place_of_keys_works_through_a_mount(s3_server, bucket, home, tmp_path, place):
    home.put_keys(place, *keys_of(s3_server), endpoint_url=s3_server.endpoint_url)
    spoil_lower_places(home, s3_server, place)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(bucket, mountpoint, env=home.mount_environ()) as mount:
        np.testing.assert_array_equal(np.load(mount / "project/sub01.grp/image_data.npy"), ARRAY)


def test_group_readable_passwd_file_mounts_with_a_warning(rclone_server, buckets, tmp_path, home):
    bucket = buckets(rclone_server)
    home.write_passwd(f"{rclone_server.access_key}:{rclone_server.secret_key}\n", mode=0o640)
    home.environ["CC_ENDPOINT_URL"] = rclone_server.endpoint_url
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(bucket, mountpoint, env=home.mount_environ()) as mount:
        assert list(mount.path.iterdir()) == []
        assert ".passwd-s3fs is accessible to other users" in mount.log()
        assert rclone_server.secret_key not in mount.log()


# -- precedence: each rule has a test that fails if it is broken (rclone checks keys) --------
@pytest.mark.parametrize("winner, loser", list(zip(PLACES, PLACES[1:])), ids=lambda p: p)
def test_higher_place_wins(rclone_server, rclone_bucket, home, tmp_path, monkeypatch, winner, loser):
    bucket = rclone_bucket
    home.put_keys(loser, *BAD)
    home.put_keys(winner, *keys_of(rclone_server))
    home.environ["CC_ENDPOINT_URL"] = rclone_server.endpoint_url
    home.apply(monkeypatch)
    check_api(bucket)
    # the bad keys really are where the loser looks: alone, they are used and refused
    for name in home.environ:
        monkeypatch.delenv(name)
    alone = make_home(tmp_path / "alone")
    alone.put_keys(loser, *BAD, endpoint_url=rclone_server.endpoint_url)
    alone.apply(monkeypatch)
    with pytest.raises(CredentialsRefusedError):
        cc.get_interface(bucket, verbose=False, max_attempts=1)


def test_arguments_win_over_every_place(rclone_server, rclone_bucket, home, monkeypatch):
    bucket = rclone_bucket
    for place in PLACES:
        home.put_keys(place, *BAD)
    home.apply(monkeypatch)
    check_api(bucket, ACCESS_KEY=rclone_server.access_key, SECRET_KEY=rclone_server.secret_key,
              endpoint_url=rclone_server.endpoint_url)


def test_false_and_none_in_cc_variables_mean_unset(rclone_server, rclone_bucket, home, monkeypatch):
    bucket = rclone_bucket
    home.put_keys("config_file", *keys_of(rclone_server), endpoint_url=rclone_server.endpoint_url)
    home.environ.update(CC_ACCESS_KEY="False", CC_SECRET_KEY="None", CC_ENDPOINT_URL="false")
    home.apply(monkeypatch)
    check_api(bucket, ACCESS_KEY=False, SECRET_KEY=False)


def test_endpoint_precedence(rclone_server, rclone_bucket, home, monkeypatch):
    bucket = rclone_bucket
    nowhere = f"http://127.0.0.1:{free_port()}"
    home.put_keys("config_file", *keys_of(rclone_server), endpoint_url=nowhere)
    home.environ["CC_ENDPOINT_URL"] = rclone_server.endpoint_url
    home.apply(monkeypatch)
    check_api(bucket)  # CC_ENDPOINT_URL beats the file
    monkeypatch.setenv("CC_ENDPOINT_URL", nowhere)
    check_api(bucket, endpoint_url=rclone_server.endpoint_url)  # the argument beats CC_ENDPOINT_URL
    with pytest.raises(CottonCandyError, match="connection"):
        cc.get_interface(bucket, verbose=False, max_attempts=1, connect_timeout=2)


# -- the rest of options.cfg: default_bucket, force_bucket_creation, signature_version ----------
def test_default_bucket_from_options(s3_server, bucket, home, monkeypatch):
    home.install_options(default_bucket=bucket)
    home.put_keys("passwd_s3fs", *keys_of(s3_server), endpoint_url=s3_server.endpoint_url)
    home.apply(monkeypatch)
    cci = cc.get_interface(verbose=False)
    assert cci.bucket_name == bucket
    assert cci.glob("project") == ["project/sub01.grp/image_data"]


def test_force_bucket_creation_from_options(s3_server, home, monkeypatch):
    home.put_keys("cc_env", *keys_of(s3_server), endpoint_url=s3_server.endpoint_url)
    home.apply(monkeypatch)
    name = f"cc-new-{free_port()}"
    with pytest.raises(BucketNotFoundError, match="force_bucket_creation"):
        cc.get_interface(name, verbose=False)  # 0.4.0's file says False
    home.install_options(force_bucket_creation="True")
    try:
        cc.get_interface(name, verbose=False).upload_object("k", b"v")
        assert s3_server.client().get_object(Bucket=name, Key="k")["Body"].read() == b"v"
        with pytest.raises(BucketNotFoundError):
            cc.get_interface(name + "-x", verbose=False, force_bucket_creation=False)  # the argument wins
    finally:
        drop_bucket(s3_server, name)


def test_signature_version_from_options(s3_server, bucket, home, monkeypatch):
    home.put_keys("cc_env", *keys_of(s3_server), endpoint_url=s3_server.endpoint_url)
    home.install_options(signature_version="s3")  # SigV2, which rclone and SeaweedFS refuse and moto accepts
    home.apply(monkeypatch)
    if s3_server.name in ("rclone", "seaweedfs"):
        with pytest.raises(CottonCandyError, match="UnsupportedAlgorithm|SignatureDoesNotMatch"):
            cc.get_interface(bucket, verbose=False, max_attempts=1)
    else:
        assert check_api(bucket).backend.client.meta.config.signature_version == "s3"
    # a Config that names its own signature version wins over the file, as in 0.4.0
    cci = check_api(bucket, config=Config(signature_version="s3v4"))
    assert cci.backend.client.meta.config.signature_version == "s3v4"
    home.install_options(signature_version="")  # 0.4.0's empty default: SigV4
    assert check_api(bucket).backend.client.meta.config.signature_version == "s3v4"


# -- config=botocore.config.Config(...), 0.4.0's documented way to set timeouts and retries ------
def test_botocore_config_is_accepted_and_our_keywords_win(rclone_server, rclone_bucket, home, monkeypatch):
    bucket = rclone_bucket
    home.put_keys("cc_env", *keys_of(rclone_server))
    home.apply(monkeypatch)
    with FaultProxy(rclone_server.endpoint_url) as proxy:
        monkeypatch.setenv("CC_ENDPOINT_URL", proxy.url)
        config = Config(connect_timeout=60, read_timeout=60, retries=dict(max_attempts=2))  # 0.4.0's README
        cci = check_api(bucket, config=config)
        assert cci.backend.client.meta.config.read_timeout == 60
        assert cci.backend.settings.max_attempts == 3  # two retries after the first attempt
        proxy.inject("503", count=2, match=lambda r: r.method == "GET")
        check_api(bucket, config=config)  # the Config's retries absorb the two 503s
        assert proxy.faults["503"] == 2
        stingy = check_api(bucket, config=config, max_attempts=1, read_timeout=30)
        assert stingy.backend.client.meta.config.read_timeout == 30
        proxy.inject("503", count=1, match=lambda r: r.method == "GET")
        with pytest.raises(CottonCandyError, match="SlowDown"):  # our keyword won: no retry
            stingy.download_raw_array("written")
    with pytest.raises(TypeError, match="botocore.config.Config"):
        cc.get_interface(bucket, config={"read_timeout": 5})
