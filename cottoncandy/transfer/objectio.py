"""Plain objects: bodies, streams, JSON, and local files and directories."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from typing_extensions import override

from ..backends.base import BodyStream, StorageBackend

from ..errors import ArrayFormatError, InvalidKeyError
from ..paths import join, normalize_key
from .listing import iter_tree
from .progress import ProgressArg, progress_callback


class CloudStream(io.RawIOBase):
    """An open object, readable like a binary file: ``read``, ``readinto``, lines, ``with``.

    It streams: the body is not held in memory. It is seekable when the
    backend's stream is (local files; S3 bodies are not).

    Attributes
    ----------
    content : binary file
        The backend's stream (0.4.0's ``CloudStream.content``).
    metadata : dict
        The object's user metadata (0.4.0's ``CloudStream.metadata``).
    """

    def __init__(self, content: BodyStream, metadata: dict[str, str]):
        super().__init__()
        self.content = content
        self.metadata = metadata

    @override
    def readable(self) -> bool:
        return True

    @override
    def readinto(self, buffer) -> int:
        return self.content.readinto(buffer)

    @override
    def read(self, size: int | None = -1) -> bytes:
        return self.content.read() if size is None or size < 0 else self.content.read(size)

    @override
    def seekable(self) -> bool:
        return self.content.seekable()

    @override
    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.content.seek(offset, whence)

    @override
    def tell(self) -> int:
        return self.content.tell()

    @override
    def close(self) -> None:
        if not self.closed:
            self.content.close()
        super().close()


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
