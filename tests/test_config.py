"""Credential and settings resolution (cottoncandy.config: settings, files), without a server.

The same rules against real servers and mounts are in tests/test_compat040_credentials.py.
"""

from __future__ import annotations

import logging

import pytest
from botocore.config import Config

from cottoncandy import config
from cottoncandy.backends.s3client import make_client, settings_from_config
from cottoncandy.config import (
    Credentials,
    S3Settings,
    resolve_connection,
    resolve_credentials,
    resolve_default_bucket,
)
from tests.home040 import make_home

ENV_VARS = ("CC_ACCESS_KEY", "CC_SECRET_KEY", "CC_ENDPOINT_URL", "CC_DEFAULT_BUCKET", "CC_CONFIG_FILE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No CC_* variables, and a home directory with no config file."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return tmp_path


def write_cfg(path, access="fileak", secret="filesk", endpoint="http://file:9000", bucket="filebucket"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"[login]\naccess_key = {access}\nsecret_key = {secret}\nendpoint_url = {endpoint}\n\n"
        f"[basic]\ndefault_acl = authenticated-read\ndefault_bucket = {bucket}\n"
    )
    return path


def test_nothing_configured_leaves_everything_to_boto3(tmp_path):
    assert resolve_credentials() == Credentials(None, None, None)
    assert resolve_default_bucket() is None
    assert not (tmp_path / "home").exists()  # nothing was created


def test_precedence_arguments_env_file(monkeypatch, tmp_path):
    write_cfg(tmp_path / "home" / ".config" / "cottoncandy" / "options.cfg")
    assert resolve_credentials() == Credentials("fileak", "filesk", "http://file:9000")
    monkeypatch.setenv("CC_ACCESS_KEY", "envak")
    monkeypatch.setenv("CC_SECRET_KEY", "envsk")
    monkeypatch.setenv("CC_ENDPOINT_URL", "http://env:1")
    assert resolve_credentials() == Credentials("envak", "envsk", "http://env:1")
    assert resolve_credentials("argak", "argsk", "http://arg:2") == Credentials("argak", "argsk", "http://arg:2")
    assert resolve_default_bucket() == "filebucket"
    monkeypatch.setenv("CC_DEFAULT_BUCKET", "envbucket")
    assert resolve_default_bucket() == "envbucket"
    assert resolve_default_bucket("argbucket") == "argbucket"


def test_config_file_env_var_and_legacy_location(monkeypatch, tmp_path):
    write_cfg(tmp_path / "home" / ".local" / "share" / "cottoncandy" / "options.cfg", access="legacy")
    assert resolve_credentials().access_key == "legacy"
    other = write_cfg(tmp_path / "elsewhere.cfg", access="pointed")
    monkeypatch.setenv("CC_CONFIG_FILE", str(other))
    assert resolve_credentials().access_key == "pointed"


@pytest.mark.parametrize("placeholder", ["auto", "KEYSNOTFOUND", "ACCESS_KEY", ""])
def test_placeholders_count_as_unset(tmp_path, placeholder):
    write_cfg(
        tmp_path / "home" / ".config" / "cottoncandy" / "options.cfg",
        access=placeholder,
        secret=placeholder.replace("ACCESS", "SECRET"),
        endpoint="https://s3.amazonaws.com/",
        bucket="",
    )
    assert resolve_credentials() == Credentials(None, None, None)
    assert resolve_default_bucket() is None


def test_half_configured_keys_are_left_to_boto3(monkeypatch):
    monkeypatch.setenv("CC_ACCESS_KEY", "only-ak")
    assert resolve_credentials() == Credentials(None, None, None)


def test_repr_hides_secret():
    creds = Credentials("AKIDVISIBLE", "very-secret-value", "http://x")
    assert "very-secret-value" not in repr(creds)
    assert "very-secret-value" not in str(creds)
    assert "AKIDVISIBLE" in repr(creds)


def test_unparsable_file_is_ignored_with_one_warning_naming_it(tmp_path, caplog):
    path = tmp_path / "home" / ".config" / "cottoncandy" / "options.cfg"
    path.parent.mkdir(parents=True)
    path.write_text("this is [not an ini file\n= =\n")
    with caplog.at_level(logging.WARNING):
        assert resolve_connection("b") == config.Connection("b", Credentials(None, None, None))
        assert resolve_credentials() == Credentials(None, None, None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0], warnings


@pytest.fixture
def home(tmp_path):
    """The test's HOME (see clean_env) with 0.4.0's options.cfg verbatim."""
    return make_home(tmp_path / "home")


def test_040_options_file_verbatim_sets_nothing(home, caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_connection() == config.Connection(None, Credentials(None, None, None), False, None)
    assert caplog.records == []  # the other sections are ignored silently


@pytest.mark.parametrize("unset", ["False", "false", "None", "NONE", ""])
def test_false_and_none_mean_unset_in_file_and_env(monkeypatch, home, unset):
    home.install_options(access_key=unset, secret_key=unset)
    home.write_passwd("PWAK:PWSK\n")
    monkeypatch.setenv("CC_ACCESS_KEY", unset)
    monkeypatch.setenv("CC_SECRET_KEY", unset)
    monkeypatch.setenv("CC_DEFAULT_BUCKET", unset)
    assert resolve_credentials(False, False) == Credentials("PWAK", "PWSK", None)
    assert resolve_credentials("False", "None") == Credentials("PWAK", "PWSK", None)
    assert resolve_default_bucket() is None


def test_040_basic_section_is_honoured(home):
    home.install_options(default_bucket="labdata", force_bucket_creation="True", signature_version="s3")
    assert resolve_connection() == config.Connection("labdata", Credentials(None, None, None), True, "s3")
    assert resolve_connection("other", force_bucket_creation=False).force_bucket_creation is False
    home.install_options(force_bucket_creation="False")
    assert resolve_connection().force_bucket_creation is False


def test_passwd_file_below_config_file_above_boto3(home):
    home.write_passwd("# s3fs keys\n\nPWAK:PWSK\nother-bucket:OTHERAK:OTHERSK\n")
    assert resolve_credentials() == Credentials("PWAK", "PWSK", None)  # boto3's chain comes after it
    assert resolve_credentials(bucket="other-bucket") == Credentials("OTHERAK", "OTHERSK", None)
    home.install_options(access_key="fileak", secret_key="filesk")
    assert resolve_credentials().access_key == "fileak"


def test_group_readable_passwd_file_is_used_with_a_warning(home, caplog):
    path = home.write_passwd("PWAK:PWSK\n", mode=0o644)
    with caplog.at_level(logging.WARNING):
        assert resolve_credentials() == Credentials("PWAK", "PWSK", None)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert str(path) in warning and "chmod 600" in warning and "PWSK" not in warning
    caplog.clear()
    path.chmod(0o600)
    assert resolve_credentials().access_key == "PWAK" and caplog.records == []


def test_malformed_passwd_lines_are_skipped_with_a_warning(home, caplog):
    home.write_passwd("just-one-field\nPWAK:PWSK\n")
    with caplog.at_level(logging.WARNING):
        assert resolve_credentials() == Credentials("PWAK", "PWSK", None)
    assert any("line 1" in r.getMessage() for r in caplog.records)
    assert not any("PWSK" in r.getMessage() for r in caplog.records)


def test_botocore_config_fields_become_settings():
    given = Config(connect_timeout=50, read_timeout=600, retries=dict(max_attempts=10))
    assert settings_from_config(given) == {"connect_timeout": 50, "read_timeout": 600, "max_attempts": 11}
    assert settings_from_config(Config(retries={"total_max_attempts": 3, "mode": "adaptive"})) == {
        "max_attempts": 3, "retry_mode": "adaptive"}
    assert settings_from_config(Config()) == {}  # botocore's own defaults are not the user's choice
    with pytest.raises(TypeError, match="botocore.config.Config"):
        settings_from_config({"read_timeout": 5})


def test_client_config_merges_user_config_under_our_keywords():
    user = Config(read_timeout=600, proxies={"https": "http://127.0.0.1:3128"}, user_agent_extra="lab",
                  s3={"addressing_style": "virtual"})
    settings = S3Settings(**{**settings_from_config(user), "read_timeout": 30}, client_config=user)
    cfg = make_client(Credentials("ak", "sk", "http://127.0.0.1:9"), settings).meta.config
    assert cfg.read_timeout == 30  # our keyword wins over the user's Config
    assert cfg.proxies == {"https": "http://127.0.0.1:3128"} and cfg.user_agent_extra == "lab"
    assert cfg.s3["addressing_style"] == "virtual"  # the user's Config wins over our defaults
    assert cfg.request_checksum_calculation == "when_required"  # defaults it does not touch stay
    assert cfg.signature_version == "s3v4"
    signed = S3Settings(signature_version="s3", client_config=Config(signature_version="s3v4"))
    assert make_client(Credentials("ak", "sk", "http://x:1"), signed).meta.config.signature_version == "s3v4"


def test_settings_validation():
    settings = S3Settings(max_concurrency=64, max_pool_connections=10)
    assert settings.pool_size == 64
    with pytest.raises(ValueError):
        S3Settings(part_size=1 << 20)
    with pytest.raises(ValueError):
        S3Settings(retry_mode="sometimes")
    with pytest.raises(ValueError):
        S3Settings(max_concurrency=0)


@pytest.mark.parametrize(
    "url, aws",
    [
        (None, True),
        ("https://s3.amazonaws.com", True),
        ("https://s3.eu-west-1.amazonaws.com/", True),
        ("http://127.0.0.1:9000", False),
        ("https://amazonaws.com.evil.example", False),
        ("https://s3.example.org", False),
    ],
)
def test_is_aws_endpoint(url, aws):
    assert config.is_aws_endpoint(url) is aws
