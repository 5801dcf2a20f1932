"""The S3 backend's GIL-free read path: HEADs, listings and ranged GETs through obstore.

obstore (Python bindings of the Rust ``object_store`` crate) does its network
I/O in Rust threads without holding the GIL, and keeps hundreds of requests in
flight from one Python thread; boto3 spends about 1-3 ms of Python CPU per
request here, serialised by the GIL whatever the thread count. The
:class:`~cottoncandy.backends.s3.S3Backend` uses this reader by composition
for what it does better, and boto3 for everything else (writes, multipart,
copy, delete, bucket calls, whole-body streams, recursive listings) and
wherever obstore cannot serve a call exactly.

Measured with ``scripts/bench_dataplane.py`` (obstore 0.12.1, boto3 1.44;
loopback ``rclone serve s3`` and SeaweedFS 4.48, 2,000 small objects with
array metadata in 50 directories, one 256 MiB object; a 2-core machine shared
with other work at load 6-15, so figures move between runs; ratios are from
one run, the tests of a group taking turns; CPU is this process's):

* HEAD x2,000. rclone: boto3 ``head_object`` 3.2 / 2.7 / 2.1 s on 1 / 16 / 64
  threads (1.8-2.1 s CPU), obstore ``get_async(head=True)`` 0.35-0.52 s with
  16-256 in flight (0.3 s CPU), ``S3Backend.heads`` 0.40 s (8x boto3 on one
  thread, 5x on 64); SeaweedFS: boto3 5.1 / 2.8 / 2.9 s, obstore 0.91-0.99 s,
  ``heads`` 1.0 s. -> :meth:`ObstoreReader.heads` on one event loop thread,
  ``max_inflight`` requests at once (default 64; 16-256 measure the same), and
  single :meth:`head` calls.
* LIST. All 2,000 keys, recursive: boto3's paginator 0.47 s (rclone) / 0.33 s
  (SeaweedFS), obstore 0.056 / 0.051 s; the 50 directories one level each
  (what ``ls -R`` of a mount asks): ``list_dir`` through boto3 0.57 / 0.43 s,
  through obstore 0.08 / 0.12 s. -> :meth:`ObstoreReader.list_dir`.
  ``iter_objects`` stays with boto3 although obstore lists 6-8x faster:
  obstore spells a directory marker ``p/`` as ``p``, which a recursive
  listing cannot tell from an object ``p``; one level can (the marker of the
  listed prefix is the only object that can look like it).
* Ranged GETs, SeaweedFS (rclone cannot: see below). 256 MiB in 8 MiB ranges on
  8 threads: a tie. Quiet machine, 3 runs: boto3 1120-1560 MB/s,
  ``read_into`` through obstore 0.96-1.02x of it, through boto3 0.94-1.03x;
  with a busy Python thread competing for the GIL, obstore 0.92-0.98x, boto3
  0.87-1.03x, obstore using ~20 % more CPU (it copies each part from its own
  buffer into the caller's, boto3 reads into it). 500 ranges of 64 KiB one
  after the other (the mount's random reads): boto3 0.89-1.09 s, obstore
  0.41-0.51 s (2.0-2.2x), CPU 0.45-0.53 s against 0.07-0.11 s.
  -> :meth:`ObstoreReader.read_range` and :meth:`ObstoreReader.read_span`
  (each part of ``read_into`` on the backend's threads).

Traps handled here:

* ``rclone serve s3`` answers a ranged GET with 200 and a partial body, which
  obstore refuses ("non-partial response") and boto3 accepts. So a backend
  makes its first ranged GET with boto3 and lets its status decide
  (:meth:`ObstoreReader.note_ranged_answer`): after a 206 ranged GETs go
  through obstore, after a 200 (logged once at INFO) they stay with boto3.
  A "non-partial" refusal from obstore later has the same effect.
* object_store paths cannot spell every S3 key: ``a//x``, ``./..`` segments
  and control characters raise, and a leading or trailing ``/`` is silently
  dropped (``marker/`` would GET ``marker``). :func:`obstore_can_address`
  decides which keys go to obstore; the rest go to boto3, as do listings that
  obstore cannot represent.
* obstore's tokio runtime does not survive ``fork()`` (a forked child hangs in
  its first call). A process forked after obstore was used reads with boto3.
* rclone ignores ``If-Match``: the ETag of every answer is compared as well.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import weakref
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Callable, Sequence

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import InvalidPathError
from typing_extensions import override

from ..config.settings import Credentials, S3Settings
from ..errors import CottonCandyError, ObjectNotFoundError, StorageError
from ..usermeta import normalize_metadata
from .base import Listing, ObjectInfo, head_result
from .s3errors import obstore_error_status, translate_obstore_error
from .s3parts import etag_changed, quote_etag
from .s3loop import LoopThread
from .s3store import make_store

if TYPE_CHECKING:  # pragma: no cover - names only the type checker sees
    from obstore import GetOptions
    from obstore.store import S3Store

logger = logging.getLogger(__name__)

#: What obstore raises: its own classes, builtin FileNotFoundError (404) and ValueError (bad path).
OBSTORE_ERRORS = (ObstoreError, FileNotFoundError, ValueError)
#: obstore's attributes that are standard headers, not user metadata.
STANDARD_ATTRIBUTES = frozenset(
    {"Content-Disposition", "Content-Encoding", "Content-Language", "Content-Type", "Cache-Control",
     "Storage-Class"}
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NOT_PARTIAL = ("NotPartial", "non-partial response")
_BODY_BROKE = ("kind: Body", "kind: Decode", "response body")

#: The process that started obstore's runtime (None: not started yet).
_runtime_pid: int | None = None


class Unservable(Exception):
    """This call cannot be served exactly through obstore: make it with boto3."""


def obstore_can_address(key: str) -> bool:
    """Tell whether obstore reaches exactly the object ``key``.

    False for keys with a leading or trailing ``/``, an empty, ``.`` or ``..``
    segment, a control character, or no UTF-8 spelling.
    """
    if not key or key[0] == "/" or key[-1] == "/" or "//" in key or _CONTROL.search(key):
        return False
    if "." in key and any(part in (".", "..") for part in key.split("/")):
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _runtime_usable() -> bool:
    """obstore works in this process: unused so far, or used since it started (not inherited by fork)."""
    return _runtime_pid is None or _runtime_pid == os.getpid()


class ObstoreReader:
    """HEADs, ranged GETs and one-level listings of one bucket through obstore.

    Every method either returns the answer, raises the ``CottonCandyError``
    the boto3 path would raise for the same server answer, or raises
    :class:`Unservable` when the call must be made with boto3 instead.
    Nothing is created before the first call: the store when first needed, the
    event loop thread on the first :meth:`heads`. Thread-safe.

    Parameters
    ----------
    bucket : str
    client : botocore client
        The backend's boto3 client: the store copies its identity and endpoint.
    credentials : Credentials
        For error messages (endpoint) and scrubbing (secrets).
    settings : S3Settings
        Timeouts, attempts and ``max_inflight``.
    """

    def __init__(self, bucket: str, client, credentials: Credentials, settings: S3Settings) -> None:
        self.bucket = bucket
        self.client = client
        self.credentials = credentials
        self.settings = settings
        #: Whether the server answers ranged GETs with 206; None until a boto3 ranged GET told.
        self.ranged_gets: bool | None = None
        self._lock = threading.Lock()
        self._store: S3Store | None = None
        self._no_store = False
        self._loop: LoopThread | None = None
        self._finalizer: weakref.finalize | None = None
        self._slots: asyncio.Semaphore | None = None  # max_inflight over all concurrent heads() calls

    @override
    def __repr__(self) -> str:
        return f"ObstoreReader(bucket={self.bucket!r})"

    # -- plumbing -------------------------------------------------------------
    def serves(self, key: str | None = None) -> bool:
        """Tell whether calls (about ``key``, if given) go through obstore, else boto3."""
        return not self._no_store and _runtime_usable() and (key is None or obstore_can_address(key))

    def _get_store(self):
        global _runtime_pid
        if not _runtime_usable():
            raise Unservable("obstore was started before this process forked")
        with self._lock:
            if self._store is None and not self._no_store:
                self._store = make_store(self.client, self.bucket, self.settings)
                if self._store is None:
                    self._no_store = True
                    logger.debug("s3://%s: the boto3 client has no credentials; reading with boto3", self.bucket)
                elif _runtime_pid is None:
                    _runtime_pid = os.getpid()
        if self._store is None:
            raise Unservable("no credentials for obstore")
        return self._store

    def _error(self, exc: BaseException, operation: str, key: str | None) -> CottonCandyError:
        return translate_obstore_error(
            exc, operation=operation, bucket=self.bucket, key=key, endpoint_url=self.credentials.endpoint_url,
            secrets=(self.credentials.secret_key, self.credentials.access_key),
        )

    def close(self) -> None:
        """Stop the event loop thread, if one was started (a later :meth:`heads` starts a new one)."""
        with self._lock:
            loop, self._loop = self._loop, None
            self._slots = None  # bound to that loop
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
        if loop is not None:
            loop.stop()

    # -- HEAD ---------------------------------------------------------------
    def _info(self, key: str, result) -> ObjectInfo:
        meta = result.meta
        if meta["path"] != key:  # defence in depth: never report another object
            raise Unservable(f"obstore answered for {meta['path']!r}, not {key!r}")
        attributes = result.attributes
        metadata = {k: v for k, v in attributes.items() if k not in STANDARD_ATTRIBUTES}
        return ObjectInfo(key=key, size=int(meta["size"]), etag=quote_etag(meta["e_tag"]),
                          last_modified=meta["last_modified"].timestamp(), metadata=normalize_metadata(metadata))

    def head(self, key: str) -> ObjectInfo:
        """Size, ETag and lower-cased user metadata of ``key``."""
        store = self._get_store()
        try:
            return self._info(key, obstore.get(store, key, options={"head": True}))
        except OBSTORE_ERRORS as exc:
            raise self._error(exc, "HEAD", key) from exc

    def heads(self, keys: Sequence[str], head: Callable[[str], ObjectInfo]) -> list:
        """HEAD many keys with up to ``max_inflight`` requests in flight; the contract of ``heads``.

        Keys obstore cannot address are asked one by one with ``head`` (boto3).
        """
        results: list = [None] * len(keys)
        direct = [i for i, key in enumerate(keys) if self.serves(key)]
        if direct:
            try:
                answers = self._loop_thread().run(self._heads_async([keys[i] for i in direct]))
            except Unservable:
                direct = []
            except CancelledError:  # close() stopped the loop meanwhile
                raise StorageError(f"HEAD of {len(direct)} keys of s3://{self.bucket}: the backend was closed "
                                   "while they were in flight") from None
            else:
                for i, answer in zip(direct, answers):
                    results[i] = answer
        served = set(direct)
        for i, key in enumerate(keys):
            if i not in served or isinstance(results[i], Unservable):
                results[i] = head_result(head, key)
        return results

    def _loop_thread(self) -> LoopThread:
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread()
                self._finalizer = weakref.finalize(self, self._loop.stop)
            return self._loop

    async def _heads_async(self, keys: list[str]) -> list:
        store = self._get_store()
        results: list = [None] * len(keys)
        todo = iter(enumerate(keys))
        if self._slots is None:  # created on the loop thread, shared by every call on it
            self._slots = asyncio.Semaphore(self.settings.max_inflight)
        slots = self._slots

        async def worker() -> None:  # a fixed pool of workers: memory bounded however many keys
            for i, key in todo:
                try:
                    async with slots:
                        answer = await obstore.get_async(store, key, options={"head": True})
                    results[i] = self._info(key, answer)
                except Unservable as exc:
                    results[i] = exc
                except OBSTORE_ERRORS as exc:
                    error = self._error(exc, "HEAD", key)
                    results[i] = None if isinstance(error, FileNotFoundError) else error

        await asyncio.gather(*(worker() for _ in range(min(self.settings.max_inflight, len(keys)))))
        return results

    # -- GET ----------------------------------------------------------------
    def _ranged_get(self, key: str, start: int, end: int, etag: str | None):
        """The answer of a ranged GET, checked to be of version ``etag`` (when given)."""
        if not self.ranged_gets:
            raise Unservable("not known yet to answer ranged GETs with 206")
        store = self._get_store()
        options: GetOptions = {"range": (start, end)}
        if etag is not None:
            options["if_match"] = etag
        try:
            result = obstore.get(store, key, options=options)
        except OBSTORE_ERRORS as exc:
            if any(marker in str(exc) for marker in _NOT_PARTIAL):
                self.note_ranged_answer(200)
                raise Unservable("the server does not answer ranged GETs with 206") from exc
            raise self._error(exc, "GET", key) from exc
        if result.meta["path"] != key:
            raise Unservable(f"obstore answered for {result.meta['path']!r}, not {key!r}")
        if etag_changed(etag, result.meta["e_tag"]):
            raise ObjectNotFoundError(f"GET s3://{self.bucket}/{key}: the object changed while being read", key)
        return result

    def note_ranged_answer(self, status: int | None) -> None:
        """Learn from the HTTP status of a ranged GET whether obstore may make them (206) or not (200).

        The backend makes the first ranged GET with boto3 and reports its
        status here, so that learning costs no request. Once a 200 was seen,
        ranged GETs stay with boto3 (logged once).
        """
        if status not in (200, 206) or self.ranged_gets is False:
            return
        with self._lock:
            before = self.ranged_gets
            self.ranged_gets = before is not False and status == 206
        if before is not False and not self.ranged_gets:
            logger.info("%s answers ranged GETs with 200 instead of 206: ranged reads of s3://%s go through "
                        "boto3", self.credentials.endpoint_url or "the S3 server", self.bucket)

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        """Body bytes ``[start, end)`` (``0 <= start < end``), short only at the end of the body."""
        result = self._ranged_get(key, start, end, etag)
        try:
            return bytes(result.bytes())
        except OBSTORE_ERRORS as exc:
            raise self._error(exc, "GET", key) from exc

    def read_span(self, key: str, target: memoryview, position: int, etag: str | None) -> tuple[int, str]:
        """Fill ``target`` with body bytes from ``position``; return (bytes read, ETag of the answer).

        Fewer bytes than ``target`` holds only when the body ends first. A
        start past the end raises the translated 416 (``InvalidRange``).
        """
        result = self._ranged_get(key, position, position + target.nbytes, etag)
        try:
            data = result.bytes()
        except OBSTORE_ERRORS as exc:
            raise self._error(exc, "GET", key) from exc
        target[: len(data)] = memoryview(data)
        return len(data), result.meta["e_tag"]

    # -- LIST ---------------------------------------------------------------
    def list_dir(self, prefix: str) -> Listing:
        """One ``/``-level under ``prefix`` (``''`` or ending in ``/``), checked to be exactly S3's answer."""
        parent = prefix[:-1]
        if prefix and not (prefix.endswith("/") and obstore_can_address(parent)):
            raise Unservable(f"prefix {prefix!r}")
        store = self._get_store()
        try:
            answer = obstore.list_with_delimiter(store, parent or None)
        except InvalidPathError as exc:  # some key under the prefix has no object_store spelling
            raise Unservable(str(exc).splitlines()[0]) from exc
        except OBSTORE_ERRORS as exc:
            if obstore_error_status(exc) is None and any(m in str(exc) for m in _BODY_BROKE):
                raise Unservable("the listing broke off (obstore does not retry listing bodies)") from exc
            raise self._error(exc, "LIST", prefix) from exc
        objects = []
        for meta in answer["objects"]:
            path = meta["path"]
            if prefix and path == parent:
                continue  # the directory marker object "prefix/", as obstore spells it
            if not _one_level(path, prefix):
                raise Unservable(f"listed {path!r} under {prefix!r}")
            objects.append(ObjectInfo(key=path, size=int(meta["size"]), etag=quote_etag(meta["e_tag"]),
                                      last_modified=meta["last_modified"].timestamp()))
        prefixes = []
        for path in answer["common_prefixes"]:
            if not _one_level(path, prefix):  # e.g. '' for the prefix '/' of a key '/x'
                raise Unservable(f"listed prefix {path!r} under {prefix!r}")
            prefixes.append(path + "/")
        return Listing(objects=sorted(objects, key=lambda o: o.key), prefixes=sorted(set(prefixes)))


def _one_level(path: str, prefix: str) -> bool:
    """Tell whether ``path`` is a non-empty name right under ``prefix``."""
    return path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix):]
