"""Command-line options of ``cottoncandy-mount``: the parser, ``-o`` mount options and their bounds.

The command follows the conventions of other FUSE tools so that it works from
``/etc/fstab`` (through ``mount.fuse3``) and from scripts written for s3fs or
rclone:

- ``-o opt[,opt=value...]`` takes FUSE's options (``ro``, ``allow_other``,
  ``allow_root``, ``default_permissions``, ``auto_unmount``, ``uid=``,
  ``gid=``, ``umask=``, ``nodev``, ``nosuid``, ``noexec``) and every long
  option of ours under its name with ``_`` (``-o endpoint_url=...,ttl=60``);
  it is rewritten into the long options before parsing, so both spellings
  share one set of checks and messages;
- what ``mount(8)`` and ``mount.fuse3`` add on their own (``rw``, ``dev``,
  ``suid``, ``exec``, ``defaults``, ``_netdev``, ``noauto``, ``user``...) is
  accepted and ignored, as FUSE tools do; anything else is refused;
- every mistake is one line on stderr and exit status 2, before anything is
  mounted (:meth:`MountArgumentParser.error`).
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from typing_extensions import override

from .. import __version__
from .mountlog import LOG_BACKUPS, LOG_MAX_BYTES

PROG = "cottoncandy-mount"
#: Exit status of a usage or configuration mistake (argparse's own convention).
USAGE_ERROR = 2

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
#: Bounds of ``--block-size``: smaller blocks mean a GET per few kernel reads, larger ones
#: hold that much memory per block in flight.
MIN_BLOCK_SIZE, MAX_BLOCK_SIZE = 64 * KiB, 256 * MiB

_UNITS = {"": 1, "b": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1 << 40}

#: FUSE options that are always in effect: accepted, nothing to do.
ALWAYS_ON = frozenset({"ro", "default_permissions", "auto_unmount"})
#: FUSE options handed to libfuse as given.
PASSED_TO_FUSE = frozenset({"allow_root", "nodev", "nosuid", "noexec"})
#: Options ``mount(8)``/``mount.fuse3`` pass or fstab lines carry that mean nothing for a
#: read-only FUSE mount (``rw`` included: the mount is read-only whatever it says).
IGNORED = frozenset({
    "rw", "dev", "suid", "exec", "async", "sync", "dirsync", "atime", "noatime", "diratime", "nodiratime",
    "relatime", "norelatime", "strictatime", "nostrictatime", "lazytime", "nolazytime", "iversion",
    "noiversion", "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "_netdev",
    "nofail", "silent", "loud",
})
#: Prefixes of options kept for other programs (systemd's ``x-systemd.*``, ``comment=``).
IGNORED_PREFIXES = ("x-", "comment=")
#: Bucket names botocore accepts (S3-compatible servers allow more than AWS's rules).
_BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")


def parse_size(text: str) -> int:
    """Parse ``1GiB``, ``8MiB``, ``512k``, ``1048576`` (binary units) to bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (use e.g. 512MiB, 1GiB)")
    value = int(float(match.group(1)) * _UNITS[match.group(2)])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, not {text!r}")
    return value


