"""Plain objects: bodies, streams, JSON, and local files and directories."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from .backends.base import StorageBackend
from .errors import ArrayFormatError, InvalidKeyError
from .listing import iter_tree
from .paths import join, normalize_key
from .progress import ProgressArg, progress_callback


@dataclass
class CloudStream:
    """An open object: ``content`` is a readable binary stream, ``metadata`` its user metadata.

    Use it as a context manager, or close ``content`` when done.
    """

    content: BinaryIO
    metadata: dict[str, str]

    def __enter__(self) -> "CloudStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.content.close()


def string_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """User metadata as S3 stores it: string keys and values."""
    return {str(k): str(v) for k, v in metadata.items()}


def read_body(backend: StorageBackend, key: str) -> bytes:
    """Return an object's whole body (one consistent version)."""
    info = backend.head(key)
    buffer = bytearray(info.size)
    if info.size:
        backend.read_into(key, memoryview(buffer), 0, etag=info.etag)
    return bytes(buffer)


def open_cloud_stream(backend: StorageBackend, key: str) -> CloudStream:
    """Open an object for streaming."""
    stream, info = backend.open_stream(key)
    return CloudStream(stream, dict(info.metadata or {}))


def to_json(value: Any) -> bytes:
    """Encode a JSON-serialisable value."""
    return json.dumps(value).encode("utf-8")


def from_json(body: bytes, key: str) -> Any:
    """Decode a JSON body, naming the key on error."""
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ArrayFormatError(f"{key}: not valid JSON ({exc})", key) from exc


def upload_file(backend: StorageBackend, file_name: str | os.PathLike, key: str, progress: ProgressArg) -> None:
    """Upload one local file to ``key``."""
    path = Path(file_name)
    with open(path, "rb") as fh, progress_callback(progress, path.stat().st_size, key) as callback:
        backend.write(key, fh, {}, callback)


def upload_directory(backend: StorageBackend, disk_path: str | os.PathLike, cloud_path: str | None,
                     recursive: bool, progress: ProgressArg) -> list[str]:
    """Upload the files of ``disk_path`` under ``cloud_path``; return the keys written."""
    root = Path(disk_path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    prefix = normalize_key(cloud_path if cloud_path is not None else os.fspath(disk_path), allow_empty=True)
    files = sorted(root.rglob("*") if recursive else root.iterdir())
    keys = []
    for path in files:
        if path.is_file():
            key = join(prefix, path.relative_to(root).as_posix())
            upload_file(backend, path, key, progress)
            keys.append(key)
    return keys


def download_file(backend: StorageBackend, key: str, file_name: str | os.PathLike, progress: ProgressArg) -> None:
    """Write an object to ``file_name`` through a temporary file, so a failure leaves no partial file."""
    target = Path(file_name)
    info = backend.head(key)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + target.name + ".", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, progress_callback(progress, info.size, key) as callback:
            out.truncate(info.size)
            if info.size:
                import mmap

                with mmap.mmap(out.fileno(), info.size) as mapped:
                    backend.read_into(key, memoryview(mapped), 0, etag=info.etag, progress=callback)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def download_directory(backend: StorageBackend, prefix: str, disk_name: str | os.PathLike,
                       progress: ProgressArg) -> list[str]:
    """Download every object below ``prefix`` into ``disk_name``; return the local file names."""
    root = Path(disk_name).absolute()
    written = []
    for info in iter_tree(backend, prefix):
        relative = info.key[len(prefix):]
        target = (root / relative).absolute()
        if root not in target.parents:
            raise InvalidKeyError(f"{info.key} would be written outside {root}", info.key)
        download_file(backend, info.key, target, progress)
        written.append(str(target))
    return written
