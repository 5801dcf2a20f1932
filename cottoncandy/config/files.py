"""Reading the files cottoncandy 0.4.0 users have: ``options.cfg`` and ``~/.passwd-s3fs``.

Only reads, only when called. What the values mean and which source wins is
:mod:`cottoncandy.config.settings`' job.
"""

from __future__ import annotations

import configparser
import logging
import os
import stat
import sys
from pathlib import Path

from typing_extensions import TypeGuard

logger = logging.getLogger(__name__)

ENV_CONFIG_FILE = "CC_CONFIG_FILE"
#: Values meaning "not set": what 0.4.0 wrote (``False``) and what its docs left in files.
PLACEHOLDERS = frozenset(
    {"", "false", "none", "auto", "keysnotfound", "access_key", "secret_key", "fill_in"}
)
#: Words 0.4.0's ``string2bool`` read as true (``force_bucket_creation``).
TRUE_WORDS = frozenset({"true", "tru", "t", "y", "yes", "1", "on"})
#: 0.4.0 wrote this endpoint as a default; it means "plain AWS", best left to boto3.
_DEFAULT_AWS_ENDPOINTS = frozenset({"https://s3.amazonaws.com", "https://s3.amazonaws.com/"})
#: ``(section, option)`` of the config file -> name of the value here.
_FILE_KEYS = {
    ("login", "access_key"): "access_key",
    ("login", "secret_key"): "secret_key",
    ("login", "endpoint_url"): "endpoint_url",
    ("basic", "default_bucket"): "default_bucket",
    ("basic", "force_bucket_creation"): "force_bucket_creation",
    ("basic", "signature_version"): "signature_version",
}
#: s3fs-fuse's password file, relative to the home directory.
PASSWD_S3FS = ".passwd-s3fs"

# Versions of the files already warned about: one warning per problem and version of a file.
_warned: set[tuple] = set()


def is_set(value: object) -> TypeGuard[str]:
    """Tell whether a value from an argument, a variable or a file is set (a string, not a placeholder)."""
    return isinstance(value, str) and value.strip().lower() not in PLACEHOLDERS


def _warn_once(what: str, path: Path, message: str, *args: object) -> None:
    """Log a warning about ``path`` once per version of the file (several lookups per connection)."""
    try:
        st = path.stat()
        version: tuple = (what, str(path), st.st_mtime_ns, st.st_size, st.st_mode)
    except OSError:
        version = (what, str(path))
    if version not in _warned:
        _warned.add(version)
        logger.warning(message, *args)


def config_file_paths() -> list[Path]:
    """Candidate config files, in lookup order (``CC_CONFIG_FILE`` alone when set)."""
    explicit = os.environ.get(ENV_CONFIG_FILE)
    if explicit:
        return [Path(explicit).expanduser()]
    home = Path.home()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    data_home = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    paths = [config_home / "cottoncandy" / "options.cfg"]
    if sys.platform == "darwin":  # where 0.4.0's appdirs put it on macOS
        paths.append(home / "Library" / "Application Support" / "cottoncandy" / "options.cfg")
    paths.append(data_home / "cottoncandy" / "options.cfg")
    return paths


def read_config_file() -> dict[str, str]:
    """Read the first existing cottoncandy config file.

    Returns
    -------
    dict
        ``access_key``, ``secret_key``, ``endpoint_url``, ``default_bucket``,
        ``force_bucket_creation``, ``signature_version``: those that are set
        (placeholders dropped). Empty when no file exists, or when it is not
        valid INI (a warning naming the file is logged, without its values).
    """
    for path in config_file_paths():
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError) as exc:
            _warn_once("config", path, "ignoring the cottoncandy config file %s: it is not a valid INI file (%s)",
                       path, type(exc).__name__)
            return {}
        values = {name: parser.get(section, option, fallback=None) for (section, option), name in _FILE_KEYS.items()}
        if (values["endpoint_url"] or "").strip() in _DEFAULT_AWS_ENDPOINTS:
            values["endpoint_url"] = None
        logger.debug("read cottoncandy config file %s", path)
        return {k: v.strip() for k, v in values.items() if is_set(v)}
    return {}


def read_passwd_s3fs(bucket: str | None = None) -> tuple[str, str] | None:
    """Keys from ``~/.passwd-s3fs``, the file s3fs-fuse (and cottoncandy 0.4.0) read.

    Lines are ``ACCESS_KEY:SECRET_KEY`` or, for one bucket,
    ``BUCKET:ACCESS_KEY:SECRET_KEY`` (s3fs-fuse's format); blank lines and
    ``#`` comments are skipped. A line for ``bucket`` wins over the plain
    pair; otherwise the first plain pair is used.

    A file that other users can read is used anyway, with a warning:
    s3fs-fuse refuses it, but 0.4.0 read it whatever its mode, and refusing
    it would lock out the people this fallback exists for. The warning says
    how to fix the mode.

    Parameters
    ----------
    bucket : str, optional
        The bucket being opened.

    Returns
    -------
    (access_key, secret_key) or None
        ``None`` when the file does not exist or holds no usable pair.
    """
    path = Path.home() / PASSWD_S3FS
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        _warn_once("passwd", path, "ignoring %s: cannot read it (%s)", path, type(exc).__name__)
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _warn_once("passwd-mode", path, "%s is accessible to other users (mode %s); using it as cottoncandy 0.4.0 "
                   "did, but s3fs-fuse refuses such a file: run 'chmod 600 %s'", path,
                   stat.filemode(mode), path)
    plain = for_bucket = None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(":")]
        if len(fields) == 2 and all(fields):
            plain = plain or (fields[0], fields[1])
        elif len(fields) == 3 and all(fields):
            if bucket is not None and fields[0] == bucket and for_bucket is None:
                for_bucket = (fields[1], fields[2])
        else:
            _warn_once(f"passwd-line-{number}", path, "%s line %d is neither ACCESS_KEY:SECRET_KEY nor "
                       "BUCKET:ACCESS_KEY:SECRET_KEY; skipped", path, number)
    return for_bucket or plain