def format_size(nbytes: int) -> str:
    """``8388608`` -> ``'8MiB'`` (the largest binary unit that divides it, else one decimal)."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if nbytes >= factor:
            value = nbytes / factor
            return f"{value:.0f}{unit}" if nbytes % factor == 0 else f"{value:.1f}{unit}"
    return f"{nbytes}B"


def bounded(convert: Callable[[str], float], what: str, minimum: float, strict: bool) -> Callable[[str], float]:
    """An argparse type: ``convert(text)``, refused unless ``> minimum`` (strict) or ``>= minimum``."""
    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}") from None
        if value < minimum or (strict and value == minimum):
            bound = f"> {minimum}" if strict else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, not {text!r}")
        return value

    return parse


positive_seconds = bounded(float, "number of seconds", 0, strict=True)
non_negative_seconds = bounded(float, "number of seconds", 0, strict=False)
non_negative_int = bounded(int, "count", 0, strict=False)
positive_int = bounded(int, "count", 0, strict=True)


def block_size(text: str) -> int:
    """An argparse type: a size within ``[MIN_BLOCK_SIZE, MAX_BLOCK_SIZE]``."""
    value = parse_size(text)
    if not MIN_BLOCK_SIZE <= value <= MAX_BLOCK_SIZE:
        raise argparse.ArgumentTypeError(f"block size must be between {format_size(MIN_BLOCK_SIZE)} and "
                                         f"{format_size(MAX_BLOCK_SIZE)}, not {text!r}")
    return value


def _owner(lookup: Callable[[str], Any], what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if text.isdigit():
            return int(text)
        try:
            return int(lookup(text)[2])  # pw_uid / gr_gid
        except KeyError:
            raise argparse.ArgumentTypeError(f"no such {what} {text!r}") from None

    return parse


user_id = _owner(pwd.getpwnam, "user")
group_id = _owner(grp.getgrnam, "group")


def umask(text: str) -> int:
    """An argparse type: an octal umask such as ``022`` or ``0077``."""
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid umask {text!r} (octal, e.g. 022)") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"umask must be between 000 and 777, not {text!r}")
    return value


def endpoint_url(text: str) -> str:
    """An argparse type: an ``http://`` or ``https://`` URL with a host."""
    from ..backends.s3client import check_endpoint_url

    try:
        return check_endpoint_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def physical_memory() -> int | None:
    """Bytes of RAM of this machine, or ``None`` when the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


# -- -o mount options ---------------------------------------------------------


def split_mount_options(text: str) -> list[str]:
    """``'a,b=x\\,y'`` -> ``['a', 'b=x,y']`` (a backslash escapes a comma, as in libfuse)."""
    return [part.replace("\\,", ",") for part in re.split(r"(?<!\\),", text) if part]


class MountArgumentParser(argparse.ArgumentParser):
    """An argparse parser that also reads ``-o`` mount options and reports mistakes in one line."""

    @override
    def error(self, message: str) -> NoReturn:
        """Print ``cottoncandy-mount: <message>`` (one line, no usage dump) and exit with status 2."""
        self.exit(USAGE_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")

    @override
    def parse_known_args(  # type: ignore[override]  # typeshed's overloads only narrow the namespace's type
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Rewrite ``-o`` options into long options, parse, then check options against each other."""
        argv = list(sys.argv[1:] if args is None else args)
        expanded, fuse_options, ignored = self._expand_mount_options(argv)
        parsed, extras = super().parse_known_args(expanded, namespace)
        parsed.fuse_options = sorted(set(fuse_options))
        parsed.ignored_options = ignored
        self._check(parsed)
        return parsed, extras

    def _long_options(self) -> dict[str, argparse.Action]:
        """Our long options by their ``-o`` name (``endpoint_url``), help and version excluded."""
        names = {}
        for action in self._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            for option in action.option_strings:
                if option.startswith("--"):
                    names[option[2:].replace("-", "_")] = action
        return names

    def _expand_mount_options(self, argv: list[str]) -> tuple[list[str], list[str], list[str]]:
        """``argv`` without ``-o``, the FUSE options for libfuse, and the options ignored."""
        longs = self._long_options()
        out: list[str] = []
        fuse_options: list[str] = []
        ignored: list[str] = []
        words = iter(argv)
        for word in words:
            if word == "--":
                out.append(word)
                out.extend(words)
                break
            if not word.startswith("-o"):
                out.append(word)
                continue
            text = word[2:] or next(words, None)
            if text is None:
                self.error("-o needs a list of mount options (-o opt[,opt=value...])")
            for option in split_mount_options(text):
                name, has_value, value = option.partition("=")
                key = name.replace("-", "_")
                if key in ALWAYS_ON and not has_value:
                    continue
                if key in PASSED_TO_FUSE and not has_value:
                    fuse_options.append(key)
                elif key in IGNORED or option.startswith(IGNORED_PREFIXES):
                    ignored.append(option)
                elif key in longs:
                    out.extend(self._long_option(longs[key], key, bool(has_value), value))
                else:
                    self.error(f"unknown mount option {option!r}")
        return out, fuse_options, ignored

    def _long_option(self, action: argparse.Action, key: str, has_value: bool, value: str) -> list[str]:
        flag = next(s for s in action.option_strings if s.startswith("--"))
        if action.nargs == 0:
            if has_value:
                self.error(f"mount option {key!r} takes no value")
            return [flag]
        if not has_value:
            self.error(f"mount option {key!r} needs a value ({key}=...)")
        return [f"{flag}={value}"]

    def _check(self, args: argparse.Namespace) -> None:
        """Checks that involve several options or the machine (argparse checks one value at a time)."""
        if args.cache_size < 2 * args.block_size:
            self.error(f"--cache-size {format_size(args.cache_size)} must hold at least two blocks "
                       f"(2 x --block-size {format_size(args.block_size)})")
        memory = physical_memory()
        chosen = args.cache_size != parse_size(self.get_default("cache_size"))  # the default is only a cap
        if chosen and memory is not None and args.cache_size > memory:
            self.error(f"--cache-size {format_size(args.cache_size)} is more than this machine's memory "
                       f"({format_size(memory)})")
        if args.allow_other and "allow_root" in args.fuse_options:
            self.error("allow_other and allow_root exclude each other")
        if args.backend == "s3":
            check_bucket_name(args.bucket, self.error)


