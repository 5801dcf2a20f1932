"""``cottoncandy-mount``'s command line, in-process: options, ``-o``, and one-line mistakes.

Mounts made with these options are in ``tests/test_cli_mounts.py``. Here
:func:`cottoncandy.fuse.cli.main` runs in this process up to the point where
it would mount: every mistake must end there with exit status 2 and one line
on stderr, never a traceback.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

import pytest

import cottoncandy
from cottoncandy.fuse.cli import main
from cottoncandy.fuse.options import MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, build_parser, format_size
from tests.mountutil import installed_command, mount_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No credentials, config files or profiles but those a test sets; boto3 stays on loopback."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "CC_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CC_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(autouse=True)
def restore_logging():
    """``main`` installs its log handler on the root logger: take it away again."""
    root, ours = logging.getLogger(), logging.getLogger("cottoncandy")
    handlers, levels = list(root.handlers), (root.level, ours.level)
    yield
    for handler in set(root.handlers) - set(handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


@pytest.fixture
def mountpoint(tmp_path):
    path = tmp_path / "mnt"
    path.mkdir()
    return path


def one_line_exit(capsys, argv: list[str], *words: str) -> str:
    """Run ``main(argv)``: it must exit with status 2 and print one line holding ``words``."""
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's path
        status = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]
    assert lines[0].startswith("cottoncandy-mount: ")
    return lines[0]


# -- conventions ---------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"cottoncandy-mount {cottoncandy.__version__}"
    installed = subprocess.run([str(installed_command()), "--version"], capture_output=True, text=True,
                               env=mount_env(), timeout=60, check=False)
    assert (installed.returncode, installed.stdout.strip()) == (0, f"cottoncandy-mount {cottoncandy.__version__}")


def test_help_documents_every_option_and_bound():
    text = " ".join(build_parser().format_help().split())
    for option in ("--version", "-o OPT[,OPT=VALUE...]", "--endpoint-url", "--profile", "--region", "--prefix",
                   "--backend", "--cache-size", "--block-size", "--ttl", "--timeout", "--retries", "--workers",
                   "--uid", "--gid", "--umask", "--foreground", "--allow-other", "--log-file", "--debug",
                   "--debug-wire", "--max-inflight", "--metadata-cache"):
        assert option in text
    for fuse_option in ("ro,", "allow_other", "allow_root", "default_permissions", "auto_unmount", "uid=",
                        "gid=", "umask=", "_netdev", "noauto"):
        assert fuse_option in text
    assert f"{format_size(MIN_BLOCK_SIZE)} to {format_size(MAX_BLOCK_SIZE)}" in text
    assert "at least two blocks" in text and "XDG_STATE_HOME" in text and "Exit status" in text
    assert "(default: 30.0)" in text and "(default: 1GiB)" in text and "(default: 8MiB)" in text


def test_mount_options_equal_long_options():
    parse = build_parser().parse_args
    by_o = parse(["b", "m", "-o", "ro,allow_other,endpoint_url=http://127.0.0.1:9000,ttl=60,cache_size=2GiB,"
                  "block_size=4MiB,prefix=a\\,b/,uid=1234,gid=2345,umask=027,profile=lab,region=eu-west-1,"
                  "timeout=5,retries=1,workers=3,debug,debug_wire,log_file=/tmp/x.log", "-o", "backend=local",
                  "-o", "max_inflight=16,metadata_cache=off"])
    by_long = parse(["b", "m", "--allow-other", "--endpoint-url", "http://127.0.0.1:9000", "--ttl", "60",
                     "--cache-size", "2GiB", "--block-size", "4MiB", "--prefix", "a,b/", "--uid", "1234",
                     "--gid", "2345", "--umask", "027", "--profile", "lab", "--region", "eu-west-1",
                     "--timeout", "5", "--retries", "1", "--workers", "3", "--debug", "--debug-wire",
                     "--log-file", "/tmp/x.log", "--backend", "local", "--max-inflight", "16",
                     "--metadata-cache", "off"])
    assert vars(by_o) == vars(by_long)
    assert (by_o.cache_size, by_o.block_size, by_o.umask, by_o.prefix) == (2 << 30, 4 << 20, 0o027, "a,b/")
    glued = parse(["b", "m", "-oallow_other,endpoint-url=http://h:1"])  # -oOPTS and dashes, as FUSE tools allow
    assert glued.allow_other and glued.endpoint_url == "http://h:1"


def test_what_mount_fuse3_passes_is_accepted():
    """``mount /mnt/cc`` runs ``cottoncandy-mount SRC /mnt/cc -o rw,...,dev,suid`` through mount.fuse3."""
    args = build_parser().parse_args([
        "my_bucket", "/mnt/cc", "-o",
        "rw,_netdev,noauto,user,users,nouser,defaults,nofail,relatime,noatime,async,x-systemd.automount,"
        "comment=cc,endpoint_url=https://s3.example.org,allow_other,default_permissions,auto_unmount,"
        "nodev,nosuid,noexec,dev,suid,exec",
    ])
    assert args.endpoint_url == "https://s3.example.org" and args.allow_other
    assert args.fuse_options == ["nodev", "noexec", "nosuid"]  # handed to libfuse
    assert {"rw", "_netdev", "noauto", "defaults", "dev", "suid", "exec", "x-systemd.automount"} <= set(
        args.ignored_options)
    assert build_parser().parse_args(["b", "m", "-o", "allow_root"]).fuse_options == ["allow_root"]


def test_owner_by_name_and_number():
    args = build_parser().parse_args(["b", "m", "--uid", "root", "--gid", "root", "--umask", "0077"])
    assert (args.uid, args.gid, args.umask) == (0, 0, 0o077)
    assert build_parser().parse_args(["b", "m", "-o", "uid=4321,gid=8765"]).uid == 4321


# -- mistakes: one line, status 2 ---------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--block-size", "1"], ["--block-size", "between 64KiB and 256MiB", "'1'"]),
    (["--block-size", "1GiB"], ["--block-size", "between 64KiB and 256MiB"]),
    (["--cache-size", "2048"], ["--cache-size 2KiB", "at least two blocks", "8MiB"]),
    (["--cache-size", "12MiB"], ["at least two blocks"]),
    (["--cache-size", "64MiB", "--block-size", "64MiB"], ["at least two blocks", "64MiB"]),
    (["--cache-size", "1000TiB"], ["more than this machine's memory"]),
    (["--cache-size", "lots"], ["--cache-size", "'lots'"]),
    (["--ttl", "-1"], ["--ttl", "'-1'"]),
    (["--ttl", "soon"], ["--ttl", "'soon'"]),
    (["--workers", "0"], ["--workers", "'0'"]),
    (["--max-inflight", "0"], ["--max-inflight", "'0'"]),
    (["--timeout", "0"], ["--timeout", "'0'"]),
    (["--retries", "-1"], ["--retries", "'-1'"]),
    (["--uid", "no-such-user-x"], ["--uid", "no such user"]),
    (["--gid", "no-such-group-x"], ["--gid", "no such group"]),
    (["--umask", "0999"], ["--umask", "octal"]),
    (["--umask", "1777"], ["--umask", "between 000 and 777"]),
    (["--endpoint-url", "s3.example.org"], ["must start with http:// or https://", "https://s3.example.org"]),
    (["--endpoint-url", "ftp://s3.example.org"], ["must start with http:// or https://"]),
    (["--endpoint-url", "http://host:port"], ["invalid port"]),
    (["-o", "bogus"], ["unknown mount option 'bogus'"]),
    (["-o", "ttl"], ["mount option 'ttl' needs a value"]),
    (["-o", "debug=yes"], ["mount option 'debug' takes no value"]),
    (["-o", "ttl=soon"], ["--ttl", "'soon'"]),
    (["-o"], ["-o needs a list of mount options"]),
    (["-o", "allow_other,allow_root"], ["allow_other and allow_root exclude each other"]),
    (["--backend", "ftp"], ["--backend", "invalid choice"]),
])
def test_bad_option_values(args, words, capsys, mountpoint):
    one_line_exit(capsys, ["bucket", str(mountpoint), *args], *words)


@pytest.mark.parametrize("bucket, words", [
    ("/data/store", ["'/data/store' is not a valid bucket name", "did you mean --backend local?"]),
    ("./store", ["did you mean --backend local?"]),
    ("my bucket!", ["'my bucket!' is not a valid bucket name"]),
])
def test_bad_bucket_names(bucket, words, capsys, mountpoint):
    one_line_exit(capsys, [bucket, str(mountpoint)], *words)


def test_local_store_errors_in_user_terms(capsys, mountpoint, tmp_path):
    one_line_exit(capsys, [str(tmp_path / "nowhere"), str(mountpoint), "--backend", "local"],
                  str(tmp_path / "nowhere"), "no such directory")
    (tmp_path / "file").write_text("x")
    line = one_line_exit(capsys, [str(tmp_path / "file"), str(mountpoint), "--backend", "local"], "is not a directory")
    assert "endpoint" not in line and "bucket" not in line


def test_mountpoint_mistakes(capsys, tmp_path):
    one_line_exit(capsys, ["bucket", str(tmp_path / "missing")], "does not exist")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    one_line_exit(capsys, ["bucket", str(tmp_path / "full")], "not empty")


def test_endpoint_from_the_environment_without_scheme(capsys, mountpoint, monkeypatch):
    monkeypatch.setenv("CC_ENDPOINT_URL", "s3.example.org")
    one_line_exit(capsys, ["bucket", str(mountpoint)], "'s3.example.org' must start with http:// or https://",
                  "CC_ENDPOINT_URL")


def test_unknown_profile(capsys, mountpoint):
    one_line_exit(capsys, ["bucket", str(mountpoint), "--profile", "no-such-profile"],
                  "no AWS profile 'no-such-profile'")


def test_no_credentials_found_sends_nothing(capsys, mountpoint):
    with socket.create_server(("127.0.0.1", 0)) as listener:  # an endpoint that records any connection
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        one_line_exit(capsys, ["bucket", str(mountpoint), "--endpoint-url", endpoint], "no credentials found",
                      "nothing was sent", endpoint)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_credentials_refused_by_the_server(rclone_server, capsys, mountpoint, monkeypatch):
    bucket = "cc-cli-refused"
    rclone_server.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("CC_ACCESS_KEY", rclone_server.access_key)
    monkeypatch.setenv("CC_SECRET_KEY", "not-the-secret")
    line = one_line_exit(capsys, [bucket, str(mountpoint), "--endpoint-url", rclone_server.endpoint_url],
                         "credentials refused by the server", rclone_server.endpoint_url, "SignatureDoesNotMatch")
    assert "not-the-secret" not in line and rclone_server.access_key not in line


def test_profile_credentials_and_region_reach_the_server(rclone_server, capsys, mountpoint, monkeypatch, tmp_path):
    """--profile takes the keys from ~/.aws (CC_* keys are then not used) and --region is the client's."""
    from cottoncandy.backends.connect import make_backend

    bucket = "cc-cli-profile"
    rclone_server.client().create_bucket(Bucket=bucket)
    aws = tmp_path / "aws-credentials"
    aws.write_text(f"[lab]\naws_access_key_id = {rclone_server.access_key}\n"
                   f"aws_secret_access_key = {rclone_server.secret_key}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws))
    monkeypatch.setenv("CC_ACCESS_KEY", "ignored-key")
    monkeypatch.setenv("CC_SECRET_KEY", "ignored-secret")
    store = make_backend(bucket, endpoint_url=rclone_server.endpoint_url, profile="lab", region="eu-west-3")
    try:
        assert store.client.meta.region_name == "eu-west-3"
        assert store.list_dir("").objects == []  # the profile's keys were accepted
    finally:
        store.close()
    # without the profile the (wrong) CC_* keys are used and refused
    one_line_exit(capsys, [bucket, str(mountpoint), "--endpoint-url", rclone_server.endpoint_url],
                  "credentials refused by the server")


# -- the background log file --------------------------------------------------------


ROTATION_SCRIPT = """
import logging, os, sys
from pathlib import Path
from cottoncandy.fuse import mountlog
mountlog.LOG_MAX_BYTES = 4096
mountlog.setup_logging("cottoncandy-mount", False, False, None, Path(sys.argv[1]))
for i in range(400):
    logging.getLogger("cottoncandy.test").info("line %d %s", i, "x" * 40)
os.write(2, b"written to fd 2 after the rotations\\n")
"""


def test_background_log_is_rotated_and_keeps_stderr(tmp_path):
    """The file stays bounded, and what C code writes to fd 2 lands in the current file."""
    log = tmp_path / "state" / "mnt.log"
    log.parent.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", ROTATION_SCRIPT, str(log)], env=mount_env(), check=True, timeout=60)
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == ["mnt.log", "mnt.log.1", "mnt.log.2"]
    assert all((log.parent / name).stat().st_size <= 4096 + 200 for name in files)
    current = log.read_text()
    assert "line 399" in current and "written to fd 2 after the rotations" in current
