"""Object key helpers: normalisation, validation and glob matching.

Keys are ``/``-separated strings. Repeated slashes collapse, one leading slash
is dropped, and keys that could escape a directory tree (``..`` segments), that
contain NUL, or that are longer than S3 allows are refused.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .errors import InvalidKeyError

MAX_KEY_BYTES = 1024
_SLASHES = re.compile(r"/{2,}")


def normalize_key(name: str, *, allow_empty: bool = False) -> str:
    """Return the canonical form of an object key, refusing illegal keys.

    Parameters
    ----------
    name : str
        Key as given by the user (``/a//b``, ``a/b/``...).
    allow_empty : bool
        Accept the empty key (the bucket root), as listings do.

    Returns
    -------
    str
        The key with repeated slashes collapsed and the leading slash dropped.
        A trailing slash is kept: it marks a prefix.

    Raises
    ------
    InvalidKeyError
        For ``..`` or ``.`` segments, NUL bytes, non-string input, keys over
        1024 bytes, and the empty key unless ``allow_empty``.
    """
    if not isinstance(name, str):
        raise InvalidKeyError(f"object key must be a str, not {type(name).__name__}")
    key = _SLASHES.sub("/", name)
    if key.startswith("/"):
        key = key[1:]
    if "\x00" in key:
        raise InvalidKeyError(f"object key {key!r} contains a NUL byte", key)
    if any(part in ("..", ".") for part in key.split("/")):
        raise InvalidKeyError(f"object key {key!r} contains a '.' or '..' segment", key)
    try:
        nbytes = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"object key {key!r} is not valid UTF-8", key) from exc
    if nbytes > MAX_KEY_BYTES:
        raise InvalidKeyError(
            f"object key {key[:40]!r}... is {nbytes} bytes long; at most {MAX_KEY_BYTES} are allowed",
            key,
        )
    if not key and not allow_empty:
        raise InvalidKeyError("object key is empty", key)
    return key


def normalize_prefix(name: str) -> str:
    """Return a listing prefix: ``''`` for the root, else the key with one trailing ``/``."""
    key = normalize_key(name or "", allow_empty=True)
    if key and not key.endswith("/"):
        key += "/"
    return key


def join(*parts: str) -> str:
    """Join key parts with single slashes."""
    return normalize_key("/".join(p for p in parts if p), allow_empty=True)


def has_magic(pattern: str) -> bool:
    """Tell whether a glob pattern contains a wildcard."""
    return any(ch in pattern for ch in "*?[")


def literal_prefix(pattern: str) -> str:
    """The part of a glob pattern before its first wildcard (used as a listing prefix)."""
    match = re.search(r"[*?\[]", pattern)
    return pattern if match is None else pattern[: match.start()]


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob pattern to a regex over whole keys.

    ``*`` and ``?`` never cross ``/``; ``**`` crosses any number of segments;
    ``[...]`` is a character class within one segment.
    """
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append(re.escape(ch))
                i += 1
                continue
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("(?!/)[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)