def check_bucket_name(name: str, error: Callable[[str], object]) -> None:
    """Call ``error(message)`` unless ``name`` can be a bucket (a path suggests ``--backend local``)."""
    if _BUCKET_NAME.fullmatch(name) or name.startswith("arn:"):
        return
    if "/" in name or name.startswith("~"):
        error(f"{name!r} is not a valid bucket name (did you mean --backend local?)")
    error(f"{name!r} is not a valid bucket name (letters, digits, '.', '-' and '_')")


def build_parser() -> MountArgumentParser:
    """The command-line parser (``--help`` documents every option, default and bound)."""
    parser = MountArgumentParser(
        prog=PROG,
        description="Mount an S3 bucket (or a local cottoncandy store) read-only. Arrays appear as "
        ".npy files decoded on the fly, prefixes as directories, dask arrays as one .npy and sparse "
        "matrices as .npz. Credentials come from CC_ACCESS_KEY/CC_SECRET_KEY, "
        "~/.config/cottoncandy/options.cfg, ~/.passwd-s3fs, --profile or boto3's own chain (AWS_* variables, "
        "~/.aws), never from the command line. Unmount with 'fusermount3 -u MOUNTPOINT' or 'umount'.",
        epilog="Exit status: 0 mounted (or unmounted, in the foreground); 2 a mistake in the arguments "
        "or the configuration (bad option value, no such bucket or directory, no or refused "
        "credentials, unusable mountpoint), reported in one line before anything is mounted; 1 the "
        "server could not be reached or the mount itself failed.",
    )
    parser.add_argument("bucket", metavar="BUCKET", help="bucket name (a directory with --backend local)")
    parser.add_argument("mountpoint", metavar="MOUNTPOINT", help="existing empty directory to mount on")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-o", metavar="OPT[,OPT=VALUE...]", dest="_mount_options", action="append",
                        help="mount options, as in /etc/fstab: FUSE's ro, allow_other, allow_root, "
                        "default_permissions, auto_unmount, nodev, nosuid, noexec, uid=, gid=, umask=, and "
                        "every long option below by its name with '_' (-o endpoint_url=https://...,ttl=60,"
                        "cache_size=2GiB). What mount(8) and mount.fuse3 add (rw, dev, suid, exec, defaults, "
                        "_netdev, noauto, user, users, x-*...) is accepted and ignored; the mount is always "
                        "read-only")
    parser.add_argument("--endpoint-url", type=endpoint_url, default=None, metavar="URL",
                        help="S3 endpoint, http:// or https:// (default: CC_ENDPOINT_URL, the config file, "
                        "or AWS)")
    parser.add_argument("--profile", default=None,
                        help="AWS profile (~/.aws/config, ~/.aws/credentials) for the credentials and region; "
                        "when given, CC_ACCESS_KEY/CC_SECRET_KEY and the config file's keys are not used "
                        "(default: AWS_PROFILE or none)")
    parser.add_argument("--region", default=None,
                        help="S3 region (default: the profile's or AWS_DEFAULT_REGION; us-east-1 for servers "
                        "other than AWS)")
    parser.add_argument("--prefix", default="",
                        help="show only keys under this prefix; a prefix with nothing under it is mounted "
                        "empty, with a warning (default: the whole bucket)")
    parser.add_argument("--backend", choices=("s3", "local"), default="s3", help="storage backend (default: %(default)s)")
    parser.add_argument("--cache-size", type=parse_size, default="1GiB", metavar="SIZE",
                        help="memory for cached decoded blocks, built .npz files and gzip checkpoints (these "
                        "get a quarter, at most 64 MiB): at least two blocks, at most the machine's memory "
                        "(default: %(default)s)")
    parser.add_argument("--block-size", type=block_size, default="8MiB", metavar="SIZE",
                        help=f"size of a cached block and of one ranged GET, {format_size(MIN_BLOCK_SIZE)} to "
                        f"{format_size(MAX_BLOCK_SIZE)} (default: %(default)s)")
    parser.add_argument("--ttl", type=non_negative_seconds, default=30.0, metavar="SECONDS",
                        help="seconds listings and object metadata are trusted before being fetched "
                        "again (default: %(default)s)")
    parser.add_argument("--timeout", type=positive_seconds, default=60.0, metavar="SECONDS",
                        help="seconds to wait for the server to accept a connection (at most 10) or to send "
                        "the next bytes of an answer; a request that times out is retried (default: %(default)s)")
    parser.add_argument("--retries", type=non_negative_int, default=4, metavar="N",
                        help="retries of a failed request (connection refused or reset, timeout, HTTP 5xx, "
                        "throttling), with exponential backoff, before the read fails with EIO; a read "
                        "fails within about (N+1) x SECONDS plus the backoff (default: %(default)s)")
    parser.add_argument("--workers", type=positive_int, default=8, metavar="N", help="parallel GETs of the read path (default: %(default)s)")
    parser.add_argument("--max-inflight", type=positive_int, default=64, metavar="N",
                        help="requests in flight at once when a directory needs its objects' metadata "
                        "(HEADs) (default: %(default)s)")
    parser.add_argument("--metadata-cache", default=None, metavar="DIR|off",
                        help="directory of the persistent metadata index, which remembers each object's "
                        "array metadata by ETag so that later mounts list without a HEAD per object; 'off' "
                        "keeps nothing on disk (default: $XDG_CACHE_HOME/cottoncandy, i.e. "
                        "~/.cache/cottoncandy)")
    parser.add_argument("--uid", type=user_id, default=None, metavar="USER",
                        help="owner of every file and directory, a user name or number (default: you); "
                        "others can only use the mount with --allow-other")
    parser.add_argument("--gid", type=group_id, default=None, metavar="GROUP",
                        help="group of every file and directory, a name or number (default: your group)")
    parser.add_argument("--umask", type=umask, default=None, metavar="OCTAL",
                        help="permission bits removed from the read-only modes, files 0444 and "
                        "directories 0555 (e.g. 027 gives 0440/0550; default: 000)")
    parser.add_argument("--foreground", "-f", action="store_true",
                        help="stay in the foreground, logging to stderr (default: return once the mount is "
                        "live, logging to a file)")
    parser.add_argument("--allow-other", action="store_true",
                        help="let other users read the mount (default: only you; needs user_allow_other "
                        "in /etc/fuse.conf unless root)")
    parser.add_argument("--log-file", default=None, metavar="PATH",
                        help="append logs here (default: stderr in the foreground; in the background "
                        "$XDG_STATE_HOME/cottoncandy/<mountpoint>.log, ~/.local/state/cottoncandy/ without "
                        f"XDG_STATE_HOME, rotated at {format_size(LOG_MAX_BYTES)} with {LOG_BACKUPS} old "
                        "files kept; the path is printed at mount)")
    parser.add_argument("--debug", action="store_true",
                        help="log the mount's own decisions (lookups, cache, retries) (default: off)")
    parser.add_argument("--debug-wire", action="store_true",
                        help="also log every S3 request and response (botocore) and every FUSE request "
                        "(libfuse); very verbose; credentials are masked (default: off)")
    return parser


def s3_settings(args: argparse.Namespace, quick: bool = False) -> dict[str, Any]:
    """:class:`~cottoncandy.config.S3Settings` fields from ``--timeout`` and ``--retries``.

    ``quick`` (the checks before mounting) caps retries and the connect timeout
    so that a wrong endpoint is reported in seconds.
    """
    settings: dict[str, object] = {"read_timeout": args.timeout, "connect_timeout": min(args.timeout, 10.0),
                                   "max_attempts": args.retries + 1, "max_inflight": args.max_inflight}
    if quick:
        settings["max_attempts"] = min(2, args.retries + 1)
        settings["connect_timeout"] = min(5.0, args.timeout)
    return settings
