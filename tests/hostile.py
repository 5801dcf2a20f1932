"""Hostile objects for the broken-input tests: corrupt metadata and bodies, odd keys.

Each object is written around our writer (raw boto3 ``put_object``, or files
plus a JSON sidecar for the local backend), as a buggy or malicious writer
would leave it. :data:`GOOD` is the well-formed array every test reads back
afterwards to prove that one bad object harms nothing else.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numcodecs
import numpy as np

from cottoncandy.backends.local import SIDECAR_SUFFIX
from cottoncandy.errors import ArrayFormatError, CottonCandyError, UnknownCodecError

GOOD = np.arange(1000, dtype="<f8")
GOOD_META = {"dtype": "<f8", "shape": "1000", "compression": "False", "order": "C"}


@dataclass(frozen=True)
class Bad:
    """A corrupt raw array: its body, its user metadata and the error reading it must raise."""

    body: bytes
    metadata: dict[str, str]
    error: type[Exception] = ArrayFormatError


def _meta(**fields: str) -> dict[str, str]:
    return {**GOOD_META, **fields}


#: Array metadata (``dtype`` and ``shape`` present) that no reader may accept.
BAD_METADATA: dict[str, dict[str, str]] = {
    "dtype_garbage": _meta(dtype="<x9"),
    "dtype_unknown_size": _meta(dtype="<f7"),
    "dtype_words": _meta(dtype="garbage"),
    "dtype_object": _meta(dtype="|O"),
    "dtype_object_bare": _meta(dtype="O"),
    "dtype_subarray": _meta(dtype="(2,)<f8", shape="500"),
    "dtype_empty": _meta(dtype=""),
    "dtype_no_size": _meta(dtype="<U0"),
    "shape_negative": _meta(shape="-1,1000"),
    "shape_words": _meta(shape="a,b"),
    "shape_empty_dim": _meta(shape="10,,100"),
    "shape_float": _meta(shape="1e3"),
    "shape_huge": _meta(shape="1000000000000,1000000000"),
    "shape_too_large": _meta(shape=f"{2**40},1000000"),
    "shape_overflow": _meta(shape="9223372036854775807,9223372036854775807,16"),
    "shape_many_dims": _meta(shape=",".join(["1"] * 100)),
    "order_x": _meta(order="X"),
    "legacy_gzip_maybe": {"dtype": "<f8", "shape": "1000", "gzip": "maybe"},
}
#: User metadata that does not describe a raw array at all (no reader may take it for one).
NOT_ARRAYS: dict[str, dict[str, str]] = {
    "shape_only": {"shape": "3"},
    "dtype_only": {"dtype": "<f8"},
}


def bad_objects() -> dict[str, Bad]:
    """Name -> corrupt raw array (the name is also the key's last segment)."""
    raw = GOOD.tobytes()
    gz = gzip.compress(raw)
    zstd = bytes(numcodecs.Zstd().encode(raw))
    return {
        # metadata that cannot describe an array
        **{name: Bad(raw, metadata) for name, metadata in BAD_METADATA.items()},
        "codec_unknown": Bad(raw, _meta(compression="Snappy9"), UnknownCodecError),
        "codec_pickle": Bad(raw, _meta(compression="pickle"), UnknownCodecError),
        "legacy_gzip_true_raw_body": Bad(raw, {"dtype": "<f8", "shape": "1000", "gzip": "True"}),
        # bodies that do not hold what the metadata says
        "body_short": Bad(raw[:-8], _meta()),
        "body_long": Bad(raw + b"\0" * 8, _meta()),
        "body_empty": Bad(b"", _meta()),
        "gzip_truncated": Bad(gz[: len(gz) // 2], _meta(compression="gzip")),
        "gzip_garbage": Bad(b"\x1f\x8bnot really gzip" * 20, _meta(compression="gzip")),
        "gzip_too_little": Bad(gzip.compress(raw[:-8]), _meta(compression="gzip")),
        "gzip_trailing_junk": Bad(gz + b"junk after the member", _meta(compression="gzip")),
        "zstd_truncated": Bad(zstd[: len(zstd) // 2], _meta(compression="Zstd")),
        "zstd_garbage": Bad(b"\x28\xb5\x2f\xfdgarbage" * 20, _meta(compression="Zstd")),
        "zstd_too_much": Bad(bytes(numcodecs.Zstd().encode(raw + raw)), _meta(compression="Zstd")),
        # too big to allocate here, or (with overcommit) decodes to far too few bytes
        "compressed_claims_huge": Bad(gz, _meta(compression="gzip", shape="100000000000"), CottonCandyError),
    }


def write_local(root: Path, key: str, body: bytes, metadata: dict[str, str] | None) -> None:
    """Write an object in the local-backend layout directly (file plus its JSON sidecar)."""
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    if metadata is not None:
        path.with_name(path.name + SIDECAR_SUFFIX).write_text(json.dumps(metadata))


def put_s3(client, bucket: str, key: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
    """Write an object with raw boto3, bypassing cottoncandy's writer."""
    client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata or {})
