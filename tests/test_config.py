"""Credential and settings resolution (cottoncandy.config)."""

from __future__ import annotations

import pytest

from cottoncandy import config
from cottoncandy.config import Credentials, S3Settings, resolve_credentials, resolve_default_bucket

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


def test_unparsable_file_is_ignored(tmp_path):
    path = tmp_path / "home" / ".config" / "cottoncandy" / "options.cfg"
    path.parent.mkdir(parents=True)
    path.write_text("this is [not an ini file\n= =\n")
    assert resolve_credentials() == Credentials(None, None, None)


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
