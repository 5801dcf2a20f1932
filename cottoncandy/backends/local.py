"""A directory used as a bucket, in cottoncandy 0.4.0's on-disk layout.

Every object is a file under the root; its user metadata is the JSON object
in ``<key>.meta.json`` beside it. Sidecars and our temporary files never appear
in listings. Writes go to a temporary file in the same directory and are
renamed into place, so readers see the old or the new version, never a part.
No key reaches outside the root: ``.``/``..`` segments are refused, and
symbolic links are followed only while they resolve inside the root.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from typing_extensions import override

from ..errors import (
    ArrayFormatError,
    BucketNotFoundError,
    InvalidKeyError,
    ObjectNotFoundError,
    StorageError,
)
from ..usermeta import normalize_metadata
from .base import Body, BodyStream, Listing, ObjectInfo, ProgressCallback, StorageBackend

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".meta.json"
_TMP_MARK = ".cc-tmp-"
_COPY_CHUNK = 8 << 20


def _is_hidden(name: str) -> bool:
    return name.endswith(SIDECAR_SUFFIX) or (name.startswith(".") and _TMP_MARK in name)


class LocalBackend(StorageBackend):
    """Store objects as files under ``root``.

    Parameters
    ----------
    root : str or Path
        Directory acting as the bucket. Its parent holds the other "buckets".
        It need not exist: until the first write creates it, the store is
        empty (and :meth:`exists_bucket` says no).
    create : bool
        Create ``root`` now if it does not exist.

    Deleting (or moving away) the last object under a "directory" removes the
    directories left empty, up to the root, so that the name can hold an
    object again, as on S3.
    """

    def __init__(self, root: str | os.PathLike, create: bool = False):
        self.root = Path(root).expanduser().absolute()
        self.bucket = str(self.root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        if self.root.exists() and not self.root.is_dir():
            raise BucketNotFoundError(f"local store {self.root} is not a directory", str(self.root))
        self._real_root = os.path.realpath(self.root)

    @override
    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    @property
    @override
    def location(self) -> str:
        """``local:<root directory>``."""
        return f"local:{self._real_root}"

    # -- paths -------------------------------------------------------------
    # Symbolic links inside the store are followed only while they resolve
    # inside it: one pointing outside is invisible in listings, reads as a
    # missing object and refuses writes, so no key reaches a file outside the root.
    def _path(self, key: str, writing: bool = False) -> Path:
        if not key or key.endswith(SIDECAR_SUFFIX):
            raise InvalidKeyError(f"key {key!r} is not allowed on the local backend", key)
        parts = key.split("/")
        if key.startswith("/") or any(part in (".", "..") for part in parts):
            raise InvalidKeyError(f"key {key!r} has a '.' or '..' segment or is absolute", key)
        if "" in parts:  # 'a//x' or 'marker/': the file system would take them for 'a/x' or 'marker'
            if writing:
                raise InvalidKeyError(f"key {key!r} has an empty segment: a local store cannot hold it", key)
            raise ObjectNotFoundError(f"no such object: {key} (a local store cannot hold a key with an empty "
                                      "segment)", key)
        path = self.root / key
        if not self._inside(path):
            if writing:
                raise InvalidKeyError(f"key {key!r} resolves outside the store {self.root} "
                                      "(through a symbolic link); refusing to write there", key)
            raise ObjectNotFoundError(f"no such object: {key} (it resolves outside the store "
                                      "through a symbolic link)", key)
        return path

    def file_of(self, key: str) -> Path:
        """The file holding ``key`` (the key is checked as for a read; the file may not exist)."""
        return self._path(key)

    def _inside(self, path: str | Path) -> bool:
        """Whether ``path``, with every symbolic link resolved, is the root or under it."""
        real = os.path.realpath(path)
        return real == self._real_root or real.startswith(self._real_root + os.sep)

    def _visible(self, path: str | Path) -> bool:
        """Whether a directory entry may be listed: not a link leading out of the store."""
        return not os.path.islink(path) or self._inside(path)

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(path.name + SIDECAR_SUFFIX)

    def _key_of(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _info(self, key: str, path: Path, with_metadata: bool) -> ObjectInfo:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no such object: {key}", key) from None
        except NotADirectoryError:
            raise ObjectNotFoundError(f"no such object: {key}", key) from None
        if not path.is_file():
            raise ObjectNotFoundError(f"no such object: {key} (it is a prefix)", key)
        metadata = self._read_sidecar(key, path) if with_metadata else None
        etag = f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"
        return ObjectInfo(key, st.st_size, etag, st.st_mtime, metadata)

    def _read_sidecar(self, key: str, path: Path) -> dict[str, str]:
        try:
            text = self._sidecar(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ArrayFormatError(f"{key}: metadata sidecar is not valid JSON", key) from exc
        if not isinstance(data, dict):
            raise ArrayFormatError(f"{key}: metadata sidecar is not a JSON object", key)
        return normalize_metadata(data)

    # -- reading -----------------------------------------------------------
    @override
    def head(self, key: str) -> ObjectInfo:
        return self._info(key, self._path(key), with_metadata=True)

    def _open_checked(self, key: str, etag: str | None) -> io.BufferedReader:
        path = self._path(key)
        try:
            fh = open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFoundError(f"no such object: {key}", key) from None
        if etag is not None:
            st = os.fstat(fh.fileno())
            if f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}" != etag:
                fh.close()
                raise ObjectNotFoundError(f"{key} changed since it was opened", key)
        return fh

    @override
    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        with self._open_checked(key, etag) as fh:
            fh.seek(start)
            return fh.read(max(0, end - start))

    @override
    def read_into(self, key, buffer, start=0, etag=None, progress=None) -> None:
        view = memoryview(buffer).cast("B")
        with self._open_checked(key, etag) as fh:
            fh.seek(start)
            done = 0
            while done < len(view):
                n = fh.readinto(view[done : done + _COPY_CHUNK])
                if not n:
                    raise ArrayFormatError(
                        f"{key}: body ended after {start + done} bytes, {start + len(view)} expected", key
                    )
                done += n
                if progress:
                    progress(n)

    @override
    def open_stream(self, key: str) -> tuple[BodyStream, ObjectInfo]:
        info = self.head(key)
        return self._open_checked(key, None), info

    # -- writing -----------------------------------------------------------
    @override
    def write(self, key: str, body: Body, metadata: Mapping[str, str] | None = None,
              progress: ProgressCallback | None = None) -> None:
        path = self._path(key, writing=True)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise StorageError(f"cannot create {key}: a parent is an object", key) from exc
        if path.is_dir():
            raise StorageError(f"cannot write {key}: it is a prefix holding other objects", key)
        meta_text = json.dumps(dict(metadata or {}), indent=4)
        data_tmp = self._write_temp(path, body, progress)
        try:
            meta_tmp = self._write_temp(self._sidecar(path), [meta_text.encode("utf-8")], None)
        except BaseException:
            os.unlink(data_tmp)
            raise
        # The sidecar goes first: a reader racing us sees new metadata with the old
        # body for an instant at worst, and the body's new ETag invalidates caches.
        os.replace(meta_tmp, self._sidecar(path))
        os.replace(data_tmp, path)

    @staticmethod
    def _write_temp(path: Path, body, progress: ProgressCallback | None) -> str:
        fd, tmp = tempfile.mkstemp(prefix="." + path.name[:100] + _TMP_MARK, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                if hasattr(body, "read"):
                    while chunk := body.read(_COPY_CHUNK):
                        out.write(chunk)
                        if progress:
                            progress(len(chunk))
                else:
                    chunks = [body] if isinstance(body, (bytes, bytearray, memoryview)) else body
                    for chunk in chunks:
                        out.write(chunk)
                        if progress:
                            progress(memoryview(chunk).nbytes)
            return tmp
        except BaseException:
            os.unlink(tmp)
            raise

    @override
    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            try:
                path = self._path(key)
            except ObjectNotFoundError:
                continue  # resolves outside the store: not one of our objects
            for target in (path, self._sidecar(path)):
                try:
                    target.unlink()
                except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                    pass
            self._prune_empty_dirs(path.parent)

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    @override
    def copy(self, src: str, dst: str) -> None:
        info = self.head(src)
        with self._open_checked(src, None) as fh:
            self.write(dst, fh, info.metadata)

    # -- listing -----------------------------------------------------------
    @override
    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base_dir = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base_dir if base_dir else self.root
        if not start.is_dir() or not self._inside(start):
            return
        for key in sorted(self._walk_keys(start)):
            if key.startswith(prefix):
                try:
                    yield self._info(key, self.root / key, with_metadata=False)
                except ObjectNotFoundError:
                    continue  # removed while we listed

    def _walk_keys(self, directory: Path) -> Iterator[str]:
        for dirpath, _dirnames, filenames in os.walk(directory):
            rel = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if not _is_hidden(name) and self._visible(os.path.join(dirpath, name)):
                    yield name if rel == "." else f"{Path(rel).as_posix()}/{name}"

    @override
    def list_dir(self, prefix: str = "") -> Listing:
        directory = self.root / prefix if prefix else self.root
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        if not self._inside(directory):
            return Listing([], [])
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return Listing([], [])
        for entry in entries:
            if _is_hidden(entry.name) or (entry.is_symlink() and not self._inside(entry.path)):
                continue
            key = prefix + entry.name
            if entry.is_dir():
                prefixes.append(key + "/")
            elif entry.is_file():
                try:
                    objects.append(self._info(key, Path(entry.path), with_metadata=False))
                except ObjectNotFoundError:
                    continue
        prefixes.sort()  # S3 order: 'p.grp/' < 'p/' because '.' < '/'
        return Listing(objects, prefixes)

    # -- buckets -----------------------------------------------------------
    def _bucket_path(self, name: str | None) -> Path:
        if name is None:
            return self.root
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.root.parent / path

    @override
    def exists_bucket(self, name: str | None = None) -> bool:
        return self._bucket_path(name).is_dir()

    @override
    def create_bucket(self, name: str) -> None:
        self._bucket_path(name).mkdir(parents=True, exist_ok=True)

    @override
    def remove_bucket(self, name: str) -> None:
        path = self._bucket_path(name)
        try:
            path.rmdir()
        except FileNotFoundError:
            raise BucketNotFoundError(f"no such bucket: {path}", str(path)) from None
        except OSError as exc:
            raise StorageError(f"bucket {path} is not empty", str(path)) from exc

    @override
    def list_buckets(self) -> list[str]:
        # Sibling directories are the other buckets; their names open them with with_bucket().
        try:
            return sorted(p.name for p in self.root.parent.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    @override
    def with_bucket(self, name: str) -> "LocalBackend":
        return LocalBackend(self._bucket_path(name))
